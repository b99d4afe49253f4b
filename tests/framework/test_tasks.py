"""`edgerm.tasks`: offer matching and task builders of the framework SDK (pure functions)."""

from __future__ import annotations

from edgerm.tasks import (
    DOCKER,
    WASM,
    Constraints,
    Module,
    docker_task,
    micropython_task,
    task_info,
    wasm_task,
)
from edgerm.wire import decode, encode, pb


def make_offer(cpus: float = 1.0, mem_mb: float = 256.0, devices: dict[str, int] | None = None,
               executors: tuple[int, ...] = (WASM,), name: str = "pi-1",
               ports: tuple[tuple[int, int], ...] = ()) -> pb.Offer:
    offer = pb.Offer(offer_id="o1", agent_id=3, agent_name=name, executors=list(executors))
    offer.resources.cpus = cpus
    offer.resources.mem_mb = mem_mb
    for dev, shares in (devices if devices is not None else {"temp": 2}).items():
        offer.resources.devices.add(name=dev, kind=pb.SENSOR, shares=shares)
    for begin, end in ports:
        offer.resources.ports.add(begin=begin, end=end)
    offer.attributes.add(name="os", text="linux")
    offer.attributes.add(name="zone", scalar=2)
    offer.attributes.add(name="labels", set=pb.Set(items=["garden", "outdoor"]))
    return offer


def test_empty_constraints_match_any_offer() -> None:
    assert Constraints().match(make_offer(cpus=0, mem_mb=0, devices={}))


def test_scalars_must_fit_with_float_tolerance() -> None:
    offer = make_offer(cpus=0.1 + 0.2, mem_mb=32)
    assert Constraints(cpus=0.3, mem_mb=32).match(offer)
    assert Constraints(cpus=0.31).mismatch(offer) == "cpus: needs 0.31, offered 0.3"
    assert Constraints(mem_mb=33).mismatch(offer) == "mem_mb: needs 33, offered 32"
    assert not Constraints(disk_mb=1).match(offer)


def test_devices_executors_name_and_attributes() -> None:
    offer = make_offer()
    assert Constraints(devices=["temp"], executors=[WASM], agent_name="pi-*",
                       attributes={"os": "linux", "zone": 2, "labels": "garden"}).match(offer)
    assert Constraints(devices=["humidity"]).mismatch(offer) == "device 'humidity' not offered"
    assert Constraints(executors=[DOCKER]).mismatch(offer) == "executor: needs one of DOCKER"
    assert Constraints(executors=[DOCKER, WASM]).match(offer)
    assert not Constraints(agent_name="nrf-*").match(offer)
    assert Constraints(agent_name="pi-1").match(offer)
    assert Constraints(attributes={"os": "zephyr"}).mismatch(offer) == \
        "attribute 'os' is not 'zephyr'"
    assert Constraints(attributes={"arch": "arm"}).mismatch(offer) == "attribute 'arch' missing"
    assert not Constraints(attributes={"zone": 3}).match(offer)
    assert not Constraints(attributes={"zone": "2"}).match(offer)
    assert Constraints(attributes={"labels": ["garden", "outdoor"]}).match(offer)
    assert not Constraints(attributes={"labels": ["garden", "indoor"]}).match(offer)


def test_ports_are_counted_and_taken_from_the_start_of_the_ranges() -> None:
    offer = make_offer(ports=((8000, 8001), (9000, 9009)))
    c = Constraints(ports=3)
    assert c.match(offer)
    assert not Constraints(ports=13).match(offer)
    res = c.resources(offer)
    assert [(r.begin, r.end) for r in res.ports] == [(8000, 8001), (9000, 9000)]


def test_resources_take_one_share_of_a_shared_device_and_all_of_an_exclusive_one() -> None:
    offer = make_offer(devices={"temp": 3, "camera": 0})
    res = Constraints(cpus=0.1, mem_mb=16, devices=["temp", "camera"]).resources(offer)
    assert res.cpus == 0.1 and res.mem_mb == 16
    assert [(d.name, d.shares, d.kind) for d in res.devices] == \
        [("temp", 1, pb.SENSOR), ("camera", 0, pb.SENSOR)]


def test_wasm_task_spec_round_trips_through_the_codec() -> None:
    module = Module.of(b"\0asm\1\0\0\0")
    assert module.size == 8 and len(module.sha256) == 32
    spec = wasm_task(module, name="sampler", resources=pb.Resources(cpus=0.1), args=["5"],
                     env={"PERIOD_MS": "100"}, timeout_s=30)
    info = task_info("t1", spec)
    back = decode(pb.TaskInfo, encode(info))
    assert back == info
    assert back.spec.wasm.sha256 == module.sha256
    assert [(e.name, e.value) for e in back.spec.wasm.env] == [("PERIOD_MS", "100")]
    assert back.spec.resources.cpus == 0.1


def test_docker_and_micropython_specs() -> None:
    spec = docker_task("busybox", ["echo", "hi"], env={"A": "1"}, ports=[(80, 8080)],
                       network=pb.BRIDGE)
    assert spec.WhichOneof("kind") == "docker"
    assert list(spec.docker.command) == ["echo", "hi"]
    assert spec.docker.ports[0].host_port == 8080
    mpy = micropython_task(Module.of(b"x", pb.MICROPYTHON_MPY), args=["a"])
    assert mpy.micropython.mpy and mpy.micropython.size == 1
    src = micropython_task(Module.of(b"print(1)", pb.MICROPYTHON_SOURCE))
    assert not src.micropython.mpy


def test_parse_sha256_hex_takes_64_hex_digits_only() -> None:
    from edgerm.tasks import parse_sha256_hex
    sha = bytes(range(32))
    assert parse_sha256_hex(sha.hex()) == sha
    assert parse_sha256_hex(sha.hex()[:-2]) is None       # too short
    assert parse_sha256_hex("zz" * 32) is None            # not hex
