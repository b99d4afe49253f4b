"""End to end with a real Docker engine (started by the session fixture): container tasks
finish, fail with their logs, hit their memory limit or time limit, are killed; a Docker error
fails only the task; the agent touches only containers it labelled."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import trio

from edgerm.wire import pb
from edgerm_agent.checkpoint import Checkpoint
from edgerm_agent.executors.docker import LABEL_AGENT
from edgerm_agent.testing import AgentProcess
from edgerm_master.testing import docker_spec
from edgerm_master.testing_io import MasterProcess, open_framework

from .conftest import IMAGE

TS = pb.TaskState


@pytest.fixture
def dagent(tmp_path: Path, master: MasterProcess, docker_engine: str) -> Iterator[AgentProcess]:
    host, port = master.ws
    a = AgentProcess(tmp_path / "agent", f"ws://{host}:{port}/agent",
                     executors=("docker", "wasm"), docker_host=docker_engine).start()
    yield a
    a.stop()


async def test_docker_tasks_finish_fail_oom_and_kill(dagent: AgentProcess, master: MasterProcess,
                                                     docker_engine: str) -> None:
    client = docker.DockerClient(base_url=docker_engine)
    # A container that is not ours must survive everything the agent does.
    stranger = client.containers.create(IMAGE, ["true"], name="not-edgerm")
    try:
        async with trio.open_nursery() as nursery:
            f = await open_framework(nursery, master.ws)
            await f.launch("ok", docker_spec(IMAGE, "sh", "-c", "echo done; exit 0"))
            await f.launch("bad", docker_spec(IMAGE, "sh", "-c", "echo oops >&2; exit 3"))
            await f.launch("oom", docker_spec(IMAGE, "tail", "/dev/zero", mem_mb=16))
            # 137 as an OOM kill's, but no OOM: the engine's event log has none for it.
            await f.launch("137", docker_spec(IMAGE, "sh", "-c", "exit 137", mem_mb=16))
            await f.launch("sleepy", docker_spec(IMAGE, "sleep", "600"))
            await f.launch("slow", docker_spec(IMAGE, "sh", "-c", "echo started; sleep 600",
                                               timeout_s=1))
            await f.launch("noimage", docker_spec("edgerm-test/absent:1", "true"))
            st = await f.wait_state("ok", TS.FINISHED, TS.FAILED, TS.ERROR)
            assert st.state == TS.FINISHED and "done" in st.message, (st, dagent.log())
            st = await f.wait_state("bad", TS.FAILED, TS.FINISHED)
            assert (st.reason, st.exit_code) == (pb.EXITED_NONZERO, 3) and "oops" in st.message
            st = await f.wait_state("oom", TS.FAILED, TS.FINISHED)
            assert st.reason == pb.MEMORY_LIMIT, st
            st = await f.wait_state("137", TS.FAILED, TS.FINISHED)
            assert (st.reason, st.exit_code) == (pb.EXITED_NONZERO, 137), st
            st = await f.wait_state("noimage", TS.ERROR, TS.FAILED)
            assert st.reason == pb.LAUNCH_FAILED and "absent" in st.message
            # The time limit holds as for a WASM task: killed, FAILED TIMEOUT, with its logs.
            st = await f.wait_state("slow", TS.FAILED, TS.FINISHED, TS.KILLED)
            assert st.reason == pb.TIMEOUT, (st, dagent.log())
            assert "started" in st.message and "timeout after 1 s" in st.message, st
            await f.wait_state("sleepy", TS.RUNNING)
            await f.send(f.fw.kill("sleepy"))
            st = await f.wait_state("sleepy", TS.KILLED)
            assert st.reason == pb.KILL_REQUESTED
            nursery.cancel_scope.cancel()
        # Finished containers were removed; the stranger was not touched.
        with trio.fail_after(10):
            # The low-level list: containers.list() inspects each one it found and fails on
            # one the agent removes in between.
            while client.api.containers(all=True, filters={"label": LABEL_AGENT}):
                await trio.sleep(0.1)
        assert client.containers.get("not-edgerm").status == "created"
    finally:
        stranger.remove(force=True)
        client.close()


async def test_agent_sigkill_reattaches_to_running_containers(
        tmp_path: Path, master: MasterProcess, docker_engine: str,
        wasm_modules: dict[str, bytes]) -> None:
    host, port = master.ws
    agent = AgentProcess(tmp_path / "agent", f"ws://{host}:{port}/agent",
                         executors=("docker", "wasm"), docker_host=docker_engine).start()
    try:
        async with trio.open_nursery() as nursery:
            f = await open_framework(nursery, master.ws)
            sha = await f.upload(wasm_modules["spin"])
            await f.launch("long", docker_spec(IMAGE, "sleep", "600"))
            await f.launch("short", docker_spec(IMAGE, "sh", "-c", "sleep 2; exit 5"))
            from edgerm_master.testing import wasm_spec
            await f.launch("wspin", wasm_spec(sha, len(wasm_modules["spin"])))
            for t in ("long", "short", "wspin"):
                await f.wait_state(t, TS.RUNNING)
            agent.kill()  # SIGKILL: no chance to clean up
            await trio.sleep(2.5)  # "short" exits while the agent is down
            agent.start()
            st = await f.wait_state("short", TS.FAILED, TS.FINISHED)
            assert (st.reason, st.exit_code) == (pb.EXITED_NONZERO, 5), agent.log()
            st = await f.wait_state("wspin", TS.FAILED, TS.FINISHED)
            assert st.reason == pb.AGENT_RESTARTED
            # "long" was re-adopted: still RUNNING, never relaunched, and a kill reaches it.
            assert f.states("long").count(TS.RUNNING) >= 1
            assert TS.STARTING not in f.states("long")[f.states("long").index(TS.RUNNING):]
            await f.send(f.fw.kill("long"))
            st = await f.wait_state("long", TS.KILLED)
            nursery.cancel_scope.cancel()
    finally:
        agent.stop()


_STARTUP_PROBE = """
import sys, trio
from edgerm_agent.executors.docker import DockerExecutor

async def main():
    ex = DockerExecutor(sys.argv[2], base_url=sys.argv[1])
    assert await ex.ping()
    removed = await ex.remove_orphans({7})
    print(sorted(removed), "docker" in sys.modules, "requests" in sys.modules)

trio.run(main)
"""


def test_startup_talks_to_the_engine_without_the_sdk(docker_engine: str) -> None:
    """Ping and orphan removal work on the engine socket alone: the SDK (and requests) stay
    out of an agent that has not run a Docker task yet. Only this agent's containers of tasks
    that are not live are removed."""
    import subprocess
    import sys

    client = docker.DockerClient(base_url=docker_engine)
    made = []
    try:
        for name, key, task in (("orph-ours-3", "k-ours", "3"), ("orph-ours-7", "k-ours", "7"),
                                ("orph-theirs-3", "k-theirs", "3")):
            made.append(client.containers.create(IMAGE, ["true"], name=name, labels={
                LABEL_AGENT: key, "edgerm.task": task}))
        out = subprocess.run([sys.executable, "-c", _STARTUP_PROBE, docker_engine, "k-ours"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["[3]", "False", "False"], out.stdout
        left = {c.name for c in client.containers.list(all=True, filters={"name": "orph-"})}
        assert left == {"orph-ours-7", "orph-theirs-3"}
    finally:
        for c in made:
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass
        client.close()


async def test_engine_api_reports_a_missing_engine(tmp_path: Path) -> None:
    from edgerm_agent.executors.docker import DockerExecutor

    ex = DockerExecutor("k", base_url=f"unix://{tmp_path}/no.sock")
    assert ex.engine is not None
    assert not await ex.ping()


def _dockerd_pid(docker_host: str) -> int:
    run_dir = Path(docker_host.removeprefix("unix://")).parent
    return int((run_dir / "dockerd.pid").read_text().strip())


def _kill_reason_in_checkpoint(work_dir: Path, task: int) -> int:
    snap = Checkpoint(work_dir).load() or {}
    for t in snap.get("tasks", []):
        if t.get("task") == task:
            return int(t.get("kill", 0))
    return 0


async def test_kill_applied_just_before_an_agent_crash_ends_killed(
        tmp_path: Path, master: MasterProcess, docker_engine: str) -> None:
    """The kill command is applied (and checkpointed), the engine is frozen so the container
    cannot be killed yet, the agent is SIGKILLed. After the restart the task must end KILLED
    KILL_REQUESTED, whether or not the engine carried out the first kill request when it
    woke up (exit 137) — never FAILED, never left running."""
    host, port = master.ws
    agent = AgentProcess(tmp_path / "agent", f"ws://{host}:{port}/agent",
                         executors=("docker",), docker_host=docker_engine).start()
    dockerd = _dockerd_pid(docker_engine)
    try:
        async with trio.open_nursery() as nursery:
            f = await open_framework(nursery, master.ws)
            await f.launch("long", docker_spec(IMAGE, "sleep", "600"))
            await f.wait_state("long", TS.RUNNING)
            os.kill(dockerd, signal.SIGSTOP)
            try:
                await f.send(f.fw.kill("long"))
                with trio.fail_after(15):
                    while not _kill_reason_in_checkpoint(agent.work_dir, 1):
                        await trio.sleep(0.005)
                agent.kill()
            finally:
                os.kill(dockerd, signal.SIGCONT)
            assert TS.KILLED not in f.states("long")  # the crash came first
            agent.start()
            st = await f.wait_state("long", TS.KILLED, TS.FAILED, TS.FINISHED, timeout=30)
            assert (st.state, st.reason) == (TS.KILLED, pb.KILL_REQUESTED), (st, agent.log())
            nursery.cancel_scope.cancel()
        client = docker.DockerClient(base_url=docker_engine)
        try:
            with trio.fail_after(10):
                while client.api.containers(all=True, filters={"label": LABEL_AGENT}):
                    await trio.sleep(0.1)
        finally:
            client.close()
    finally:
        agent.stop()


def test_a_readopted_container_keeps_its_time_already_run() -> None:
    from edgerm_agent.executors.docker import _ran_for_s

    ten_s_ago = time.time() - 10
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ten_s_ago))
    frac = f"{ten_s_ago % 1:.9f}"[2:]
    ran = _ran_for_s({"State": {"Running": True, "StartedAt": f"{stamp}.{frac}Z"}})
    assert 9.9 < ran < 12
    # Not started yet (a fresh container's attributes), or unreadable: no time run.
    assert _ran_for_s({"State": {"Running": False, "StartedAt": "0001-01-01T00:00:00Z"}}) == 0
    assert _ran_for_s({"State": {"Running": True, "StartedAt": "garbage"}}) == 0
    assert _ran_for_s({}) == 0
