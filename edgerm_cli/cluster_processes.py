"""The local cluster's processes: what they are told, how they are started, watched and stopped.

`start_cluster` starts, as supervised children in the caller's nursery, the master
(`python -m edgerm_master`, with development tokens generated once and kept in
`<data dir>/tokens.json`), a Linux agent over WebSocket and, when the interpreter is there, the
MicroPython agent over CoAP, and waits until the agents registered. The command around it is
`edgerm_cli.cluster`; the demo framework `edgerm_cli.cluster_demo`.

TLS: the master serves wss:// and https:// with a development CA and certificate made (or
reused while still valid) under `<data dir>/tls/` (edgerm.devca); the Linux agent, the demo
framework, the CLI (through `cluster.json`) get `<data dir>/tls/ca.pem` as their CA file.

Secrets: no token is ever on a child's command line (where `ps` shows it to every user). The
master reads its tokens from `<data dir>/master.toml`, the agents from their configuration files;
every file holding a token is created mode 0600.

Resource handling: each child lives as long as its `supervise` task; when that is cancelled the
child gets SIGTERM, then SIGKILL after `STOP_GRACE_S`. Child logs go to `<data dir>/logs/`.

Error handling: a child that exits on its own raises `ChildDied` with its name, exit code and the
tail of its log; agents that do not register in time raise `AgentsNotReady`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import trio

from edgerm.devca import DevCertificates, ensure_dev_certificates
from edgerm_cli.listing import StateError, fetch_state
from edgerm_master.config import MasterConfig, least_unreachable_after_missed

# The repository root, when running from a clone (the demo needs examples/ and micro_agent/).
REPO = Path(__file__).resolve().parents[1]

# A child gets this long to stop after SIGTERM before SIGKILL: the master commits its store and
# closes its sockets in well under a second.
STOP_GRACE_S = 5.0

# The master binds, recovers its store and prints its ready line within a second or two; on a
# busy 2-core machine give it more.
MASTER_READY_TIMEOUT_S = 30.0

# An agent registers within one heartbeat of starting; starting the Python interpreter and
# importing the agent takes the rest.
AGENT_READY_TIMEOUT_S = 30.0

# The state resource is polled at this period while waiting for agents.
POLL_S = 0.2


# ---------------------------------------------------------------------------------------------
# The embedded default configuration


@dataclass
class ClusterSettings:
    """Everything the local cluster can be told; the defaults need no file."""

    data_dir: Path = Path(".edgerm")
    host: str = "127.0.0.1"
    ws_port: int = 5690
    coap_port: int = 5683
    http_port: int | None = None  # the dashboard and HTTP API; None: the WebSocket port + 1
    heartbeat_ms: int = 1000
    linux_agent: bool = True
    docker: str = "auto"          # auto: use it when an engine answers; on; off
    micropython: str = "auto"     # auto: when `micropython` and micro_agent/ exist; on; off
    # The Linux agent is also a gateway (docs/gateway.md) on this CoAP port, and the MicroPython
    # agent talks to it instead of the master.
    gateway: bool = False
    gateway_port: int = 5684
    demo: bool = True
    keep_running: bool = False
    samples: int = 5              # readings the demo sampler takes
    period_ms: int = 300          # between readings
    # Simulated sensors of the Linux agent: name -> (unit, mean, amplitude, period in s).
    sensors: dict[str, tuple[str, float, float, float]] = field(default_factory=lambda: {
        "temp": ("Cel", 21.0, 1.5, 60.0),
        "humidity": ("%RH", 45.0, 5.0, 90.0),
    })


@dataclass(frozen=True)
class Tokens:
    agent: str
    framework: str
    operator: str


def load_or_create_tokens(data_dir: Path) -> Tokens:
    """The cluster's development tokens: read from `tokens.json`, generated on first use (so a
    restarted cluster keeps its agents and frameworks)."""
    path = data_dir / "tokens.json"
    try:
        raw = json.loads(path.read_text())
        return Tokens(raw["agent"], raw["framework"], raw["operator"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    tokens = Tokens(*(f"dev-{kind}-{secrets.token_hex(12)}"
                      for kind in ("agent", "framework", "operator")))
    write_private(path, json.dumps(tokens.__dict__, indent=2))
    return tokens


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (it holds tokens), whatever mode it had before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def master_toml(tokens: Tokens, tls: DevCertificates | None = None) -> str:
    """The master's token settings (see docs/master.md), and its `[tls]` certificate and key
    when given, read with `--config`; the framework token is principal "default" (a dotted
    key: no table, so more keys may follow)."""
    text = "".join(f"{key} = {json.dumps(value)}\n" for key, value in (
        ("agent_tokens", [tokens.agent]), ("frameworks.principals.default", tokens.framework),
        ("operator_tokens", [tokens.operator])))
    if tls is not None:
        text += (f"\n[tls]\ncert = {json.dumps(str(tls.cert_file))}\n"
                 f"key = {json.dumps(str(tls.key_file))}\n")
    return text


def linux_agent_toml(name: str, master_ws: str, token: str, work_dir: Path,
                     executors: Sequence[str], settings: ClusterSettings,
                     uplink: str | None = None, ca_file: Path | None = None) -> str:
    """The Linux agent's configuration (see edgerm_agent/config.py); with `uplink` (the
    master's coap:// URL) also a gateway (docs/gateway.md); `ca_file`: the CA of a wss://
    master."""
    lines = [
        f"name = {json.dumps(name)}",
        f"work_dir = {json.dumps(str(work_dir))}",
        "",
        "[master]",
        f"url = {json.dumps(master_ws + '/agent')}",
        f"token = {json.dumps(token)}",
        *([f"ca_file = {json.dumps(str(ca_file))}"] if ca_file is not None else []),
        "",
        "[resources]",
        "cpus = 2",
        "mem_mb = 1024",
        "disk_mb = 1024",
        "",
        "[executors]",
        f"enabled = {json.dumps(list(executors))}",
        "",
        "[attributes]",
        'zone = "local"',
    ]
    for dev, (unit, mean, amplitude, period) in settings.sensors.items():
        lines += ["", "[[devices]]", f"name = {json.dumps(dev)}", 'kind = "sensor"',
                  f"unit = {json.dumps(unit)}", "shares = 4",
                  f"sine = {{ mean = {mean}, amplitude = {amplitude}, period_s = {period} }}"]
    if uplink is not None:
        lines += ["", "[gateway]", f"host = {json.dumps(settings.host)}",
                  f"port = {settings.gateway_port}", f"uplink = {json.dumps(uplink)}"]
    return "\n".join(lines) + "\n"


def micro_agent_config(name: str, master_coap: str, token: str, work_dir: Path,
                       heartbeat_ms: int) -> dict[str, Any]:
    """The MicroPython agent's config.json (see micro_agent/agent.py)."""
    return {
        "name": name, "master": master_coap, "token": token, "heartbeat_ms": heartbeat_ms,
        "state": str(work_dir / "state.cbor"), "cache": str(work_dir / "cache"),
        "mem_mb": 0.0625, "log_level": 1,
        "sensors": [{"name": "temp", "unit": "Cel", "sim": [20.5, 21.0, 21.5, 21.0]}],
    }


# ---------------------------------------------------------------------------------------------
# Child processes


class ChildDied(Exception):
    """A supervised child exited on its own."""


@dataclass
class Child:
    """One supervised process; `log` receives its stderr (and stdout after readiness)."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    proc: trio.Process | None = None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


async def _stop(child: Child) -> None:
    """SIGTERM, then SIGKILL after STOP_GRACE_S. Shielded: runs while the cluster is cancelled."""
    proc = child.proc
    if proc is None or proc.returncode is not None:
        return
    with trio.CancelScope(shield=True):
        proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(STOP_GRACE_S):
            await proc.wait()
            return
        proc.kill()
        await proc.wait()


async def supervise(child: Child, ready_line: bool = False,
                    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
    """Run `child` until cancelled; raises ChildDied if it exits by itself.

    With `ready_line`, the child's stdout is read until a JSON line `{"event": "ready", ...}`
    and that object is passed to `task_status.started`; otherwise started() comes at once."""
    child.log.parent.mkdir(parents=True, exist_ok=True)
    with open(child.log, "ab") as log:
        child.proc = await trio.lowlevel.open_process(
            child.argv, stdout=subprocess.PIPE if ready_line else log, stderr=log,
            env=child.env, cwd=child.cwd, start_new_session=True)
    proc = child.proc
    try:
        async with trio.open_nursery() as nursery:
            if ready_line:
                assert proc.stdout is not None
                ready = await _read_ready(child, proc.stdout)
                nursery.start_soon(_drain, proc.stdout, child.log)
                task_status.started(ready)
            else:
                task_status.started(None)
            code = await proc.wait()
            raise ChildDied(f"{child.name} exited with code {code}; the end of {child.log}:\n"
                            f"{child.log_tail()}")
    finally:
        await _stop(child)


async def _read_ready(child: Child, stdout: trio.abc.ReceiveStream) -> dict[str, Any]:
    buf = b""
    with trio.move_on_after(MASTER_READY_TIMEOUT_S):
        while True:
            chunk = await stdout.receive_some(4096)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("event") == "ready":
                    return event
    raise ChildDied(f"{child.name} did not become ready; the end of {child.log}:\n"
                    f"{child.log_tail()}")


async def _drain(stdout: trio.abc.ReceiveStream, log: Path) -> None:
    # Keep reading so the child never blocks on a full pipe.
    with open(log, "ab") as f:
        while chunk := await stdout.receive_some(4096):
            f.write(chunk)
            f.flush()


# ---------------------------------------------------------------------------------------------
# The cluster


@dataclass
class RunningCluster:
    master_ws: str
    master_coap: str
    tokens: Tokens
    agents: list[str]
    data_dir: Path
    dashboard: str = ""    # the master's dashboard URL ("" when its HTTP server is off)
    ca_file: str | None = None   # the development CA clients of wss:// and https:// trust


def docker_available() -> bool:
    """True when a Docker engine answers (DOCKER_HOST or the default socket)."""
    try:
        import docker
        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "no engine here"
        return False


def micropython_available() -> bool:
    return shutil.which("micropython") is not None and (REPO / "micro_agent" / "agent.py").exists()


class AgentsNotReady(Exception):
    """Some agents did not register in time; `missing` names them."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        super().__init__(f"not registered: {', '.join(self.missing)}")


async def wait_for_agents(master: str, operator_token: str, names: Sequence[str],
                          timeout_s: float = AGENT_READY_TIMEOUT_S,
                          ca_file: str | None = None) -> None:
    """Until every agent in `names` is active at the master; AgentsNotReady after
    `timeout_s`."""
    missing = set(names)
    with trio.move_on_after(timeout_s):
        while True:
            try:
                state = await fetch_state(master, operator_token, ca_file=ca_file)
                missing = set(names) - {a.name for a in state.agents if a.state == "active"}
                if not missing:
                    return
            except StateError:
                pass
            await trio.sleep(POLL_S)
    raise AgentsNotReady(sorted(missing))


class Console:
    """What the cluster tells its user: one timestamped line per step."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def say(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"{stamp}  {text}", file=self.out, flush=True)


async def start_cluster(settings: ClusterSettings, nursery: trio.Nursery,
                        console: Console) -> RunningCluster:
    data_dir = settings.data_dir.resolve()
    logs = data_dir / "logs"
    tokens = load_or_create_tokens(data_dir)
    master_config = data_dir / "master.toml"
    tls = await trio.to_thread.run_sync(ensure_dev_certificates, data_dir / "tls",
                                        [settings.host])
    ca_file = str(tls.ca_file)
    write_private(master_config, master_toml(tokens, tls))
    master = Child("master", [
        sys.executable, "-m", "edgerm_master", "--config", str(master_config),
        "--data-dir", str(data_dir / "master"),
        "--host", settings.host, "--ws-port", str(settings.ws_port),
        "--coap-port", str(settings.coap_port), "--heartbeat-ms", str(settings.heartbeat_ms),
        "--unreachable-after-missed", str(_unreachable_after_missed(settings.heartbeat_ms)),
        *(["--http-listen", f"{settings.host}:{settings.http_port}"]
          if settings.http_port is not None else [])],
        logs / "master.log")
    ready = await nursery.start(supervise, master, True)
    master_ws, master_coap = f"wss://{ready['ws']}", str(ready["coap"])
    dashboard = f"https://{ready['http']}/" if ready.get("http") else ""
    console.say(f"master up: WebSocket {master_ws}, CoAP {master_coap}"
                + (f", dashboard {dashboard}" if dashboard else "")
                + f"; TLS with the development CA {shown_path(tls.ca_file)}")
    agents: list[str] = []
    children: dict[str, Child] = {}

    if settings.linux_agent:
        executors = ["wasm"]
        use_docker = settings.docker == "on" or (
            settings.docker == "auto" and await trio.to_thread.run_sync(docker_available))
        if use_docker:
            executors.append("docker")
        work = data_dir / "linux-agent"
        work.mkdir(parents=True, exist_ok=True)
        config = work / "agent.toml"
        uplink = f"coap://{master_coap}" if settings.gateway else None
        write_private(config, linux_agent_toml("linux-1", master_ws, tokens.agent, work,
                                               executors, settings, uplink, tls.ca_file))
        child = children["linux-1"] = Child("linux agent", [
            sys.executable, "-m", "edgerm_agent", str(config)], logs / "linux-agent.log")
        await nursery.start(supervise, child)
        agents.append("linux-1")
        console.say(f"Linux agent linux-1 starting (executors: {', '.join(executors)}; "
                    f"sensors: {', '.join(settings.sensors)})"
                    + ("" if use_docker else "; no Docker engine, so no Docker executor")
                    + (f"; gateway for the MicroPython agent on {settings.host}:"
                       f"{settings.gateway_port}" if settings.gateway else ""))

    use_mp = settings.micropython == "on" or (settings.micropython == "auto"
                                              and micropython_available())
    if use_mp:
        work = data_dir / "micro-agent"
        work.mkdir(parents=True, exist_ok=True)
        config = work / "config.json"
        via = f"{settings.host}:{settings.gateway_port}" if settings.gateway else master_coap
        write_private(config, json.dumps(micro_agent_config(
            "micro-1", via, tokens.agent, work, settings.heartbeat_ms)))
        # ".frozen" keeps the interpreter's frozen modules (asyncio) importable.
        env = dict(os.environ, MICROPYPATH=f"{REPO / 'micro_agent'}:.frozen")
        micropython = shutil.which("micropython") or "micropython"
        child = children["micro-1"] = Child("MicroPython agent", [
            micropython, "-X", "heapsize=256k", str(REPO / "micro_agent" / "main.py"),
            str(config)], logs / "micro-agent.log", env=env, cwd=work)
        await nursery.start(supervise, child)
        agents.append("micro-1")
        console.say("MicroPython agent micro-1 starting (CoAP"
                    + (", behind the gateway" if settings.gateway else "") + "; sensor: temp)")
    elif settings.micropython == "auto":
        console.say("no MicroPython agent (needs `micropython` on PATH and micro_agent/)")

    try:
        await wait_for_agents(master_ws, tokens.operator, agents, ca_file=ca_file)
    except AgentsNotReady as e:
        for name in e.missing:
            child = children[name]
            console.say(f"{name} did not register within {AGENT_READY_TIMEOUT_S:g} s; the end "
                        f"of {child.log}:\n{child.log_tail()}")
        raise
    console.say(f"agents registered: {', '.join(agents) or 'none'}")
    return RunningCluster(master_ws, master_coap, tokens, agents, data_dir, dashboard, ca_file)


def write_state_file(cluster: RunningCluster) -> Path:
    path = cluster.data_dir / "cluster.json"
    body = {"master": cluster.master_ws, "coap": cluster.master_coap,
            "framework_token": cluster.tokens.framework,
            "operator_token": cluster.tokens.operator, "agent_token": cluster.tokens.agent,
            "pid": os.getpid(), "logs": str(cluster.data_dir / "logs"),
            "dashboard": cluster.dashboard, "ca_file": cluster.ca_file}
    write_private(path, json.dumps(body, indent=2))
    return path


def shown_path(path: Path) -> str:
    """`path` as the user should type it: relative when under the current directory."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _unreachable_after_missed(heartbeat_ms: int) -> int:
    """Missed heartbeats before UNREACHABLE for the cluster's short heartbeat: the master's
    default (12) unless that window is too short for an agent's call that gets no answer
    (edgerm_master.config.liveness_problem, which would warn at every start)."""
    return max(MasterConfig.unreachable_after_missed, least_unreachable_after_missed(
        heartbeat_ms / 1000, MasterConfig.jitter_fraction))
