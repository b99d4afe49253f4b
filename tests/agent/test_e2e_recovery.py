"""End to end: the master restarts under a running agent; the agent is cut off (a UDP relay
in front of the master's CoAP port stops forwarding), goes UNREACHABLE and comes back RUNNING
without a relaunch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import trio

from edgerm.coap.codes import Code
from edgerm.coap.message import decode_message_untrusted
from edgerm.transport.coap import open_coap_client
from edgerm.wire import CONTENT_FORMAT_CBOR, decode, pb
from edgerm_agent.testing import AgentProcess
from edgerm_master.testing import wasm_spec
from edgerm_master.testing_io import MasterProcess, UdpRelay, open_framework

TS = pb.TaskState


async def test_cut_off_agent_goes_unreachable_and_comes_back_running(
        tmp_path: Path, master: MasterProcess, wasm_modules: dict[str, bytes]) -> None:
    relay = UdpRelay(master.coap)
    port = await relay.bind()
    agent = AgentProcess(tmp_path / "agent", f"coap://127.0.0.1:{port}").start()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(relay.run)
            f = await open_framework(nursery, master.ws)
            sha = await f.upload(wasm_modules["spin"])
            await f.launch("spin", wasm_spec(sha, len(wasm_modules["spin"])))
            await f.wait_state("spin", TS.RUNNING)
            relay.forwarding = False
            st = await f.wait_state("spin", TS.UNREACHABLE, timeout=10)
            assert st.reason == pb.AGENT_UNREACHABLE
            await trio.sleep(1.0)
            relay.forwarding = True
            await f.wait_state("spin", TS.RUNNING, timeout=20)
            after = f.states("spin")[f.states("spin").index(TS.UNREACHABLE):]
            assert TS.STARTING not in after, f.states("spin")  # not relaunched
            assert agent.log().count("task 1: STARTING") == 0  # reported via the launch only
            await f.send(f.fw.kill("spin"))
            await f.wait_state("spin", TS.KILLED)
            nursery.cancel_scope.cancel()
    finally:
        agent.stop()


async def test_master_restart_keeps_tasks_running(
        tmp_path: Path, master: MasterProcess, wasm_modules: dict[str, bytes]) -> None:
    host, port = master.ws
    agent = AgentProcess(tmp_path / "agent", f"ws://{host}:{port}/agent").start()
    try:
        async with trio.open_nursery() as nursery:
            f = await open_framework(nursery, master.ws)
            sha = await f.upload(wasm_modules["spin"])
            await f.launch("spin", wasm_spec(sha, len(wasm_modules["spin"])))
            await f.wait_state("spin", TS.RUNNING)
            framework_id, secret = f.fw.framework_id, f.fw.framework_secret
            nursery.cancel_scope.cancel()
        master.kill()
        master.restart()
        async with trio.open_nursery() as nursery:
            f = await open_framework(nursery, master.ws, framework_id, secret)
            await f.send(f.fw.reconcile(["spin"]))
            await f.wait_state("spin", TS.RUNNING)
            await f.send(f.fw.kill("spin"))
            st = await f.wait_state("spin", TS.KILLED)
            assert st.reason == pb.KILL_REQUESTED, agent.log()
            nursery.cancel_scope.cancel()
    finally:
        agent.stop()


class _RecordingRelay(UdpRelay):
    """A relay that also keeps every AgentCall the agent sent (an attacker on the path)."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(target)
        self.calls: list[pb.AgentCall] = []
        self.raw: list[bytes] = []

    async def _up(self) -> None:
        while True:
            data, self.client = await self.front.recvfrom(65536)
            try:
                payload = decode_message_untrusted(data).payload
                call = decode(pb.AgentCall, payload)
            except Exception:
                call = None
            if call is not None and payload not in self.raw:
                self.calls.append(call)
                self.raw.append(payload)
            if self.forwarding:
                await self.back.sendto(data, self.target)

    def recorded(self, kind: str, since: int = 0) -> list[tuple[pb.AgentCall, bytes]]:
        return [(c, r) for c, r in zip(self.calls[since:], self.raw[since:], strict=True)
                if c.WhichOneof("call") == kind and c.agent_id]


async def test_calls_recorded_before_an_agent_restart_stay_refused(
        tmp_path: Path, master: MasterProcess, wasm_modules: dict[str, bytes]) -> None:
    """(issue 10) A real agent killed with SIGKILL and started again goes on past every seq it
    used: a heartbeat from before the restart, replayed to the master, is refused (4.01); a
    re-registration listing no tasks, replayed while the task runs, is refused and the task
    is not failed."""
    relay = _RecordingRelay(master.coap)
    port = await relay.bind()
    agent = AgentProcess(tmp_path / "agent", f"coap://127.0.0.1:{port}")
    async with trio.open_nursery() as nursery, open_coap_client() as coap:
        nursery.start_soon(relay.run)

        async def replay(payload: bytes) -> int:
            resp = await coap.post(master.coap, "a", payload,
                                   content_format=CONTENT_FORMAT_CBOR)
            return int(resp.code)

        async def wait_for(predicate: Callable[[], object], what: str) -> None:
            with trio.move_on_after(15):
                while not predicate():
                    await trio.sleep(0.05)
                return
            raise AssertionError(f"timed out waiting for {what}: {agent.log()}")

        try:
            agent.start()
            await wait_for(lambda: len(relay.recorded("heartbeat")) >= 10, "heartbeats")
            old_heartbeat = relay.recorded("heartbeat")[-1]
            agent_id = old_heartbeat[0].agent_id
            agent.kill()
            mark = len(relay.calls)
            agent.start()
            await wait_for(lambda: relay.recorded("heartbeat", mark), "the restarted agent")
            rereg = relay.recorded("register", mark)[0]
            assert rereg[0].agent_id == agent_id and not rereg[0].register.tasks  # same identity
            assert rereg[0].seq > old_heartbeat[0].seq
            # (a) the old heartbeat, replayed after the restart.
            assert await replay(old_heartbeat[1]) == Code.UNAUTHORIZED

            f = await open_framework(nursery, master.ws)
            sha = await f.upload(wasm_modules["spin"])
            await f.launch("spin", wasm_spec(sha, len(wasm_modules["spin"])))
            await f.wait_state("spin", TS.RUNNING)
            # (b) the re-registration listing no tasks, replayed while the task runs.
            assert await replay(rereg[1]) == Code.UNAUTHORIZED
            await f.send(f.fw.kill("spin"))
            st = await f.wait_state("spin", TS.KILLED, TS.FAILED)
            assert st.state == TS.KILLED and st.reason == pb.KILL_REQUESTED, f.states("spin")
            assert TS.FAILED not in f.states("spin")
            # One identity throughout: the restarted agent was never refused into a new one.
            assert agent.log_path.read_text().count(" (new)") == 1, agent.log()
        finally:
            agent.stop()
            nursery.cancel_scope.cancel()
