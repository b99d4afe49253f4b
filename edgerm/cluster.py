"""A local EdgeRM cluster in one command: `python -m edgerm.cluster`.

It starts, as supervised child processes in one Trio nursery:
- the master (`python -m edgerm_master`), its SQLite store and modules under the data directory
  (`./.edgerm` by default), with development tokens generated once and kept in
  `<data dir>/tokens.json`;
- a Linux agent (`python -m edgerm_agent`) over WebSocket with the WASM executor (and Docker when
  a Docker engine answers) and two simulated sensors, `temp` and `humidity`;
- the MicroPython agent (`micropython micro_agent/main.py`) over CoAP, when both the interpreter
  and `micro_agent/` are there;

then a demo framework: it builds the example WASM tasks (`examples/wasm/`), uploads the sampler,
launches it on an agent that offers a `temp` sensor, prints each state transition and each
reading as it arrives, and the final state. With `--keep-running` the cluster stays up after the
demo until Ctrl-C; `edgerm agents|tasks|...` and `edgerm run` find it through
`<data dir>/cluster.json` (the CLI reads `$EDGERM_HOME/cluster.json`, else `./.edgerm/`, else
`~/.edgerm/`).

Secrets: no token is ever on a child's command line (where `ps` shows it to every user). The
master reads its tokens from `<data dir>/master.toml`, the agents from their configuration files;
every file holding a token is created mode 0600.

Resource handling: every child runs in the nursery; when the cluster stops (Ctrl-C, SIGTERM, the
demo done, or one child dying) each child gets SIGTERM, then SIGKILL after
`STOP_GRACE_S`, and the state file is removed. Child logs go to `<data dir>/logs/`.

Error handling: a child that exits on its own stops the cluster with its name, exit code and
the tail of its log. A missing optional part (Docker, MicroPython, a compiler for the demo) is
reported and skipped, never fatal.
"""

from __future__ import annotations

import argparse
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

from edgerm.cli import StateError, fetch_state, format_output
from edgerm.framework import (
    MICROPYTHON,
    WASM,
    ConnectionLost,
    Constraints,
    Framework,
    FrameworkError,
    OffersEvent,
    OutputEvent,
    UpdateEvent,
    micropython_task,
    reason_name,
    state_name,
    wasm_task,
)
from edgerm.wire import pb

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
    heartbeat_ms: int = 1000
    linux_agent: bool = True
    docker: str = "auto"          # auto: use it when an engine answers; on; off
    micropython: str = "auto"     # auto: when `micropython` and micro_agent/ exist; on; off
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


def master_toml(tokens: Tokens) -> str:
    """The master's token settings (see docs/master.md), read with `--config`."""
    return "".join(f"{key} = [{json.dumps(value)}]\n" for key, value in (
        ("agent_tokens", tokens.agent), ("framework_tokens", tokens.framework),
        ("operator_tokens", tokens.operator)))


def linux_agent_toml(name: str, master_ws: str, token: str, work_dir: Path,
                     executors: Sequence[str], settings: ClusterSettings) -> str:
    """The Linux agent's configuration (see edgerm_agent/config.py)."""
    lines = [
        f"name = {json.dumps(name)}",
        f"work_dir = {json.dumps(str(work_dir))}",
        "",
        "[master]",
        f"url = {json.dumps(master_ws + '/agent')}",
        f"token = {json.dumps(token)}",
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
                          timeout_s: float = AGENT_READY_TIMEOUT_S) -> None:
    """Until every agent in `names` is active at the master; AgentsNotReady after
    `timeout_s`."""
    missing = set(names)
    with trio.move_on_after(timeout_s):
        while True:
            try:
                state = await fetch_state(master, operator_token)
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
    write_private(master_config, master_toml(tokens))
    master = Child("master", [
        sys.executable, "-m", "edgerm_master", "--config", str(master_config),
        "--data-dir", str(data_dir / "master"),
        "--host", settings.host, "--ws-port", str(settings.ws_port),
        "--coap-port", str(settings.coap_port), "--heartbeat-ms", str(settings.heartbeat_ms)],
        logs / "master.log")
    ready = await nursery.start(supervise, master, True)
    master_ws, master_coap = f"ws://{ready['ws']}", str(ready["coap"])
    console.say(f"master up: WebSocket {master_ws}, CoAP {master_coap}")
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
        write_private(config, linux_agent_toml("linux-1", master_ws, tokens.agent, work,
                                               executors, settings))
        child = children["linux-1"] = Child("linux agent", [
            sys.executable, "-m", "edgerm_agent", str(config)], logs / "linux-agent.log")
        await nursery.start(supervise, child)
        agents.append("linux-1")
        console.say(f"Linux agent linux-1 starting (executors: {', '.join(executors)}; "
                    f"sensors: {', '.join(settings.sensors)})"
                    + ("" if use_docker else "; no Docker engine, so no Docker executor"))

    use_mp = settings.micropython == "on" or (settings.micropython == "auto"
                                              and micropython_available())
    if use_mp:
        work = data_dir / "micro-agent"
        work.mkdir(parents=True, exist_ok=True)
        config = work / "config.json"
        write_private(config, json.dumps(micro_agent_config(
            "micro-1", master_coap, tokens.agent, work, settings.heartbeat_ms)))
        # ".frozen" keeps the interpreter's frozen modules (asyncio) importable.
        env = dict(os.environ, MICROPYPATH=f"{REPO / 'micro_agent'}:.frozen")
        micropython = shutil.which("micropython") or "micropython"
        child = children["micro-1"] = Child("MicroPython agent", [
            micropython, "-X", "heapsize=256k", str(REPO / "micro_agent" / "main.py"),
            str(config)], logs / "micro-agent.log", env=env, cwd=work)
        await nursery.start(supervise, child)
        agents.append("micro-1")
        console.say("MicroPython agent micro-1 starting (CoAP; sensor: temp)")
    elif settings.micropython == "auto":
        console.say("no MicroPython agent (needs `micropython` on PATH and micro_agent/)")

    try:
        await wait_for_agents(master_ws, tokens.operator, agents)
    except AgentsNotReady as e:
        for name in e.missing:
            child = children[name]
            console.say(f"{name} did not register within {AGENT_READY_TIMEOUT_S:g} s; the end "
                        f"of {child.log}:\n{child.log_tail()}")
        raise
    console.say(f"agents registered: {', '.join(agents) or 'none'}")
    return RunningCluster(master_ws, master_coap, tokens, agents, data_dir)


def write_state_file(cluster: RunningCluster) -> Path:
    path = cluster.data_dir / "cluster.json"
    body = {"master": cluster.master_ws, "coap": cluster.master_coap,
            "framework_token": cluster.tokens.framework,
            "operator_token": cluster.tokens.operator, "agent_token": cluster.tokens.agent,
            "pid": os.getpid(), "logs": str(cluster.data_dir / "logs")}
    write_private(path, json.dumps(body, indent=2))
    return path


# ---------------------------------------------------------------------------------------------
# The demo framework


class DemoFailed(Exception):
    pass


WASM_EXAMPLES = REPO / "examples" / "wasm"


async def build_examples(console: Console) -> Path:
    """Every example WASM task (`examples/wasm/build/*.wasm`: the demo's sampler, and hello.wasm
    &c. that the hints and the README name), built with the example Makefile when missing or
    stale. Returns the build directory; DemoFailed when nothing usable is there."""
    build = WASM_EXAMPLES / "build"
    if not (WASM_EXAMPLES / "Makefile").exists():
        if (build / "sampler.wasm").exists():
            return build
        raise DemoFailed(f"{WASM_EXAMPLES} is missing: run from a clone of the repository")
    if shutil.which("make") is None or shutil.which("clang") is None:
        if (build / "sampler.wasm").exists():
            return build
        raise DemoFailed("building the WASM examples needs make and clang (with lld): "
                         "apt-get install make clang lld")
    result = await trio.run_process(["make", "-s", "-C", str(WASM_EXAMPLES)],
                                    capture_stdout=True, capture_stderr=True, check=False)
    if result.returncode != 0:
        raise DemoFailed("building the WASM examples failed:\n"
                         + result.stderr.decode(errors="replace")[-2000:])
    built = sorted(p.name for p in build.glob("*.wasm"))
    console.say(f"built the WASM examples in {_shown_path(build)}: {', '.join(built)}")
    return build


async def build_sampler(console: Console) -> bytes:
    """examples/wasm/build/sampler.wasm (with the other examples, see build_examples)."""
    return (await build_examples(console) / "sampler.wasm").read_bytes()


def _shown_path(path: Path) -> str:
    """`path` as the user should type it: relative when under the current directory."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def cli_hint(data_dir: Path, hello: Path | None) -> str:
    """How to use the `edgerm` CLI against this cluster, from another shell.

    The CLI finds the cluster through `./.edgerm/cluster.json` (or `$EDGERM_HOME`): from
    another directory, or with another data directory, it needs EDGERM_HOME. When
    scripts/cluster.sh installed EdgeRM into a virtualenv (EDGERM_CLI_ACTIVATE names its
    activate script), `edgerm` is on PATH only once that is activated; with no `edgerm` at all,
    `python -m edgerm.cli` does the same."""
    steps = []
    activate = os.environ.get("EDGERM_CLI_ACTIVATE", "")
    edgerm = "edgerm"
    if activate:
        steps.append(f". {_shown_path(Path(activate))}")
    elif shutil.which("edgerm") is None:
        edgerm = f"{sys.executable} -m edgerm.cli"
    default_home = data_dir == (Path.cwd() / ".edgerm").resolve()
    if not default_home:
        steps.append(f"export EDGERM_HOME={data_dir}")
    commands = [f"{edgerm} agents", f"{edgerm} tasks"]
    if hello is not None:
        commands.append(f"{edgerm} run --wasm {_shown_path(hello)} --arg hi")
    where = ("in another shell in this directory" if default_home else "in another shell")
    first = f"first `{'; '.join(steps)}`, then " if steps else ""
    return f"{where}, {first}try `" + "`, `".join(commands) + "` (Ctrl-C stops the cluster)"


def format_reading(data: bytes, unit: str) -> str:
    """A reading as published: the WASM sampler sends a little-endian f64, the MicroPython
    sampler text."""
    shown = format_output(data, "auto")
    if len(data) == 8 or shown == data.decode("utf-8", "replace").rstrip("\n"):
        try:
            return f"{float(shown):.2f} {unit}".strip()
        except ValueError:
            pass
    return shown


@dataclass
class DemoJob:
    """One sampler of the demo: what it needs, what it runs, what became of it."""

    label: str                      # "WASM sampler"
    want: Constraints
    build: Any                      # (offer) -> pb.TaskSpec
    unit: str
    task_id: str = ""
    agent: str = ""
    readings: int = 0
    final: pb.TaskStatus | None = None


MICRO_SAMPLER = REPO / "micro_agent" / "examples" / "sampler.py"


async def run_demo(cluster: RunningCluster, settings: ClusterSettings, console: Console,
                   timeout_s: float = 60.0) -> bool:
    """Upload the WASM sampler, launch it on a `temp`-offering WASM agent (and, when the
    MicroPython agent is up, the MicroPython sampler on it), show progress and readings.
    True when every sampler FINISHED."""
    wasm_bytes = await build_sampler(console)
    sensor = "temp"
    samples, period = str(settings.samples), str(settings.period_ms)
    with trio.fail_after(timeout_s):
        async with Framework.connect(cluster.master_ws, name="edgerm-demo",
                                     token=cluster.tokens.framework,
                                     failover_timeout_s=10) as fw:
            console.say(f"demo framework subscribed ({fw.framework_id})")
            wasm = await fw.upload(wasm_bytes, name="sampler.wasm")
            console.say(f"uploaded sampler.wasm, sha256 {wasm.hex[:16]}…")
            wasm_want = Constraints(cpus=0.1, mem_mb=16, devices=[sensor], executors=[WASM])
            jobs = [DemoJob("WASM sampler", wasm_want, lambda offer: wasm_task(
                wasm, name="sampler", resources=wasm_want.resources(offer),
                args=[sensor, samples, period]), settings.sensors.get(sensor, ("",))[0])]
            if "micro-1" in cluster.agents and MICRO_SAMPLER.exists():
                mp = await fw.upload(MICRO_SAMPLER.read_bytes(), pb.MICROPYTHON_SOURCE,
                                     name="sampler.py")
                mp_want = Constraints(cpus=0.01, devices=[sensor], executors=[MICROPYTHON],
                                      agent_name="micro-1")
                jobs.append(DemoJob("MicroPython sampler", mp_want, lambda offer: micropython_task(
                    mp, name="sampler", resources=mp_want.resources(offer), args=[samples],
                    env={"PERIOD_MS": period}), "Cel"))
            by_task: dict[str, DemoJob] = {}
            async for ev in fw.events():
                if isinstance(ev, OffersEvent):
                    for offer in ev.offers:
                        job = next((j for j in jobs if not j.task_id and j.want.match(offer)),
                                   None)
                        if job is None:
                            await fw.decline(offer.offer_id, refuse_seconds=5)
                            continue
                        task_id = f"demo-{job.label.split()[0].lower()}-{secrets.token_hex(3)}"
                        await fw.launch(offer, task_id, job.build(offer))
                        job.task_id, job.agent = task_id, offer.agent_name
                        by_task[task_id] = job
                        console.say(f"launched {task_id} ({job.label}) on {offer.agent_name}: "
                                    f"{samples} readings of {sensor}, {period} ms apart")
                elif isinstance(ev, UpdateEvent) and ev.task_id in by_task:
                    job, st = by_task[ev.task_id], ev.status
                    extra = f" ({reason_name(st.reason)})" if st.reason else ""
                    extra += f": {st.message.strip()}" if st.message.strip() else ""
                    console.say(f"{job.label} on {job.agent}: task {state_name(st.state)}{extra}")
                    if ev.terminal:
                        job.final = st
                        if all(j.final is not None for j in jobs):
                            break
                elif isinstance(ev, OutputEvent) and ev.task_id in by_task:
                    job = by_task[ev.task_id]
                    job.readings += 1
                    console.say(f"{job.label} on {job.agent}: reading {job.readings}: "
                                f"{sensor} = {format_reading(ev.data, job.unit)}")
                elif isinstance(ev, ConnectionLost):
                    console.say(f"demo framework lost its connection ({ev.reason}); "
                                f"re-connecting")
            await fw.teardown()
    ok = all(j.final is not None and j.final.state == pb.FINISHED for j in jobs)
    console.say(f"demo {'finished' if ok else 'failed'}: " + ", ".join(
        f"{j.readings} readings from {j.agent or 'no agent'} ({j.label})" for j in jobs))
    return ok


# ---------------------------------------------------------------------------------------------
# Main


async def run(settings: ClusterSettings, out: TextIO = sys.stdout) -> int:
    console = Console(out)
    data_dir = settings.data_dir.resolve()
    console.say(f"data directory {data_dir} (tokens in {data_dir / 'tokens.json'}, "
                f"logs in {data_dir / 'logs'})")
    code = 0
    state_path: Path | None = None
    try:
        async with trio.open_nursery() as nursery:
            if _in_main_thread():
                nursery.start_soon(_stop_on_signal, nursery.cancel_scope, console)
            try:
                cluster = await start_cluster(settings, nursery, console)
                state_path = write_state_file(cluster)
                console.say(f"tokens: framework {cluster.tokens.framework}, "
                            f"operator {cluster.tokens.operator} (state file {state_path})")
                if settings.demo:
                    code = 0 if await _demo(cluster, settings, console) else 1
                if settings.keep_running or not settings.demo:
                    hello = await _hello_example(console)
                    console.say("the cluster is running; "
                                + cli_hint(cluster.data_dir, hello))
                    await trio.sleep_forever()
            except AgentsNotReady:
                code = 1
            nursery.cancel_scope.cancel()
    except ChildDied as e:
        # A child that exits by itself takes the cluster down (the others are stopped).
        console.say(str(e))
        code = 1
    finally:
        if state_path is not None:
            state_path.unlink(missing_ok=True)
    console.say("stopped")
    return code


async def _demo(cluster: RunningCluster, settings: ClusterSettings, console: Console) -> bool:
    try:
        return await run_demo(cluster, settings, console)
    except (DemoFailed, FrameworkError) as e:
        console.say(f"demo failed: {e}")
    except trio.TooSlowError:
        console.say("demo failed: it did not finish in time")
    return False


async def _hello_example(console: Console) -> Path | None:
    """examples/wasm/build/hello.wasm for the hint, built when the demo did not build it."""
    hello = WASM_EXAMPLES / "build" / "hello.wasm"
    if not hello.exists():
        try:
            await build_examples(console)
        except DemoFailed as e:
            console.say(f"no example WASM tasks: {e}")
    return hello if hello.exists() else None


async def _stop_on_signal(scope: trio.CancelScope, console: Console) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            console.say("stopping the cluster")
            scope.cancel()
            return


def _in_main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def build_parser() -> argparse.ArgumentParser:
    d = ClusterSettings()
    p = argparse.ArgumentParser(
        prog="python -m edgerm.cluster",
        description="Start a local EdgeRM cluster (master, Linux agent, MicroPython agent) and "
                    "run a WASM demo task on it. No configuration file needed.")
    p.add_argument("--data-dir", type=Path, default=d.data_dir,
                   help="store, tokens, logs and agent state (default ./.edgerm)")
    p.add_argument("--host", default=d.host, help="address the master binds")
    p.add_argument("--ws-port", type=int, default=d.ws_port, help="WebSocket port (0: any)")
    p.add_argument("--coap-port", type=int, default=d.coap_port, help="CoAP port (0: any)")
    p.add_argument("--heartbeat-ms", type=int, default=d.heartbeat_ms)
    p.add_argument("--docker", choices=["auto", "on", "off"], default=d.docker,
                   help="Docker executor on the Linux agent (auto: when an engine answers)")
    p.add_argument("--micropython", choices=["auto", "on", "off"], default=d.micropython,
                   help="the MicroPython agent (auto: when `micropython` is installed)")
    p.add_argument("--no-linux-agent", action="store_true")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--demo-only", action="store_true",
                      help="run the demo, then stop the cluster (the default)")
    mode.add_argument("--keep-running", action="store_true",
                      help="keep the cluster up after the demo, until Ctrl-C")
    mode.add_argument("--no-demo", action="store_true",
                      help="only start the cluster and keep it up, until Ctrl-C")
    p.add_argument("--samples", type=int, default=d.samples, help="readings the demo takes")
    p.add_argument("--period-ms", type=int, default=d.period_ms)
    p.add_argument("--fresh", action="store_true",
                   help="empty the data directory first (new tokens, empty store)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = ClusterSettings(
        data_dir=args.data_dir, host=args.host, ws_port=args.ws_port, coap_port=args.coap_port,
        heartbeat_ms=args.heartbeat_ms, docker=args.docker, micropython=args.micropython,
        linux_agent=not args.no_linux_agent, demo=not args.no_demo,
        keep_running=args.keep_running or args.no_demo, samples=args.samples,
        period_ms=args.period_ms)
    if args.fresh and settings.data_dir.exists():
        for entry in settings.data_dir.iterdir():
            if entry.name == "venv":
                continue    # scripts/cluster.sh's virtualenv is not cluster state
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    try:
        return trio.run(run, settings)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
