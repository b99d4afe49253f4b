"""End to end: the master restarts under a running agent; the agent is cut off (a UDP relay
in front of the master's CoAP port stops forwarding), goes UNREACHABLE and comes back RUNNING
without a relaunch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import trio

from edgerm.coap.codes import Code
from edgerm.coap.message import decode_message_untrusted
from edgerm.oscore import parse_request_option
from edgerm.transport.coap import open_coap_client
from edgerm.wire import pb
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


class _Recorded(NamedTuple):
    """One OSCORE-protected request the agent sent: what an attacker on the path sees."""
    kid: bytes
    piv: int
    option: bytes
    ciphertext: bytes


class _RecordingRelay(UdpRelay):
    """A relay that also keeps every protected POST the agent sent (an attacker on the path:
    it cannot read them, only replay them)."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(target)
        self.calls: list[_Recorded] = []

    async def _up(self) -> None:
        while True:
            data, self.client = await self.front.recvfrom(65536)
            try:
                msg = decode_message_untrusted(data)
                option = msg.opt(9)
                kid, piv = parse_request_option(option) if option is not None else (b"", 0)
            except Exception:
                option = None
            if option is not None and msg.code == Code.POST:
                rec = _Recorded(kid, piv, option, msg.payload)
                if rec not in self.calls:
                    self.calls.append(rec)
            if self.forwarding:
                await self.back.sendto(data, self.target)

    def recorded(self, since: int = 0) -> list[_Recorded]:
        return self.calls[since:]


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

        async def replay(rec: _Recorded) -> int:
            resp = await coap.post(master.coap, (), rec.ciphertext, options=[(9, rec.option)])
            return int(resp.code)

        async def wait_for(predicate: Callable[[], object], what: str) -> None:
            with trio.move_on_after(15):
                while not predicate():
                    await trio.sleep(0.05)
                return
            raise AssertionError(f"timed out waiting for {what}: {agent.log()}")

        try:
            agent.start()
            # Protected POSTs: heartbeats, after the first registration (which is plain).
            await wait_for(lambda: len(relay.recorded()) >= 10, "heartbeats")
            old_heartbeat = relay.recorded()[-1]
            agent.kill()
            mark = len(relay.calls)
            agent.start()
            await wait_for(lambda: len(relay.recorded(mark)) >= 2, "the restarted agent")
            # After a restart the first call is the re-registration (same identity: same kid;
            # it lists no tasks), past every seq used before (the Partial IV).
            rereg = relay.recorded(mark)[0]
            assert rereg.kid == old_heartbeat.kid
            assert rereg.piv > old_heartbeat.piv
            # (a) the old heartbeat, replayed after the restart.
            assert await replay(old_heartbeat) == Code.UNAUTHORIZED

            f = await open_framework(nursery, master.ws)
            sha = await f.upload(wasm_modules["spin"])
            await f.launch("spin", wasm_spec(sha, len(wasm_modules["spin"])))
            await f.wait_state("spin", TS.RUNNING)
            # (b) the re-registration listing no tasks, replayed while the task runs.
            assert await replay(rereg) == Code.UNAUTHORIZED
            await f.send(f.fw.kill("spin"))
            st = await f.wait_state("spin", TS.KILLED, TS.FAILED)
            assert st.state == TS.KILLED and st.reason == pb.KILL_REQUESTED, f.states("spin")
            assert TS.FAILED not in f.states("spin")
            # One identity throughout: the restarted agent was never refused into a new one.
            assert agent.log_path.read_text().count(" (new)") == 1, agent.log()
        finally:
            agent.stop()
            nursery.cancel_scope.cancel()
