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
            await client.exchange()                  # the registration waits for its commit
            for _ in range(5):
                reply = await client.exchange()      # steady heartbeats: inline
                assert reply.seq == agent.seq and not reply.HasField("error")
            assert queued == ["register"]
            assert client.codes == [Code.CHANGED] * 6 and agent.bad_macs == 0
            # A replayed heartbeat is not steady for the core (old seq): the general path
            # answers it (4.01), inline, and it changes nothing.
            stale = agent.heartbeat_call()
            await client.send(stale)
            resp = await coap.post(coap_addr, "a", stale, content_format=60)
            assert resp.code == Code.UNAUTHORIZED
            # Not CBOR: declined inline, answered 4.15 by the handler.
            resp = await coap.post(coap_addr, "a", stale, content_format=0)
            assert resp.code == Code.UNSUPPORTED_CONTENT_FORMAT
            assert queued == ["register", "heartbeat"]
            assert (await client.exchange()).seq == agent.seq
        nursery.cancel_scope.cancel()
