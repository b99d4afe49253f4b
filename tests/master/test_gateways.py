"""The master's CoAP `g` (edgerm_master/gateways.py) against a real master process: a gateway's
batch, OSCORE-protected with its own agent's context, of devices' requests it cannot read
(protected end to end, or a plain first registration), answered in order with each device's
own protected (or plain) reply; a heartbeat round on the inline path, one interrupted by a call
that is not; tampered, replayed and garbage entries refused one by one; bad batches refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgerm.coap.codes import Code
from edgerm.oscore import (
    decode_plaintext,
    encode_plaintext,
    open_response,
    pack_forwarded,
    seal_request,
    unpack_forwarded,
)
from edgerm.transport.coap_client import CoapClient, open_coap_client
from edgerm.wire import CONTENT_FORMAT_CBOR, decode, encode, pb
from edgerm_master.testing import ScriptedAgent
from edgerm_master.testing_io import CoapAgentClient, MasterProcess


@pytest.fixture
def master(tmp_path: Path) -> Iterator[MasterProcess]:
    with MasterProcess(str(tmp_path / "master"), agent_token="tok", heartbeat_ms=500) as m:
        yield m


class Gateway:
    """A gateway's uplink: its own (registered) agent's context protects each POST `g`."""

    def __init__(self, coap: CoapClient, master: MasterProcess) -> None:
        self.coap = coap
        self.master = master
        self.agent = CoapAgentClient(coap, master.coap, ScriptedAgent(name="gw", token="tok"))

    async def post(self, calls: list[bytes]) -> tuple[int, bytes]:
        """(inner code, inner payload) of the protected answer to a batch of `calls`."""
        agent = self.agent.agent
        agent.seq += 1
        ctx = agent.oscore_context()
        option, ct = seal_request(ctx, agent.seq, encode_plaintext(Code.POST, [
            (11, b"g"), (12, b"\x3c")], encode(pb.GatewayBatch(calls=calls))))
        resp = await self.coap.post(self.master.coap, (), ct, options=[(9, option)])
        value = next(v for n, v in resp.options if n == 9)
        _, plaintext = open_response(ctx, agent.seq, value, resp.payload)
        code, _, payload = decode_plaintext(plaintext)
        return code, payload

    async def relay(self, calls: list[bytes]) -> list[bytes]:
        code, payload = await self.post(calls)
        assert code == Code.CHANGED, (hex(code), payload)
        return list(decode(pb.GatewayReplies, payload).replies)


def entry(device: ScriptedAgent, call: bytes, path: str = "a") -> tuple[bytes, int]:
    """A device's call as the gateway relays it (protected), and its Partial IV."""
    protected = device.protect(call, path)
    if protected is None:
        return call, 0          # a first registration: plain
    seq, option, ct = protected
    return pack_forwarded(Code.POST, option, ct), seq


def answer(device: ScriptedAgent, reply: bytes, seq: int) -> pb.AgentReply:
    """The device's handling of its reply entry (protected to `seq`, or plain)."""
    if seq and reply[0] < 0x80:
        code, option, ct = unpack_forwarded(reply)
        assert code == Code.CHANGED
        _, inner_code, payload = device.unprotect(seq, option, ct)
        assert inner_code == Code.CHANGED, hex(inner_code)
        return device.handle_reply(payload)
    return device.handle_reply(reply)


async def round_trip(gw: Gateway, devices: list[ScriptedAgent], calls: list[bytes]
                     ) -> list[pb.AgentReply]:
    entries = [entry(d, c) for d, c in zip(devices, calls, strict=True)]
    replies = await gw.relay([e for e, _ in entries])
    return [answer(d, r, seq) for d, r, (_, seq) in zip(devices, replies, entries, strict=True)]


async def test_a_batch_registers_heartbeats_and_reports_for_several_devices(
        master: MasterProcess) -> None:
    devices = [ScriptedAgent(name=f"d{i}", token="tok") for i in range(3)]
    async with open_coap_client() as coap:
        gw = Gateway(coap, master)
        await gw.agent.settle()
        await round_trip(gw, devices, [d.register_call() for d in devices])
        assert all(d.agent_id for d in devices) and len({d.agent_id for d in devices}) == 3
        # a heartbeat round: steady heartbeats only (answered in the receive loop)
        for _ in range(3):
            await round_trip(gw, devices, [d.heartbeat_call() for d in devices])
        assert all(d.bad_macs == 0 and not d.errors for d in devices)
        # a status update among heartbeats: the inline path stops there, the rest goes on
        devices[1].queue.append(pb.AgentCall(status=pb.StatusUpdate(
            update_id=1, task=1, state=pb.RUNNING)))
        got = await round_trip(gw, devices, [devices[0].heartbeat_call(),
                                             devices[1].next_call(),
                                             devices[2].heartbeat_call()])
        assert got[1].update_ack == 1
        assert all(d.bad_macs == 0 and not d.errors for d in devices)
        # a replayed entry and a tampered one: refused one by one (plain 4.01), unapplied
        hb, seq = entry(devices[0], devices[0].heartbeat_call())
        (first,) = await gw.relay([hb])
        answer(devices[0], first, seq)
        tampered, tseq = entry(devices[2], devices[2].heartbeat_call())
        tampered = tampered[:-1] + bytes([tampered[-1] ^ 1])
        replayed, bad, ok = await gw.relay([hb, tampered, entry(devices[1],
                                                               devices[1].heartbeat_call())[0]])
        for r in (replayed, bad):
            assert r[0] >= 0x80     # plain
            assert decode(pb.AgentReply, r).error.code == pb.UNAUTHENTICATED
        assert ok[0] < 0x80         # the others go on, protected
        # the device whose request was tampered with keeps working
        await round_trip(gw, [devices[2]], [devices[2].heartbeat_call()])
        assert devices[2].bad_macs == 0 and not devices[2].errors


async def test_the_master_refuses_bad_batches_and_entries(master: MasterProcess) -> None:
    async with open_coap_client() as coap:
        # `g` must be protected: a plain batch is refused, whatever it holds
        resp = await coap.post(master.coap, "g", encode(pb.GatewayBatch()),
                               content_format=CONTENT_FORMAT_CBOR)
        assert resp.code == Code.UNAUTHORIZED
        gw = Gateway(coap, master)
        await gw.agent.settle()
        code, payload = await gw.post([b""] * 65)
        assert code == Code.REQUEST_ENTITY_TOO_LARGE
        assert await gw.relay([]) == []
        # a protected `g` whose payload is not a GatewayBatch
        agent = gw.agent.agent
        agent.seq += 1
        option, ct = seal_request(agent.oscore_context(), agent.seq, encode_plaintext(
            Code.POST, [(11, b"g"), (12, b"\x3c")], b"\xff"))
        resp = await coap.post(master.coap, (), ct, options=[(9, option)])
        value = next(v for n, v in resp.options if n == 9)
        _, plaintext = open_response(agent.oscore_context(), agent.seq, value, resp.payload)
        assert decode_plaintext(plaintext)[0] == Code.BAD_REQUEST
        # garbage, a truncated protected entry, an Observe (`c`) inside: each its own refusal;
        # the registration beside them goes on
        dev = ScriptedAgent(name="d", token="tok")
        garbage, short, reg = await gw.relay([b"\xff", b"\x02\x09\x01", dev.register_call()])
        assert decode(pb.AgentReply, garbage).error.code == pb.BAD_REQUEST
        assert decode(pb.AgentReply, short).error.code == pb.BAD_REQUEST
        dev.handle_reply(reg)
        assert dev.agent_id and dev.bad_macs == 0
        observe, seq = entry(dev, dev.heartbeat_call(), "c")
        (reply,) = await gw.relay([observe])
        code, option, ct = unpack_forwarded(reply)
        assert dev.unprotect(seq, option, ct)[1] == Code.NOT_FOUND   # protected, for it
