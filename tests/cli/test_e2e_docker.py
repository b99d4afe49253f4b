"""`edgerm run --docker IMAGE -- cmd` end to end: a private Docker engine, the real master and a
Linux agent with the Docker executor."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from edgerm_agent.testing import BUSYBOX_IMAGE

from .conftest import (
    AGENT_TOKEN,
    FRAMEWORK_TOKEN,
    OPERATOR_TOKEN,
    wait_for_agent,
)


@pytest.fixture(scope="module")
def docker_cluster(tmp_path_factory: pytest.TempPathFactory, docker_engine: str
                   ) -> Iterator[dict[str, str]]:
    from edgerm_cli.cluster_processes import ClusterSettings, linux_agent_toml
    from edgerm_master.testing_io import MasterProcess, end_process

    base = tmp_path_factory.mktemp("docker-cluster")
    master = MasterProcess(str(base / "master"), agent_token=AGENT_TOKEN,
                           framework_token=FRAMEWORK_TOKEN, operator_token=OPERATOR_TOKEN,
                           heartbeat_ms=300).start()
    url = "ws://{}:{}".format(*master.ws)
    settings = ClusterSettings()
    settings.sensors = {}
    config = base / "agent.toml"
    config.write_text(linux_agent_toml("docker-e2e", url, AGENT_TOKEN, base / "work",
                                       ["docker"], settings))
    log = base / "agent.log"
    with open(log, "wb") as out:
        agent = subprocess.Popen([sys.executable, "-m", "edgerm_agent", str(config)],
                                 stdout=out, stderr=subprocess.STDOUT,
                                 env=dict(os.environ, DOCKER_HOST=docker_engine))
    try:
        trio.run(wait_for_agent, url, "docker-e2e")
        yield dict(os.environ, EDGERM_MASTER=url, EDGERM_TOKEN=FRAMEWORK_TOKEN,
                   EDGERM_HOME=str(base))
    finally:
        end_process(agent, timeout=15)
        master.stop()
        print(f"--- agent log ---\n{Path(log).read_text(errors='replace')[-3000:]}")


async def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process([sys.executable, "-m", "edgerm_cli", "run", *args], env=env,
                                  capture_stdout=True, capture_stderr=True, check=False)


async def test_docker_task_runs_and_its_output_is_printed(docker_cluster) -> None:
    done = await run(docker_cluster, "--docker", BUSYBOX_IMAGE, "--mem", "64", "--",
                     "sh", "-c", "echo hello from docker")
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert "hello from docker" in done.stdout.decode()
    assert "FINISHED" in err and "docker-e2e" in err


async def test_failing_docker_task_exits_1(docker_cluster) -> None:
    done = await run(docker_cluster, "--docker", BUSYBOX_IMAGE, "--mem", "64", "--",
                     "sh", "-c", "echo broken >&2; exit 7")
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "FAILED  (EXITED_NONZERO)" in err and "exit code 7" in err
    assert "broken" in done.stdout.decode()


async def test_a_docker_tasks_timeout_holds(docker_cluster) -> None:
    # It used to be dropped: the container ran its 30 s to FINISHED.
    start = trio.current_time()
    done = await run(docker_cluster, "--docker", BUSYBOX_IMAGE, "--timeout", "2", "--",
                     "sh", "-c", "echo started; sleep 30")
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "FAILED  (TIMEOUT)" in err and "timeout after 2 s" in err
    assert "started" in done.stdout.decode()
    assert trio.current_time() - start < 20, err
