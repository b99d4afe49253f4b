"""End to end over TLS: `python -m edgerm_master --dev` serves wss:// and https:// with its
generated CA, and each client — the Linux agent, the framework SDK, the `edgerm` CLI, an HTTP
client — works with that CA and refuses the master (one clear line) without it; the master
keeps serving the others throughout."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from edgerm.devca import ensure_dev_certificates
from edgerm.framework import Framework, FrameworkError
from edgerm_agent.testing import AgentProcess
from edgerm_cli.listing import StateError, fetch_state
from edgerm_master.testing_io import MasterProcess

OPERATOR = "operator-token"


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterProcess]:
    data = tmp_path_factory.mktemp("tls-master")
    m = MasterProcess(str(data / "m"), heartbeat_ms=300, extra=["--dev"]).start()
    try:
        yield m
    finally:
        m.stop()


def ca_of(m: MasterProcess) -> str:
    return str(Path(m.data_dir) / "tls" / "ca.pem")


def wss(m: MasterProcess) -> str:
    return f"wss://{m.ws[0]}:{m.ws[1]}"


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(ensure_dev_certificates(tmp_path_factory.mktemp("other")).ca_file)


async def agent_names(m: MasterProcess) -> set[str]:
    state = await fetch_state(wss(m), OPERATOR, ca_file=ca_of(m))
    return {a.name for a in state.agents if a.state == "active"}


async def test_the_agent_registers_over_wss_and_a_misconfigured_one_says_why(
        master: MasterProcess, tmp_path: Path, other_ca: str) -> None:
    good = AgentProcess(tmp_path / "good", f"{wss(master)}/agent", name="tls-good",
                        ca_file=ca_of(master)).start()
    wrong_ca = AgentProcess(tmp_path / "wrong", f"{wss(master)}/agent", name="tls-wrong",
                            ca_file=other_ca).start()
    plain = AgentProcess(tmp_path / "plain", f"ws://{master.ws[0]}:{master.ws[1]}/agent",
                         name="tls-plain").start()
    try:
        with trio.fail_after(30):
            while "tls-good" not in await agent_names(master):
                await trio.sleep(0.1)
            while ("not signed by" not in wrong_ca.log_path.read_text(errors="replace")
                   or "serves TLS: use wss://" not in plain.log_path.read_text(errors="replace")):
                await trio.sleep(0.1)
        assert await agent_names(master) >= {"tls-good"}
        assert not {"tls-wrong", "tls-plain"} & await agent_names(master)
        line = next(x for x in wrong_ca.log().splitlines() if "not signed by" in x)
        assert (f"TLS: the master at {wss(master)} presented a certificate not signed by "
                f"{other_ca} (set ca_file / --ca-file / EDGERM_CA_FILE to the CA that signed "
                "it); reconnecting in") in line
        assert "Traceback" not in wrong_ca.log() + plain.log()
    finally:
        for a in (good, wrong_ca, plain):
            a.stop()


async def test_the_sdk_subscribes_with_the_ca_and_is_refused_fast_without(
        master: MasterProcess, other_ca: str) -> None:
    async with Framework.connect(wss(master), name="tls-fw", token="framework-token",
                                 ca_file=ca_of(master)) as fw:
        assert fw.framework_id
        started = trio.current_time()
        with pytest.raises(FrameworkError) as caught:
            async with Framework.connect(wss(master), name="tls-fw2", token="framework-token",
                                         ca_file=other_ca, connect_timeout_s=20):
                pass
        assert trio.current_time() - started < 10     # no waiting out the connect timeout
        assert str(caught.value) == (
            f"cannot subscribe at {wss(master)}/framework: TLS: the master at {wss(master)} "
            f"presented a certificate not signed by {other_ca} (set ca_file / --ca-file / "
            "EDGERM_CA_FILE to the CA that signed it)")
        await fw.revive()                          # the first framework is still served


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EDGERM_")}
    environ.update(env, EDGERM_HOME="/nonexistent")
    return subprocess.run([sys.executable, "-m", "edgerm_cli", *args], capture_output=True,
                          text=True, timeout=60, env=environ)


def test_the_cli_verifies_the_master(master: MasterProcess, other_ca: str) -> None:
    ok = cli("frameworks", "--master", wss(master), "--operator-token", OPERATOR,
             "--ca-file", ca_of(master))
    assert ok.returncode == 0, ok.stderr
    assert cli("agents", "--master", wss(master), "--operator-token", OPERATOR,
               EDGERM_CA_FILE=ca_of(master)).returncode == 0
    refused = cli("agents", "--master", wss(master), "--operator-token", OPERATOR,
                  "--ca-file", other_ca)
    assert refused.returncode == 4
    assert refused.stderr == (f"edgerm: TLS: the master at {wss(master)} presented a "
                              f"certificate not signed by {other_ca} (set ca_file / --ca-file "
                              "/ EDGERM_CA_FILE to the CA that signed it)\n")
    plain = cli("tasks", "--master", f"ws://{master.ws[0]}:{master.ws[1]}",
                "--operator-token", OPERATOR)
    assert plain.returncode == 4
    assert plain.stderr == (f"edgerm: TLS: the master at ws://{master.ws[0]}:{master.ws[1]} "
                            f"serves TLS: use {wss(master)} (and ca_file / --ca-file for its "
                            "CA)\n")
    run = cli("run", "--master", wss(master), "--token", "framework-token", "--ca-file",
              other_ca, "--docker", "busybox", "--", "true")
    assert run.returncode != 0 and "not signed by" in run.stderr, run.stderr
    assert run.stderr.count("\n") == 1


def test_https_with_the_ca_and_refused_without(master: MasterProcess) -> None:
    assert master.http is not None
    base = f"https://{master.http[0]}:{master.http[1]}"
    trusting = ssl.create_default_context(cafile=ca_of(master))
    with httpx.Client(verify=trusting, timeout=10) as client:
        assert client.get(f"{base}/metrics").status_code == 200
        agents = client.get(f"{base}/api/v1/agents",
                            headers={"Authorization": f"Bearer {OPERATOR}"})
        assert agents.status_code == 200 and "agents" in agents.json()
    with httpx.Client(timeout=10) as client, pytest.raises(httpx.ConnectError,
                                                           match="CERTIFICATE_VERIFY_FAILED"):
        client.get(f"{base}/metrics")
    with httpx.Client(timeout=10) as client, pytest.raises(httpx.HTTPError):
        client.get(f"http://{master.http[0]}:{master.http[1]}/metrics")
    with httpx.Client(verify=trusting, timeout=10) as client:
        assert client.get(f"{base}/metrics").status_code == 200   # still serving


def test_failed_handshakes_leave_the_master_serving(master: MasterProcess) -> None:
    """After all the refused handshakes above (and a burst more), a good client is served at
    once and the master has logged no error."""
    async def burst() -> None:
        async def bad() -> None:
            try:
                await fetch_state(f"ws://{master.ws[0]}:{master.ws[1]}", OPERATOR, 3.0)
            except StateError:
                pass
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(bad)
        started = time.monotonic()
        await fetch_state(wss(master), OPERATOR, ca_file=ca_of(master))
        assert time.monotonic() - started < 5
    trio.run(burst)
    log = Path(master.log_path).read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


async def test_clients_follow_the_leader_among_wss_masters(tmp_path: Path) -> None:
    """Several masters over TLS (docs/ha.md): a standby refuses with NOT_LEADER naming the
    leader's wss:// URL; the agent, the SDK and the CLI, given both wss:// URLs and one CA,
    end up at the leader."""
    pki = ensure_dev_certificates(tmp_path / "pki")
    tls = ["--tls-cert", str(pki.cert_file), "--tls-key", str(pki.key_file)]
    leader = MasterProcess(str(tmp_path / "leader"), heartbeat_ms=300, extra=tls).start()
    standby = MasterProcess(str(tmp_path / "standby"), module="edgerm_master.testing_standby",
                            extra=[*tls, "--leader-ws", wss(leader)]).start()
    ca = str(pki.ca_file)
    agent = AgentProcess(tmp_path / "agent", f"{wss(standby)}/agent", name="ha-tls",
                         urls=[f"{wss(leader)}/agent"], ca_file=ca).start()
    try:
        with trio.fail_after(30):
            while True:
                state = await fetch_state(wss(leader), OPERATOR, ca_file=ca)
                if any(a.name == "ha-tls" and a.state == "active" for a in state.agents):
                    break
                await trio.sleep(0.1)
        async with Framework.connect([wss(standby), wss(leader)], name="ha-tls-fw",
                                     token="framework-token", ca_file=ca) as fw:
            assert fw.url == f"{wss(leader)}/framework"
        listing = await trio.to_thread.run_sync(lambda: cli(
            "agents", "--master", f"{wss(standby)},{wss(leader)}", "--operator-token",
            OPERATOR, "--ca-file", ca))
        assert listing.returncode == 0 and "ha-tls" in listing.stdout, listing.stderr
        assert "Traceback" not in agent.log()
    finally:
        agent.stop()
        standby.stop()
        leader.stop()
