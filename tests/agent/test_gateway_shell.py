"""The gateway's Trio shell in this process against a real master process over loopback CoAP:
relay with end-to-end trust (a tampering gateway is refused by the master and by the device),
the module cache (one fetch across the uplink for many devices), the refusals of bad input."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from edgerm.coap.codes import Code
from edgerm.transport.coap_client import open_coap_client
from edgerm.wire import CONTENT_FORMAT_CBOR, decode, encode, pb
from edgerm_agent.config import parse_config
from edgerm_agent.gateway_shell import Gateway
from edgerm_master.testing import ScriptedAgent
from edgerm_master.testing_io import (
    CoapAgentClient,
    MasterProcess,
    open_framework,
    standby_process,
)


class TamperingGateway(Gateway):
    """A gateway that alters what it relays, keeping the MACs: the forgery a gateway could try."""

    def __init__(self, *args: Any, call: Callable[[pb.AgentCall], None] | None = None,
                 reply: Callable[[pb.AgentReply], None] | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.tamper_call = call
        self.tamper_reply = reply

    async def _send(self, calls: tuple[bytes, ...]) -> list[bytes] | None:
        if self.tamper_call is not None:
            changed = []
            for c in calls:
                msg = decode(pb.AgentCall, c)
                self.tamper_call(msg)
                changed.append(encode(msg))
            calls = tuple(changed)
        replies = await super()._send(calls)
        if replies is None or self.tamper_reply is None:
            return replies
        out = []
        for r in replies:
            msg = decode(pb.AgentReply, r)
            self.tamper_reply(msg)
            out.append(encode(msg))
        return out


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
    m = MasterProcess(str(tmp_path / "master"), agent_token="tok", heartbeat_ms=500)
    m.start()
    try:
        yield m
    finally:
        m.stop()


def gateway_config(tmp_path: Path, master: MasterProcess) -> Any:
    host, port = master.coap
    return parse_config({"name": "gw", "work_dir": str(tmp_path / "gw"),
                         "master": {"url": f"coap://{host}:{port}", "token": "tok"},
                         "gateway": {"host": "127.0.0.1", "port": 0, "window_ms": 2,
                                     "uplink_timeout_s": 3, "reply_timeout_s": 5}})


async def start(nursery: trio.Nursery, gw: Gateway) -> tuple[str, int]:
    addr = await nursery.start(gw.run)
    return addr[0], addr[1]


async def test_relay_registers_a_device_the_gateway_never_learns_a_secret(
        tmp_path: Path, master: MasterProcess) -> None:
    async with trio.open_nursery() as n:
        gw = Gateway(gateway_config(tmp_path, master))
        addr = await start(n, gw)
        async with open_coap_client() as coap:
            dev = CoapAgentClient(coap, addr, ScriptedAgent(name="dev", token="tok"))
            await dev.settle()
            assert dev.agent.agent_id and dev.agent.bad_macs == 0
            assert dev.codes[0] == Code.CHANGED
            # the gateway holds nothing but relayed bytes: the secret is nowhere in its
            # memory state nor on its disk
            assert dev.agent.secret and dev.agent.secret not in b"".join(_all_bytes(gw))
            on_disk = b"".join(p.read_bytes() for p in (tmp_path / "gw").rglob("*")
                               if p.is_file())
            assert dev.agent.secret not in on_disk
            # wrong Content-Format and garbage: refused by the gateway itself
            resp = await coap.post(addr, "a", b"x", content_format=0)
            assert resp.code == Code.UNSUPPORTED_CONTENT_FORMAT
            resp = await coap.post(addr, "a", b"\xff\xff", content_format=CONTENT_FORMAT_CBOR)
            assert resp.code == Code.BAD_REQUEST
            resp = await coap.fetch(addr, "c", b"")
            assert resp.code == Code.NOT_FOUND  # no Observe: devices heartbeat on `a`
        n.cancel_scope.cancel()


async def test_a_tampering_gateway_is_refused_by_the_master_and_by_the_device(
        tmp_path: Path, master: MasterProcess) -> None:
    def rename(call: pb.AgentCall) -> None:
        if call.HasField("register"):
            call.register.name = "evil"
        if call.HasField("status"):
            call.status.state = pb.FAILED

    def forge_command(reply: pb.AgentReply) -> None:
        reply.commands.append(pb.Command(id=99, kill=pb.Kill(task=1)))

    async with trio.open_nursery() as n:
        evil = TamperingGateway(gateway_config(tmp_path, master), call=rename)
        addr = await start(n, evil)
        async with open_coap_client() as coap:
            dev = CoapAgentClient(coap, addr, ScriptedAgent(name="dev", token="tok"))
            r = await dev.exchange()
            # the master refused the altered registration: the MAC covers the device's bytes
            assert r.error.code == pb.UNAUTHENTICATED and dev.codes[-1] == Code.UNAUTHORIZED
            assert not dev.agent.agent_id
        n.cancel_scope.cancel()

    async with trio.open_nursery() as n:
        honest = Gateway(gateway_config(tmp_path, master))
        addr = await start(n, honest)
        async with open_coap_client() as coap:
            dev = CoapAgentClient(coap, addr, ScriptedAgent(name="dev", token="tok"))
            await dev.settle()
            agent = dev.agent
        n.cancel_scope.cancel()

    async with trio.open_nursery() as n:
        evil = TamperingGateway(gateway_config(tmp_path, master), reply=forge_command)
        addr = await start(n, evil)
        async with open_coap_client() as coap:
            dev = CoapAgentClient(coap, addr, agent)
            before = agent.bad_macs
            await dev.exchange()
            # the device refused the altered reply: the master's MAC covers the master's bytes
            assert agent.bad_macs == before + 1
            assert agent.applied == 0  # the forged command was not applied
        n.cancel_scope.cancel()


async def test_module_cache_one_fetch_across_the_uplink_for_many_devices(
        tmp_path: Path, master: MasterProcess) -> None:
    module = b"x = 1\n" * 3414   # 20 KB of MicroPython source
    sha = hashlib.sha256(module).digest()
    async with trio.open_nursery() as n:
        f = await open_framework(n, master.ws)
        await f.send(f.fw.upload(module, pb.MICROPYTHON_SOURCE))
        await f.wait_for(lambda: any(e.WhichOneof("event") == "module_stored"
                                     for e in f.fw.events))
        gw = Gateway(gateway_config(tmp_path, master))
        addr = await start(n, gw)
        got: list[bytes] = []
        async with open_coap_client() as coap:
            async def device() -> None:
                resp = await coap.get(addr, f"m/{sha.hex()}", block_size=64)
                assert resp.code == Code.CONTENT
                got.append(resp.payload)
            async with trio.open_nursery() as devices:
                for _ in range(8):
                    devices.start_soon(device)
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
        config = parse_config({
            "name": "gw", "work_dir": str(tmp_path / "gw"),
            "master": {"urls": ["coap://{}:{}".format(*standby.coap),
                                "coap://{}:{}".format(*master.coap)], "token": "tok"},
            "gateway": {"host": "127.0.0.1", "port": 0, "uplink_timeout_s": 3}})
        async with trio.open_nursery() as n:
            gw = Gateway(config)
            addr = await start(n, gw)
            async with open_coap_client() as coap:
                dev = CoapAgentClient(coap, addr, ScriptedAgent(name="dev", token="tok"))
                with trio.fail_after(20):
                    while not dev.agent.agent_id:
                        await dev.exchange()   # UNAVAILABLE until the gateway moved
                        await trio.sleep(0.1)
                assert gw.uplink == master.coap
            n.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(standby.stop)
