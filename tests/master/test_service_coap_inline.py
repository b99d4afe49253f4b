"""The master's CoAP `a` resource answers steady heartbeats in the receive loop (no worker) and
everything else through a handler worker that waits for durability: same answers either way."""

from __future__ import annotations

from pathlib import Path

import trio

from edgerm.coap.codes import Code
from edgerm.transport.coap import Request, Response, open_coap_client
from edgerm.wire import decode, pb
from edgerm_master.config import MasterConfig
from edgerm_master.service import MasterService
from edgerm_master.testing import ScriptedAgent
from edgerm_master.testing_io import CoapAgentClient


async def test_steady_heartbeats_skip_the_worker_and_the_rest_do_not(tmp_path: Path) -> None:
    service = MasterService(MasterConfig(
        coap_port=0, ws_port=0, data_dir=str(tmp_path), heartbeat_ms=60_000,
        agent_tokens=["agent-token"], framework_tokens=["framework-token"],
        operator_tokens=["operator-token"]))
    queued: list[str | None] = []
    handler = service._coap_agent

    async def counting(request: Request) -> Response:
        try:
            queued.append(decode(pb.AgentCall, request.payload).WhichOneof("call"))
        except Exception:
            queued.append(None)
        return await handler(request)

    service._coap_agent = counting  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        coap_addr, _ = await nursery.start(service.run)
        async with open_coap_client() as coap:
            agent = ScriptedAgent("pi")
            client = CoapAgentClient(coap, coap_addr, agent)
            await client.exchange()                  # the first registration: pending
            assert not service.core.agents and agent.agent_id in service.core.state.pending
            await client.exchange()                  # its first OSCORE call confirms it (a
            assert list(service.core.agents) == [agent.agent_id]   # commit: not inline)
            for _ in range(5):
                reply = await client.exchange()      # steady protected heartbeats: inline
                assert reply.seq == 0 and not reply.HasField("error") and not reply.mac
            assert queued == ["register", "heartbeat"]
            assert client.codes == [Code.CHANGED] * 7 and agent.bad_macs == 0
            # A replayed protected heartbeat (old Partial IV) is refused in the receive loop
            # before the core sees it: a plain 4.01, nothing changed.
            stale = agent.protect(agent.heartbeat_call())
            assert stale is not None
            _, option, ciphertext = stale
            first = await coap.post(coap_addr, (), ciphertext, options=[(9, option)])
            assert first.code == Code.CHANGED
            again = await coap.post(coap_addr, (), ciphertext, options=[(9, option)])
            assert again.code == Code.UNAUTHORIZED and not any(n == 9 for n, _ in again.options)
            assert decode(pb.AgentReply, again.payload).error.code == pb.UNAUTHENTICATED
            # A mac-signed heartbeat on CoAP is refused (no downgrade from OSCORE), by the
            # queued handler; a malformed OSCORE option is a 4.02 in the receive loop.
            signed = await coap.post(coap_addr, "a", agent.heartbeat_call(), content_format=60)
            assert signed.code == Code.UNAUTHORIZED
            bad = await coap.post(coap_addr, (), ciphertext, options=[(9, b"\xff")])
            assert bad.code == Code.BAD_OPTION
            # Not CBOR: declined inline, answered 4.15 by the handler.
            resp = await coap.post(coap_addr, "a", agent.heartbeat_call(), content_format=0)
            assert resp.code == Code.UNSUPPORTED_CONTENT_FORMAT
            assert queued == ["register", "heartbeat", "heartbeat", "heartbeat"]
            assert not (await client.exchange()).HasField("error")
        nursery.cancel_scope.cancel()


async def test_inner_content_format_absent_or_60_is_served_any_other_refused(
        tmp_path: Path) -> None:
    """A protected call carries no inner Content-Format (the resource implies a CBOR
    AgentCall); one with 60 (agents before that) is served alike; any other is answered with a
    protected 4.15 and changes nothing (the core never sees it: its seq is not used up)."""
    service = MasterService(MasterConfig(
        coap_port=0, ws_port=0, data_dir=str(tmp_path), heartbeat_ms=60_000,
        agent_tokens=["agent-token"], framework_tokens=["framework-token"],
        operator_tokens=["operator-token"]))
    async with trio.open_nursery() as nursery:
        coap_addr, _ = await nursery.start(service.run)
        async with open_coap_client() as coap:
            agent = ScriptedAgent("pi")
            client = CoapAgentClient(coap, coap_addr, agent)
            await client.settle()
            state = service.core.state
            record = state.agents[agent.agent_id]
            # Served: no inner Content-Format and 60, each as a steady heartbeat (the inline
            # fast path) and as one carrying resources (not steady: the queued handler).
            for cf, steady in ((None, True), (60, True), (None, False), (60, False)):
                call = agent.heartbeat_call(None if steady else agent.resources)
                protected = agent.protect(call, content_format=cf)
                assert protected is not None
                seq, option, ciphertext = protected
                resp = await coap.post(coap_addr, (), ciphertext, options=[(9, option)])
                assert resp.code == Code.CHANGED
                _, code, payload = agent.unprotect(seq, dict(resp.options)[9], resp.payload)
                assert code == Code.CHANGED, (cf, code)
                assert not decode(pb.AgentReply, payload).HasField("error")
                assert record.seq == seq
            # Refused: text/plain (0) and application/json (50) on `a`, 0 on FETCH `c`.
            for cf, path in ((0, "a"), (50, "a"), (0, "c")):
                seq_before, emitted = record.seq, service.core.records_emitted
                protected = agent.protect(agent.heartbeat_call(), path, content_format=cf)
                assert protected is not None
                seq, option, ciphertext = protected
                if path == "c":
                    resp = await coap.fetch(coap_addr, (), ciphertext,
                                            options=[(6, b""), (9, option)])
                else:
                    resp = await coap.post(coap_addr, (), ciphertext, options=[(9, option)])
                value = dict(resp.options).get(9)
                assert value is not None, "the refusal is protected"
                _, code, payload = agent.unprotect(seq, value, resp.payload)
                assert code == Code.UNSUPPORTED_CONTENT_FORMAT
                error = decode(pb.AgentReply, payload).error
                assert error.code == pb.UNSUPPORTED and "Content-Format" in error.message
                assert record.seq == seq_before and seq > seq_before
                assert service.core.records_emitted == emitted
                assert state.agents[agent.agent_id] is record
            # The agent goes on (its later Partial IVs are above the refused ones).
            assert not (await client.exchange()).HasField("error")
            assert record.seq == agent.seq
        nursery.cancel_scope.cancel()
