"""End to end: `python -m edgerm_master` as a process, real CoAP/UDP and WebSocket on loopback,
scripted agents and frameworks; and the crash test (SIGKILL in the middle of launches)."""

from __future__ import annotations

import hashlib
import os
import random
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from edgerm.coap.codes import Code
from edgerm.transport.coap import open_coap_client
from edgerm.wire import CONTENT_FORMAT_CBOR, decode, encode, pb, sign
from edgerm_master.testing import ScriptedAgent, ScriptedFramework, task_info, wasm_module
from edgerm_master.testing_io import (
    CoapAgentClient,
    MasterProcess,
    WsAgentClient,
    WsFrameworkClient,
)

TS = pb.TaskState


@pytest.fixture
def master(tmp_path: Any) -> Iterator[MasterProcess]:
    m = MasterProcess(str(tmp_path / "data"), heartbeat_ms=2000,
                      extra=["--allocation-interval-s", "0.2"])
    m.start()
    yield m
    m.stop()


def as_bytes(msg: str | bytes) -> bytes:
    return msg.encode() if isinstance(msg, str) else msg


def ws_url(m: MasterProcess, path: str) -> str:
    return f"ws://{m.ws[0]}:{m.ws[1]}{path}"


async def subscribe(ws: Any, fw: ScriptedFramework | None = None) -> WsFrameworkClient:
    client = WsFrameworkClient(ws, fw or ScriptedFramework())
    await client.send(client.fw.subscribe())
    await client.until_kind("subscribed")
    return client


async def test_launch_over_coap_and_websocket(master: MasterProcess) -> None:
    async with open_coap_client() as coap, open_websocket_url(ws_url(master, "/framework")) as ws:
        agent = ScriptedAgent("pi-1")
        ac = CoapAgentClient(coap, master.coap, agent)
        await ac.settle()
        assert agent.agent_id == 1 and ac.codes[0] == Code.CHANGED
        fc = await subscribe(ws)
        offers = pb.Offers(offers=await fc.offers())
        await fc.send(fc.fw.accept([offers.offers[0].offer_id], [task_info("t1")]))
        assert list((await fc.until_kind("accepted")).task_ids) == ["t1"]
        await ac.settle()
        assert agent.running() == [1] and agent.starts[1] == 1
        for want in (TS.STARTING, TS.RUNNING):
            up = await fc.until_kind("update")
            assert up.state == want
            await fc.send(fc.fw.acknowledge(up))
        # Kill, delivered on the next heartbeat.
        await fc.send(fc.fw.kill("t1"))
        assert (await fc.until_kind("update")).state == TS.KILLING
        await ac.settle()
        assert agent.tasks[1] == TS.KILLED


async def test_observe_pushes_commands_at_once(master: MasterProcess) -> None:
    async with open_coap_client() as coap, open_websocket_url(ws_url(master, "/framework")) as ws:
        agent = ScriptedAgent("obs")
        ac = CoapAgentClient(coap, master.coap, agent)
        await ac.settle()
        fc = await subscribe(ws)
        offers = pb.Offers(offers=await fc.offers())
        async with ac.observe() as it:
            first = await it.__anext__()   # (OSCORE-protected, as every call after register)
            assert ac.codes[-1] == Code.CONTENT and not first.HasField("error")
            await fc.send(fc.fw.accept([offers.offers[0].offer_id], [task_info("t1")]))
            with trio.fail_after(5):
                reply = await it.__anext__()
            assert ac.codes[-1] == Code.CONTENT
            assert reply.seq == 0 and reply.commands[0].launch.task == 1
            assert agent.starts[1] == 1 and agent.bad_macs == 0


async def test_websocket_agent_gets_pushes_and_modules(master: MasterProcess) -> None:
    async with open_websocket_url(ws_url(master, "/agent")) as aws, \
            open_websocket_url(ws_url(master, "/framework")) as fws, \
            open_coap_client() as coap:
        agent = ScriptedAgent("ws-agent")
        ac = WsAgentClient(aws, agent)
        await ac.settle()
        fc = await subscribe(fws)
        mod = wasm_module(os.urandom(3000))
        await fc.send(fc.fw.upload(mod, name="big.wasm"))
        stored = await fc.until_kind("module_stored")
        sha = hashlib.sha256(mod).digest()
        assert stored.sha256 == sha
        offers = pb.Offers(offers=await fc.offers())
        spec = pb.TaskSpec(name="w", resources=pb.Resources(cpus=1),
                           wasm=pb.WasmTask(sha256=sha))
        await fc.send(fc.fw.accept([offers.offers[0].offer_id],
                                   [pb.TaskInfo(task_id="w", spec=spec)]))
        await fc.until_kind("accepted")
        with trio.fail_after(5):
            pushed = await ac.receive()
        assert pushed.seq == 0 and pushed.commands[0].launch.spec.wasm.size == len(mod)
        # The module over WebSocket, in chunks.
        got = b""
        while len(got) < len(mod):
            agent.seq += 1
            call = pb.AgentCall(agent_id=agent.agent_id, seq=agent.seq,
                                module=pb.ModuleRequest(sha256=sha, offset=len(got),
                                                        length=1000))
            await aws.send_message(sign(call, agent.secret))
            reply = decode(pb.AgentReply, as_bytes(await aws.get_message()))
            while reply.seq == 0:
                reply = decode(pb.AgentReply, as_bytes(await aws.get_message()))
            assert reply.module.total == len(mod)
            got += reply.module.data
        assert got == mod
        # And over CoAP GET m/<hex> with small Block2 blocks.
        resp = await coap.get(master.coap, f"m/{sha.hex()}", block_size=64)
        assert resp.code == Code.CONTENT and resp.payload == mod
        missing = await coap.get(master.coap, "m/" + "00" * 32)
        assert missing.code == Code.NOT_FOUND


async def test_state_resource_needs_operator_token(master: MasterProcess) -> None:
    async with open_coap_client() as coap:
        ac = CoapAgentClient(coap, master.coap, ScriptedAgent("s1"))
        await ac.settle()
        # CoAP `s` is gone (an operator token must not cross in clear): WebSocket /state.
        gone = await coap.post(master.coap, "s", encode(pb.StateRequest(token="operator-token")),
                               content_format=CONTENT_FORMAT_CBOR)
        assert gone.code == Code.NOT_FOUND
    async with open_websocket_url(ws_url(master, "/state")) as ws:
        await ws.send_message(encode(pb.StateRequest(token="x")))
        bad = decode(pb.Error, as_bytes(await ws.get_message()))
        assert bad.code == pb.UNAUTHENTICATED
    async with open_websocket_url(ws_url(master, "/state")) as ws:
        await ws.send_message(encode(pb.StateRequest(token="operator-token")))
        state = decode(pb.ClusterState, as_bytes(await ws.get_message()))
        assert [a.name for a in state.agents] == ["s1"] and state.agents[0].state == "active"
        assert state.agents[0].transport == "coap"


async def test_hostile_input_does_not_hurt(master: MasterProcess) -> None:
    rng = random.Random(7)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(300):
            s.sendto(rng.randbytes(rng.randrange(0, 300)), master.coap)
    async with open_websocket_url(ws_url(master, "/framework")) as ws:
        await ws.send_message(b"\xff\x00garbage")
        err = decode(pb.FrameworkEvent, as_bytes(await ws.get_message()))
        assert err.error.code == pb.UNAUTHENTICATED or err.error.code == pb.BAD_REQUEST
    # The protocol is binary frames only: a text frame closes the connection with 1003.
    for path in ("/agent", "/framework", "/state"):
        async with open_websocket_url(ws_url(master, path)) as ws:
            await ws.send_message("not binary")
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 1003, path
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(ws_url(master, "/nope")):
            pass
    assert rejected.value.status_code == 404
    assert rejected.value.body == b"use /agent or /framework or /state\n"
    async with open_coap_client() as coap:
        resp = await coap.post(master.coap, "a", b"\xa1\x01", content_format=CONTENT_FORMAT_CBOR)
        assert resp.code in (Code.BAD_REQUEST, Code.UNAUTHORIZED)
        resp = await coap.post(master.coap, "a", b"{}", content_format=50)
        assert resp.code == Code.UNSUPPORTED_CONTENT_FORMAT
        # Still serving.
        ac = CoapAgentClient(coap, master.coap, ScriptedAgent("after"))
        await ac.settle()
        assert ac.agent.agent_id == 1


async def test_sigkill_in_the_middle_of_launches(tmp_path: Any) -> None:
    """Every task the framework saw accepted exists after a SIGKILL and restart; agents and
    frameworks reconnect; running tasks keep running and none is started twice."""
    m = MasterProcess(str(tmp_path / "data"), heartbeat_ms=2000,
                      extra=["--allocation-interval-s", "0.05", "--offer-timeout-s", "5"])
    m.start()
    agents = [ScriptedAgent(f"a{i}", resources=pb.Resources(cpus=64, mem_mb=65536))
              for i in range(3)]
    accepted: set[str] = set()
    fw = ScriptedFramework(failover_timeout_s=600)
    try:
        async with open_coap_client() as coap:
            clients = [CoapAgentClient(coap, m.coap, a) for a in agents]
            for c in clients:
                await c.settle()
            async with trio.open_nursery() as nursery:
                async def launcher() -> None:
                    try:
                        async with open_websocket_url(ws_url(m, "/framework")) as ws:
                            fc = await subscribe(ws, fw)
                            n = 0
                            while True:
                                offers = pb.Offers(offers=await fc.offers())
                                for o in offers.offers:
                                    ids = [f"t{n + i}" for i in range(4)]
                                    n += 4
                                    await fc.send(fc.fw.accept(
                                        [o.offer_id], [task_info(t, 0.1, 16) for t in ids]))
                                    acc = await fc.until_kind("accepted")
                                    accepted.update(acc.task_ids)
                    except Exception:
                        return  # the master died under us

                async def heartbeats() -> None:
                    while True:
                        for c in clients:
                            try:
                                await c.exchange()
                            except Exception:
                                return
                        await trio.sleep(0.01)

                nursery.start_soon(launcher)
                nursery.start_soon(heartbeats)
                with trio.fail_after(30):
                    while len(accepted) < 60:
                        await trio.sleep(0.01)
                m.kill()
                nursery.cancel_scope.cancel()
            seen_before = set(accepted)
            m.start()
            for c in clients:
                c.agent.need_register = True
                await c.settle()
                await c.settle()
            async with open_websocket_url(ws_url(m, "/framework")) as ws:
                fw2 = ScriptedFramework(failover_timeout_s=600)
                fw2.framework_id = fw.framework_id
                fw2.framework_secret = fw.framework_secret
                fc = await subscribe(ws, fw2)
                await fc.send(fc.fw.reconcile(sorted(seen_before)))
                states: dict[str, int] = {}
                with trio.fail_after(10):
                    while len(states) < len(seen_before):
                        # The answer is the state (RECONCILIATION, or LOST TASK_UNKNOWN), or
                        # for a task with unacknowledged updates the oldest of them again.
                        up = await fc.until_kind("update")
                        if up.task_id in seen_before:
                            states[up.task_id] = up.state
            lost = {t for t, s in states.items() if s not in (TS.STAGING, TS.STARTING,
                                                                TS.RUNNING)}
            assert not lost, f"acknowledged tasks lost or failed after SIGKILL: {sorted(lost)}"
            for c in clients:
                for _ in range(3):
                    await c.settle()
            starts = [n for a in agents for n in a.starts.values()]
            assert starts and max(starts) == 1
            running = sum(len(a.running()) for a in agents)
            assert running >= len(seen_before)
    finally:
        m.stop()


async def test_sigkill_three_times_while_200_tasks_publish(tmp_path: Any) -> None:
    """Every output the master accepted (acknowledged to its agent) reaches the framework
    once, in order, across three SIGKILLs in the middle of publishing; none is missed.
    Before: numbering restarted at 1 after each restart and the SDK dropped new outputs as
    repeats, and outputs not yet sent when the master died were gone."""
    from edgerm.framework import Backoff, Framework, OutputEvent

    m = MasterProcess(str(tmp_path / "data"), heartbeat_ms=2000,
                      extra=["--allocation-interval-s", "0.05"])
    m.start()
    agents = [ScriptedAgent(f"p{i}", resources=pb.Resources(cpus=64, mem_mb=65536))
              for i in range(4)]
    per_agent, rounds = 50, 3
    received: list[OutputEvent] = []
    published = 0
    try:
        async with open_coap_client() as coap:
            clients = [CoapAgentClient(coap, m.coap, a) for a in agents]
            for c in clients:
                await c.settle()
            async with Framework.connect(
                    ws_url(m, ""), name="publishers", token="framework-token",
                    failover_timeout_s=600, backoff=Backoff(first=0.05, cap=0.5),
                    connect_timeout_s=10) as fw:
                # 200 tasks, 50 on each agent.
                launched = 0
                with trio.fail_after(20):
                    while launched < per_agent * len(agents):
                        for offer in list(fw.offers.values()):
                            ids = [f"t{launched + i}" for i in range(per_agent)]
                            await fw.accept([offer.offer_id], [task_info(t, 0.1, 16)
                                                               for t in ids])
                            launched += per_agent
                        await trio.sleep(0.05)
                for c in clients:
                    await c.settle()
                assert all(len(a.running()) == per_agent for a in agents)

                async def consume() -> None:
                    async for ev in fw.events():
                        if isinstance(ev, OutputEvent):
                            received.append(ev)

                async def publisher(c: CoapAgentClient) -> None:
                    nonlocal published
                    a = c.agent
                    while True:
                        if not a.queue and not a.need_register:
                            k = published_by[a.name]
                            if k >= per_agent * rounds:
                                return
                            number = a.running()[k % per_agent]
                            a.publish(number, f"{a.name}/{number}/{k // per_agent}".encode())
                            published_by[a.name] = k + 1
                            published += 1
                        await c.exchange()

                published_by = dict.fromkeys((a.name for a in agents), 0)
                total = per_agent * rounds * len(agents)
                async with trio.open_nursery() as outer:
                    outer.start_soon(consume)
                    for kill_at in (total // 4, total // 2, 3 * total // 4, None):
                        async with trio.open_nursery() as nursery:
                            for c in clients:
                                nursery.start_soon(publisher, c)
                            if kill_at is None:
                                continue   # the last round runs to the end
                            with trio.fail_after(60):
                                while published < kill_at:
                                    await trio.sleep(0.002)
                            m.kill()   # SIGKILL, calls in flight
                            nursery.cancel_scope.cancel()
                        m.start()
                        for c in clients:
                            # The first call after a restart is answered with ReRegister.
                            await c.settle()
                    for c in clients:
                        await c.settle()
                    assert published == total and not any(a.queue for a in agents)
                    with trio.move_on_after(20):   # the assertions below say what is missing
                        while len({(o.task_id, o.seq) for o in received}) < total:
                            await trio.sleep(0.05)
                    await trio.sleep(0.3)   # anything more would be a repeat: none may come
                    outer.cancel_scope.cancel()
                missed = getattr(fw.core, "outputs_missed", 0)  # (absent before the fix)
    finally:
        m.stop()
    datas = [o.data for o in received]
    assert len(datas) == len(set(datas)), "an output delivered twice"
    assert len(datas) == total, f"{total - len(datas)} of {total} accepted outputs never arrived"
    assert missed == 0
    by_task: dict[str, list[tuple[int, bytes]]] = {}
    for o in received:
        by_task.setdefault(o.task_id, []).append((o.seq, o.data))
    assert len(by_task) == per_agent * len(agents)
    for outs in by_task.values():
        assert [s for s, _ in outs] == list(range(1, rounds + 1))
        assert [d.rsplit(b"/", 1)[1] for _, d in outs] == [b"0", b"1", b"2"]


async def test_agent_restarted_while_unreachable_heartbeat_first(tmp_path: Any) -> None:
    """Over real CoAP: an agent goes silent (UNREACHABLE), reboots without its task and, with
    its seq kept, heartbeats before it registers. The framework sees RUNNING, UNREACHABLE,
    FAILED (AGENT_RESTARTED), never a RUNNING "reachable again" in between."""
    m = MasterProcess(str(tmp_path / "data"), heartbeat_ms=300,
                      extra=["--allocation-interval-s", "0.05"])
    m.start()
    try:
        async with open_coap_client() as coap, \
                open_websocket_url(ws_url(m, "/framework")) as ws:
            agent = ScriptedAgent("r1")
            ac = CoapAgentClient(coap, m.coap, agent)
            await ac.settle()
            fc = await subscribe(ws)
            seen: list[tuple[int, int]] = []

            async def next_update() -> pb.TaskStatus:
                up = await fc.until_kind("update")
                seen.append((up.state, up.reason))
                await fc.send(fc.fw.acknowledge(up))
                return up

            async with trio.open_nursery() as nursery:
                async def heartbeats() -> None:
                    while True:
                        await ac.exchange()
                        await trio.sleep(0.05)

                nursery.start_soon(heartbeats)
                offers = pb.Offers(offers=await fc.offers())
                await fc.send(fc.fw.accept([offers.offers[0].offer_id], [task_info("t1")]))
                with trio.fail_after(10):
                    while (await next_update()).state != TS.RUNNING:
                        pass
                nursery.cancel_scope.cancel()   # silence
            with trio.fail_after(10):
                assert (await next_update()).state == TS.UNREACHABLE
            agent.tasks.clear()                  # the reboot lost the task
            agent.need_register = True
            await ac.send(agent.heartbeat_call())  # authentic: its seq survived the reboot
            await ac.settle()
            with trio.fail_after(10):
                while (await next_update()).state == TS.UNREACHABLE:
                    pass
    finally:
        m.stop()
    assert seen[-3:] == [(TS.RUNNING, 0), (TS.UNREACHABLE, pb.AGENT_UNREACHABLE),
                         (TS.FAILED, pb.AGENT_RESTARTED)], seen
