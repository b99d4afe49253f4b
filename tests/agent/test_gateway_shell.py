"""The gateway's Trio shell in this process (with its own agent, whose OSCORE context protects
the uplink) against a real master process over loopback CoAP, devices being real agent
processes speaking OSCORE to it: relay without the gateway learning a secret, the refusals of bad
input, the module cache for plain downloads, following the leader."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import trio

from edgerm.coap.codes import Code
from edgerm.oscore import pack_forwarded
from edgerm.transport.coap_client import open_coap_client
from edgerm.wire import CONTENT_FORMAT_CBOR, decode, encode, pb
from edgerm_master.testing import ScriptedAgent
from edgerm_master.testing_io import (
    CoapAgentClient,
    MasterProcess,
    open_framework,
    standby_process,
)

from .gateway_run import (
    TOKEN,
    device,
    device_secret,
    gateway_config,
    running_gateway,
    wait_until,
)


def _all_bytes(obj: Any, seen: set[int] | None = None, depth: int = 0) -> list[bytes]:
    """Every bytes value reachable from `obj`'s attributes and containers."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 8:
        return []
    seen.add(id(obj))
    if isinstance(obj, bytes | bytearray):
        return [bytes(obj)]
    if isinstance(obj, str | int | float | bool) or obj is None:
        return []
    items: list[Any] = []
    if isinstance(obj, dict):
        items = [*obj.keys(), *obj.values()]
    elif isinstance(obj, list | tuple | set | frozenset):
        items = list(obj)
    elif type(obj).__module__.startswith("edgerm"):
        slots = getattr(type(obj), "__slots__", ())
        items = list(getattr(obj, "__dict__", {}).values()) + [
            getattr(obj, n) for n in slots if hasattr(obj, n)]
    out: list[bytes] = []
    for item in items:
        out += _all_bytes(item, seen, depth + 1)
    return out


@pytest.fixture
def master(tmp_path: Path) -> Any:
    with MasterProcess(str(tmp_path / "master"), agent_token=TOKEN, heartbeat_ms=500) as m:
        yield m


async def test_relay_registers_a_device_the_gateway_never_learns_a_secret(
        tmp_path: Path, master: MasterProcess) -> None:
    async with running_gateway(gateway_config(tmp_path, [master.coap])) as gw, \
            trio.open_nursery() as n:
        dev = device(tmp_path, gw).start()
        try:
            f = await open_framework(n, master.ws)
            await wait_until(lambda: any(o.agent_name == "dev" for o in f.fw.offers.values()),
                             30, lambda: f"the device registered through the gateway: {dev.log()}")
            await wait_until(lambda: gw.core is not None and gw.core.stats["calls"] > 3, 10,
                             lambda: f"the device's heartbeats through the gateway: "
                             f"{gw.core and gw.core.stats} {dev.log()}")
            secret = device_secret(dev)
            assert len(secret) == 16
            # the gateway holds nothing but relayed bytes: the secret is nowhere in its memory
            # state nor on its disk
            assert secret not in b"".join(_all_bytes(gw))
            on_disk = b"".join(p.read_bytes() for p in (tmp_path / "gw").rglob("*")
                               if p.is_file())
            assert secret not in on_disk
            n.cancel_scope.cancel()
        finally:
            dev.stop()
        assert gw.core is not None and gw.core.stats["plain"] >= 1  # the first registration


async def test_bad_input_is_refused_by_the_gateway_itself(
        tmp_path: Path, master: MasterProcess) -> None:
    async with running_gateway(gateway_config(tmp_path, [master.coap])) as gw, \
            open_coap_client() as coap:
        addr = gw.address[0], gw.address[1]
        resp = await coap.post(addr, "a", b"x", content_format=0)
        assert resp.code == Code.UNSUPPORTED_CONTENT_FORMAT
        resp = await coap.post(addr, "a", b"\xff\xff", content_format=CONTENT_FORMAT_CBOR)
        assert resp.code == Code.BAD_REQUEST
        # a malformed OSCORE option (reserved bits) and a request without a Partial IV: 4.02
        for option in (b"\xe9\x01\x05", b"\x08\x05"):
            resp = await coap.post(addr, (), b"ct" * 8, options=[(9, option)])
            assert resp.code == Code.BAD_OPTION, option
        # the root without OSCORE is nothing
        resp = await coap.post(addr, (), b"")
        assert resp.code == Code.NOT_FOUND
        # an Observe registration (`c` inside OSCORE) is not relayed: the device heartbeats
        resp = await coap.request(addr, Code.FETCH, (), b"ct" * 8,
                                  options=[(6, b""), (9, b"\x09\x01\x05")])
        assert resp.code == Code.NOT_FOUND and not any(n == 9 for n, _ in resp.options)
        assert gw.core is not None and gw.core.stats["calls"] == 0   # none went up
        # a device's protected heartbeat comes back protected and verifies at the device
        dev = CoapAgentClient(coap, addr, ScriptedAgent(name="dev", token=TOKEN))
        await dev.settle()
        reply = await dev.exchange()
        assert dev.codes[-1] == Code.CHANGED and not reply.HasField("error"), dev.codes
        # a well-formed entry with an unknown kid goes up and the master refuses it, plain
        entry = pack_forwarded(Code.POST, b"\x09\x01\x63", b"\x00" * 12)
        resp = await coap.post(addr, (), entry[5:], options=[(9, entry[2:5])])
        assert resp.code == Code.UNAUTHORIZED
        assert decode(pb.AgentReply, resp.payload).error.code == pb.UNAUTHENTICATED
        assert not any(n == 9 for n, _ in resp.options)


async def test_module_cache_one_fetch_across_the_uplink_for_many_devices(
        tmp_path: Path, master: MasterProcess) -> None:
    """Plain `GET m/<sha>` (a device that fetches modules in the clear): cached."""
    module = b"x = 1\n" * 3414   # 20 KB of MicroPython source
    sha = hashlib.sha256(module).digest()
    async with trio.open_nursery() as n:
        f = await open_framework(n, master.ws)
        await f.send(f.fw.upload(module, pb.MICROPYTHON_SOURCE))
        await f.wait_for(lambda: any(e.WhichOneof("event") == "module_stored"
                                     for e in f.fw.events))
        async with running_gateway(gateway_config(tmp_path, [master.coap])) as gw:
            addr = gw.address[0], gw.address[1]
            got: list[bytes] = []
            async with open_coap_client() as coap:
                async def fetch() -> None:
                    resp = await coap.get(addr, f"m/{sha.hex()}", block_size=64)
                    assert resp.code == Code.CONTENT
                    got.append(resp.payload)
                async with trio.open_nursery() as devices:
                    for _ in range(8):
                        devices.start_soon(fetch)
                resp = await coap.get(addr, f"m/{sha.hex()}", block_size=256)
                got.append(resp.payload)
                missing = await coap.get(addr, "m/" + "00" * 32)
                assert missing.code == Code.NOT_FOUND
                bad = await coap.get(addr, "m/zz")
                assert bad.code == Code.NOT_FOUND
            assert got == [module] * 9
            assert gw.stats["modules_fetched"] == 1
            assert (tmp_path / "gw" / "gateway" / "modules" / sha.hex()).read_bytes() == module
        n.cancel_scope.cancel()


async def test_a_standby_uplink_names_the_leader_and_the_gateway_follows(
        tmp_path: Path, master: MasterProcess) -> None:
    standby = await trio.to_thread.run_sync(standby_process, str(tmp_path / "standby"), master)
    try:
        async with open_coap_client() as coap:
            resp = await coap.post(standby.coap, "g", encode(pb.GatewayBatch()),
                                   content_format=CONTENT_FORMAT_CBOR)
            assert resp.code == Code.SERVICE_UNAVAILABLE
            err = decode(pb.Error, resp.payload)
            assert err.code == pb.NOT_LEADER and err.leader == "coap://{}:{}".format(*master.coap)
            # a plain batch, even to the leader, is refused: `g` must be protected
            resp = await coap.post(master.coap, "g", encode(pb.GatewayBatch()),
                                   content_format=CONTENT_FORMAT_CBOR)
            assert resp.code == Code.UNAUTHORIZED
        config = gateway_config(tmp_path, [standby.coap, master.coap])
        async with running_gateway(config) as gw, trio.open_nursery() as n:
            dev = device(tmp_path, gw).start()
            try:
                f = await open_framework(n, master.ws)
                await wait_until(lambda: any(o.agent_name == "dev"
                                             for o in f.fw.offers.values()), 40,
                                 lambda: f"the device registered: {dev.log()}")
                assert gw.uplink == master.coap
                n.cancel_scope.cancel()
            finally:
                dev.stop()
    finally:
        await trio.to_thread.run_sync(standby.stop)
