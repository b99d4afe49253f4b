"""aiocoap's OSCORE client, holding a real agent's context, against our real master.

The agent registers with our code (first registration, plain and token-signed; then protected
calls confirm its key); aiocoap's client, given that agent's id and secret, sends protected
heartbeats to `python -m edgerm_master` over UDP and gets protected replies it verifies with
its own implementation. The inner Content-Format may be absent (the agents' protected form) or
60 (older agents'); any other is refused with a protected 4.15. A replayed sequence number is
refused, and the agent keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from tests_oscore_peers import run_aiocoap_client  # type: ignore[import-not-found]

from edgerm import oscore
from edgerm.coap.codes import Code
from edgerm.transport.coap import open_coap_client
from edgerm.wire import decode, encode, pb
from edgerm_master.testing import ScriptedAgent
from edgerm_master.testing_io import CoapAgentClient, MasterProcess


@pytest.fixture
def master(tmp_path: Path) -> Iterator[MasterProcess]:
    m = MasterProcess(str(tmp_path / "data"), heartbeat_ms=5000)
    m.start()
    try:
        yield m
    finally:
        m.stop()


def heartbeat(command_ack: int = 0) -> bytes:
    # Inside OSCORE an AgentCall has no agent_id, seq or mac: kid, Partial IV and tag say them.
    return encode(pb.AgentCall(heartbeat=pb.Heartbeat(command_ack=command_ack)))


async def test_aiocoap_client_heartbeats_to_our_master(master: MasterProcess,
                                                       tmp_path: Path) -> None:
    async with open_coap_client() as coap:
        agent = ScriptedAgent("aiocoap-peer")
        client = CoapAgentClient(coap, master.coap, agent)
        await client.settle()
        assert agent.agent_id and agent.secret and agent.errors == []
        kid = oscore.kid_of(agent.agent_id)
        first = agent.seq + 1

        # Inner Content-Format: none (the agents' protected form), 60 (older agents'), and
        # 0 (text/plain): refused with a protected 4.15 that aiocoap verifies.
        got = await trio.to_thread.run_sync(
            lambda: run_aiocoap_client(
                master.coap[1], tmp_path / "ctx", agent.secret, kid, first,
                [heartbeat(agent.applied)] * 3, content_formats=[None, 60, 0]))
        for g in got[:2]:
            assert g.get("code") == "2.04", got
            reply = decode(pb.AgentReply, bytes.fromhex(g["payload"]))
            assert not reply.HasField("error"), reply
            assert not reply.mac and not reply.seq  # OSCORE stands for them
        assert got[2].get("code") == "4.15", got
        refused = decode(pb.AgentReply, bytes.fromhex(got[2]["payload"]))
        assert refused.error.code == pb.UNSUPPORTED and "Content-Format" in \
            refused.error.message

        # The same sequence numbers again, from a second copy of the context: refused.
        replayed = await trio.to_thread.run_sync(
            run_aiocoap_client, master.coap[1], tmp_path / "ctx2", agent.secret, kid, first,
            [heartbeat(agent.applied)])
        assert replayed[0].get("plain_code") == "4.01", replayed
        refusal = decode(pb.AgentReply, bytes.fromhex(replayed[0]["plain_payload"]))
        assert refusal.error.code == pb.UNAUTHENTICATED

        # Our agent continues past the numbers aiocoap used.
        agent.seq = first + 2
        reply = await client.exchange()
        assert not reply.HasField("error") and client.codes[-1] == Code.CHANGED
