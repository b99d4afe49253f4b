"""Agent configuration and inventory: caps, reservations, devices, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgerm.wire import pb
from edgerm_agent.config import ConfigError, parse_config
from edgerm_agent.inventory import detect_attributes, detect_resources
from edgerm_agent.sensors import SensorError, read_sensor

BASE = {"master": {"url": "ws://127.0.0.1:1/agent", "token": "t"}}


def test_caps_reservations_ports_devices_and_labels(tmp_path: Path) -> None:
    cfg = parse_config({**BASE, "work_dir": str(tmp_path), "attributes": {"zone": "lab"},
                        "resources": {"cpus": 1, "reserved_cpus": 0.25, "mem_mb": 512,
                                      "reserved_mem_mb": 128, "ports": ["31000-31009"]},
                        "devices": [{"name": "temp", "kind": "sensor", "constant": 20},
                                    {"name": "cam", "kind": "other", "path": "/dev/video0"}]})
    res = detect_resources(cfg)
    assert (res.cpus, res.mem_mb) == (0.75, 384)
    assert [(r.begin, r.end) for r in res.ports] == [(31000, 31009)]
    assert [(d.name, d.kind, d.path) for d in res.devices] == [("temp", pb.SENSOR, ""),
                                                               ("cam", pb.OTHER, "")]
    attrs = {a.name: a for a in detect_attributes(cfg, ["wasm"])}
    assert attrs["zone"].text == "lab" and list(attrs["executors"].set.items) == ["wasm"]
    assert {"os", "arch", "hostname"} <= set(attrs)
    assert cfg.transport == "websocket"


@pytest.mark.parametrize("raw, key", [
    ({}, "master.url"),
    ({"master": {"url": "http://x"}}, "master.url"),
    ({"master": {"urls": ["coap://a:1", "http://x"]}}, "master.urls[1]"),
    ({"master": {"urls": ["coap://a:1", 7]}}, "master.urls[1]"),
    ({"master": {"urls": "coap://a:1"}}, "master.urls"),
    ({"master": {"urls": []}}, "master.url"),
    ({**BASE, "resources": {"cpus": -1}}, "resources.cpus"),
    ({**BASE, "resources": {"cpus": "two"}}, "resources.cpus"),
    ({**BASE, "resources": {"ports": ["9-1"]}}, "resources.ports"),
    ({**BASE, "devices": [{"name": "t", "kind": "sensor"}]}, "devices[0]"),
    ({**BASE, "devices": [{"name": "t", "constant": 1}, {"name": "t", "constant": 2}]},
     "devices"),
    ({**BASE, "executors": {"enabled": ["lxc"]}}, "executors.enabled"),
])
def test_bad_config_names_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_config(raw)


def test_master_urls_keep_url_first() -> None:
    assert parse_config(BASE).masters == ("ws://127.0.0.1:1/agent",)
    cfg = parse_config({"master": {"url": "coap://m1:5683",
                                   "urls": ["coap://m2:5683", "coap://m1:5683", "ws://m3/agent"]}})
    assert cfg.master_url == "coap://m1:5683" and cfg.transport == "coap"
    assert cfg.masters == ("coap://m1:5683", "coap://m2:5683", "ws://m3/agent")
    assert parse_config({"master": {"urls": ["coap://m2:5683"]}}).master_url == "coap://m2:5683"


def test_sensors(tmp_path: Path) -> None:
    f = tmp_path / "temp"
    f.write_text("42000\n")
    cfg = parse_config({**BASE, "devices": [
        {"name": "a", "file": str(f), "scale": 0.001},
        {"name": "b", "sine": {"mean": 10, "amplitude": 2, "period_s": 4}},
        {"name": "c", "file": str(tmp_path / "missing")}]})
    a, b, c = (d.sensor for d in cfg.devices)
    assert a is not None and b is not None and c is not None
    assert read_sensor(a, 0) == 42.0
    assert read_sensor(b, 1.0) == pytest.approx(12.0)
    with pytest.raises(SensorError):
        read_sensor(c, 0)


def test_coap_settings_parse_and_reject_bad_values() -> None:
    cfg = parse_config({**BASE, "coap": {"ack_timeout_s": 0.5, "max_retransmit": 2,
                                         "block_size": 64}})
    assert (cfg.coap_ack_timeout_s, cfg.coap_max_retransmit, cfg.coap_block_size) == (0.5, 2, 64)
    for bad, key in (({"ack_timeout_s": 0}, "coap.ack_timeout_s"),
                     ({"max_retransmit": 11}, "coap.max_retransmit"),
                     ({"block_size": 100}, "coap.block_size")):
        with pytest.raises(ConfigError, match=key):
            parse_config({**BASE, "coap": bad})


async def test_coap_link_retransmits_as_configured() -> None:
    """A silent master sees the call 1 + max_retransmit times, then the call fails."""
    import trio

    from edgerm_agent.links import LinkError, open_link

    sink = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    cfg = parse_config({"master": {"url": f"coap://127.0.0.1:{port}"},
                        "coap": {"ack_timeout_s": 0.05, "max_retransmit": 2}})
    link = open_link(cfg.master_url, ack_timeout_s=cfg.coap_ack_timeout_s,
                     max_retransmit=cfg.coap_max_retransmit)
    seen = 0

    async def count() -> None:
        nonlocal seen
        while True:
            await sink.recv(2048)
            seen += 1

    async def on_push(data: bytes) -> None:
        pass

    with sink:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(count)
            await nursery.start(link.run, on_push)
            with trio.fail_after(5), pytest.raises(LinkError):
                await link.call(b"\xa0")
            await trio.sleep(0.3)  # nothing more comes after the last retransmission
            nursery.cancel_scope.cancel()
    assert seen == 3


def test_gateway_table_defaults_and_its_uplink_from_the_masters(tmp_path: Path) -> None:
    raw: dict[str, object] = {"master": {"url": "ws://m:5690/agent",
                                         "urls": ["coap://m:5683", "coap://n:5683"]},
                              "gateway": {"queue_path": "q.sqlite"}}
    gw = parse_config(raw, base=tmp_path).gateway
    assert gw is not None
    assert gw.uplink == ("coap://m:5683", "coap://n:5683")   # the coap:// masters, in order
    assert gw.port == 5683 and gw.batch_max == 32 and gw.queue_path == tmp_path / "q.sqlite"
    assert parse_config({"master": {"url": "coap://m:1"}}).gateway is None


@pytest.mark.parametrize(("gateway", "master", "words"), [
    ({}, "ws://m:5690/agent", "gateway.uplink: required"),
    ({"uplink": "ws://m:5690"}, "coap://m:1", "not a coap://HOST:PORT"),
    ({"batch_max": 65}, "coap://m:1", "gateway.batch_max"),
    ({"port": 70000}, "coap://m:1", "gateway.port"),
    ({"queue_max": 0}, "coap://m:1", "gateway.queue_max"),
    ({"windw_ms": 1}, "coap://m:1", "gateway.windw_ms"),
    ({"cache_mb": -1}, "coap://m:1", "gateway.cache_mb"),
])
def test_bad_gateway_config_names_the_key(gateway: dict[str, object], master: str,
                                          words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        parse_config({"master": {"url": master}, "gateway": gateway})
    with pytest.raises(ConfigError, match="gateway: expected a table"):
        parse_config({"master": {"url": master}, "gateway": 3})
