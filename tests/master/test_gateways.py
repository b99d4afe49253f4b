"""The master's CoAP `g` (edgerm_master/gateways.py) against a real master process: batches of
devices' signed calls answered in order with their own signed replies, a heartbeat round on the
inline path, bad batches refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgerm.coap.codes import Code
from edgerm.transport.coap_client import open_coap_client
from edgerm.wire import CONTENT_FORMAT_CBOR, decode, encode, pb
from edgerm_master.testing import ScriptedAgent
from edgerm_master.testing_io import MasterProcess


@pytest.fixture
def master(tmp_path: Path) -> Iterator[MasterProcess]:
    m = MasterProcess(str(tmp_path / "master"), agent_token="tok", heartbeat_ms=500)
    m.start()
    try:
        yield m
    finally:
        m.stop()


async def post_batch(coap: object, master: MasterProcess, calls: list[bytes]) -> list[bytes]:
    resp = await coap.post(master.coap, "g", encode(pb.GatewayBatch(calls=calls)),  # type: ignore[attr-defined]
                           content_format=CONTENT_FORMAT_CBOR)
    assert resp.code == Code.CHANGED, resp
    return list(decode(pb.GatewayReplies, resp.payload).replies)


async def test_a_batch_registers_heartbeats_and_reports_for_several_devices(
        master: MasterProcess) -> None:
    devices = [ScriptedAgent(name=f"d{i}", token="tok") for i in range(3)]
    async with open_coap_client() as coap:
        replies = await post_batch(coap, master, [d.register_call() for d in devices])
        for d, r in zip(devices, replies, strict=True):
            d.handle_reply(r)
        assert all(d.agent_id for d in devices) and len({d.agent_id for d in devices}) == 3
        # a heartbeat round: steady heartbeats only (answered in the receive loop)
        for _ in range(3):
            replies = await post_batch(coap, master, [d.heartbeat_call() for d in devices])
            for d, r in zip(devices, replies, strict=True):
                d.handle_reply(r)
        assert all(d.bad_macs == 0 and not d.errors for d in devices)
        # a status update among heartbeats goes the general path; each gets its signed reply
        devices[0].queue.append(pb.AgentCall(status=pb.StatusUpdate(
            update_id=1, task=1, state=pb.RUNNING)))
        calls = [devices[0].next_call(), devices[1].heartbeat_call()]
        replies = await post_batch(coap, master, calls)
        assert decode(pb.AgentReply, replies[0]).seq == devices[0].seq
        devices[0].handle_reply(replies[0])
        devices[1].handle_reply(replies[1])
        assert devices[0].bad_macs == 0 and devices[1].bad_macs == 0
        # a replayed call inside a batch is refused like on `a`
        replies = await post_batch(coap, master, [calls[1]])
        assert decode(pb.AgentReply, replies[0]).HasField("error")


async def test_the_master_refuses_bad_batches(master: MasterProcess) -> None:
    async with open_coap_client() as coap:
        resp = await coap.post(master.coap, "g", b"\xff", content_format=CONTENT_FORMAT_CBOR)
        assert resp.code == Code.BAD_REQUEST
        assert decode(pb.Error, resp.payload).code == pb.BAD_REQUEST
        big = encode(pb.GatewayBatch(calls=[b""] * 65))
        resp = await coap.post(master.coap, "g", big, content_format=CONTENT_FORMAT_CBOR)
        assert resp.code == Code.REQUEST_ENTITY_TOO_LARGE
        resp = await coap.post(master.coap, "g", encode(pb.GatewayBatch()),
                               content_format=CONTENT_FORMAT_CBOR)
        assert resp.code == Code.CHANGED
        assert list(decode(pb.GatewayReplies, resp.payload).replies) == []
        # an entry that is garbage gets the master's own unsigned refusal, the others go on
        dev = ScriptedAgent(name="d", token="tok")
        batch = encode(pb.GatewayBatch(calls=[b"\xff", dev.register_call()]))
        resp = await coap.post(master.coap, "g", batch, content_format=CONTENT_FORMAT_CBOR)
        r1, r2 = decode(pb.GatewayReplies, resp.payload).replies
        assert decode(pb.AgentReply, r1).error.code == pb.BAD_REQUEST
        dev.handle_reply(r2)
        assert dev.agent_id and dev.bad_macs == 0
