"""MasterService.set_role: a standby refuses every call with NOT_LEADER naming the leader's URL
of the caller's transport, on real CoAP and WebSocket; a leader that becomes a standby drops its
push channels; a standby writes nothing (issue 12)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from edgerm.coap.codes import Code
from edgerm.transport.coap import open_coap_client
from edgerm.wire import CONTENT_FORMAT_CBOR, decode, encode, pb
from edgerm_master.config import MasterConfig
from edgerm_master.members import MemberInfo, Role
from edgerm_master.service import MasterService
from edgerm_master.testing import ScriptedAgent, ScriptedFramework
from edgerm_master.testing_io import CoapAgentClient, WsFrameworkClient

LEADER = MemberInfo("m2", {"coap": "coap://10.1.1.2:5683", "ws": "ws://10.1.1.2:5690"})


@asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[tuple[MasterService, Any, Any]]:
    service = MasterService(MasterConfig(
        coap_port=0, ws_port=0, host="127.0.0.1", data_dir=str(tmp_path), heartbeat_ms=60_000,
        agent_tokens=["agent-token"], framework_tokens=["framework-token"],
        operator_tokens=["operator-token"]))
    async with trio.open_nursery() as nursery:
        coap, ws = await nursery.start(service.run)
        yield service, coap, ws
        nursery.cancel_scope.cancel()


def ws_url(ws: Any, path: str) -> str:
    return f"ws://{ws[0]}:{ws[1]}{path}"


async def test_a_standby_refuses_every_call_naming_the_leader(tmp_path: Path) -> None:
    async with serving(tmp_path) as (service, coap_addr, ws_addr):
        service.set_role(Role.STANDBY, LEADER)
        commits = service.commits
        agent = ScriptedAgent("pi")
        async with open_coap_client() as coap:
            for path in ("a", "c"):
                call = agent.register_call()
                method = coap.post if path == "a" else coap.fetch
                resp = await method(coap_addr, path, call, content_format=CONTENT_FORMAT_CBOR)
                assert resp.code == Code.SERVICE_UNAVAILABLE, path
                reply = decode(pb.AgentReply, resp.payload)
                assert reply.seq == decode(pb.AgentCall, call).seq
                assert reply.error.code == pb.NOT_LEADER
                assert reply.error.leader == "coap://10.1.1.2:5683"
                assert "standby" in reply.error.message
            resp = await coap.get(coap_addr, ("m", "00" * 32))
            assert resp.code == Code.SERVICE_UNAVAILABLE
            assert decode(pb.Error, resp.payload).code == pb.NOT_LEADER
            # An OSCORE-protected call: a plain refusal (the standby holds no context).
            known = ScriptedAgent("known")
            known.agent_id, known.secret = 7, bytes(16)
            protected = known.protect(known.heartbeat_call())
            assert protected is not None
            resp = await coap.post(coap_addr, (), protected[2], options=[(9, protected[1])])
            assert resp.code == Code.SERVICE_UNAVAILABLE
            assert not any(n == 9 for n, _ in resp.options)
            reply = decode(pb.AgentReply, resp.payload)
            assert (reply.error.code, reply.error.leader) == (pb.NOT_LEADER,
                                                              "coap://10.1.1.2:5683")
        async with open_websocket_url(ws_url(ws_addr, "/agent")) as ws:
            await ws.send_message(agent.register_call())
            reply = decode(pb.AgentReply, await ws.get_message())
            assert (reply.error.code, reply.error.leader) == (pb.NOT_LEADER,
                                                              "ws://10.1.1.2:5690")
        async with open_websocket_url(ws_url(ws_addr, "/framework")) as ws:
            fw = ScriptedFramework()
            await ws.send_message(fw.subscribe())
            ev = decode(pb.FrameworkEvent, await ws.get_message())
            assert ev.call_id == 1 and ev.error.code == pb.NOT_LEADER
            assert ev.error.leader == "ws://10.1.1.2:5690"
            try:
                with trio.fail_after(5):
                    await ws.get_message()
                raise AssertionError("the standby kept the connection open")
            except ConnectionClosed:
                pass
        async with open_websocket_url(ws_url(ws_addr, "/state")) as ws:
            await ws.send_message(encode(pb.StateRequest(token="operator-token")))
            err = decode(pb.Error, await ws.get_message())
            assert (err.code, err.leader) == (pb.NOT_LEADER, "ws://10.1.1.2:5690")
        assert service.commits == commits and not service.core.agents   # wrote nothing


async def test_a_standby_without_a_leader_says_so(tmp_path: Path) -> None:
    async with serving(tmp_path) as (service, coap_addr, _):
        service.set_role(Role.STANDBY, None)
        async with open_coap_client() as coap:
            resp = await coap.post(coap_addr, "a", ScriptedAgent("pi").register_call(),
                                   content_format=CONTENT_FORMAT_CBOR)
        err = decode(pb.AgentReply, resp.payload).error
        assert err.code == pb.NOT_LEADER and err.leader == ""
        assert "knows no leader" in err.message


async def test_stepping_down_drops_channels_and_leading_again_serves(tmp_path: Path) -> None:
    async with serving(tmp_path) as (service, coap_addr, ws_addr):
        async with open_websocket_url(ws_url(ws_addr, "/framework")) as ws:
            client = WsFrameworkClient(ws, ScriptedFramework())
            await client.send(client.fw.subscribe())
            await client.until_kind("subscribed")
            service.set_role(Role.STANDBY, LEADER)
            ev = await client.until(lambda e: e.WhichOneof("event") == "error")
            assert ev.error.code == pb.NOT_LEADER and ev.error.leader == LEADER.urls["ws"]
            try:
                with trio.fail_after(5):
                    while True:
                        await ws.get_message()
            except ConnectionClosed:
                pass
        service.set_role(Role.LEADER, None)
        async with open_coap_client() as coap:
            agent = CoapAgentClient(coap, coap_addr, ScriptedAgent("pi"))
            await agent.settle()
        assert agent.agent.agent_id and len(service.core.agents) == 1
