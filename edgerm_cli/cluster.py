"""A local EdgeRM cluster in one command: `python -m edgerm_cli.cluster`.

It starts, as supervised child processes in one Trio nursery:
- the master (`python -m edgerm_master`), its SQLite store and modules under the data directory
  (`./.edgerm` by default), with development tokens generated once and kept in
  `<data dir>/tokens.json`;
- a Linux agent (`python -m edgerm_agent`) over WebSocket with the WASM executor (and Docker when
  a Docker engine answers) and two simulated sensors, `temp` and `humidity`;
- the MicroPython agent (`micropython micro_agent/main.py`) over CoAP, when both the interpreter
  and `micro_agent/` are there; with `--gateway` the Linux agent is also a gateway
  (docs/gateway.md) and the MicroPython agent talks to it instead of the master;

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

Modules: this one is the command (`run`, `main`); the processes are
`edgerm_cli.cluster_processes`, the demo framework `edgerm_cli.cluster_demo`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import trio

from edgerm_cli.cluster_demo import hello_example, run_demo_reporting
from edgerm_cli.cluster_processes import (
    AgentsNotReady,
    ChildDied,
    ClusterSettings,
    Console,
    shown_path,
    start_cluster,
    write_state_file,
)

__all__ = ["run", "main", "build_parser", "cli_hint"]


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
                if cluster.dashboard:
                    console.say(f"dashboard: open {cluster.dashboard} and enter the operator "
                                "token above (the browser does not know the development CA: "
                                f"import {cluster.ca_file} as a trusted authority, or accept "
                                "its warning once; curl takes --cacert)")
                if settings.demo:
                    code = 0 if await run_demo_reporting(cluster, settings, console) else 1
                if settings.keep_running or not settings.demo:
                    hello = await hello_example(console)
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


def cli_hint(data_dir: Path, hello: Path | None) -> str:
    """How to use the `edgerm` CLI against this cluster, from another shell.

    The CLI finds the cluster through `./.edgerm/cluster.json` (or `$EDGERM_HOME`): from
    another directory, or with another data directory, it needs EDGERM_HOME. When
    scripts/cluster.sh installed EdgeRM into a virtualenv (EDGERM_CLI_ACTIVATE names its
    activate script), `edgerm` is on PATH only once that is activated; with no `edgerm` at all,
    `python -m edgerm_cli` does the same."""
    steps = []
    activate = os.environ.get("EDGERM_CLI_ACTIVATE", "")
    edgerm = "edgerm"
    if activate:
        steps.append(f". {shown_path(Path(activate))}")
    elif shutil.which("edgerm") is None:
        edgerm = f"{sys.executable} -m edgerm_cli"
    default_home = data_dir == (Path.cwd() / ".edgerm").resolve()
    if not default_home:
        steps.append(f"export EDGERM_HOME={data_dir}")
    commands = [f"{edgerm} agents", f"{edgerm} tasks"]
    if hello is not None:
        commands.append(f"{edgerm} run --wasm {shown_path(hello)} --arg hi")
    where = ("in another shell in this directory" if default_home else "in another shell")
    first = f"first `{'; '.join(steps)}`, then " if steps else ""
    return f"{where}, {first}try `" + "`, `".join(commands) + "` (Ctrl-C stops the cluster)"


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
        prog="python -m edgerm_cli.cluster",
        description="Start a local EdgeRM cluster (master, Linux agent, MicroPython agent) and "
                    "run a WASM demo task on it. No configuration file needed.")
    p.add_argument("--data-dir", type=Path, default=d.data_dir,
                   help="store, tokens, logs and agent state (default ./.edgerm)")
    p.add_argument("--host", default=d.host, help="address the master binds")
    p.add_argument("--ws-port", type=int, default=d.ws_port, help="WebSocket port (0: any)")
    p.add_argument("--coap-port", type=int, default=d.coap_port, help="CoAP port (0: any)")
    p.add_argument("--http-port", type=int, default=d.http_port,
                   help="dashboard and HTTP API port (default: WebSocket port + 1; 0: any)")
    p.add_argument("--heartbeat-ms", type=int, default=d.heartbeat_ms)
    p.add_argument("--docker", choices=["auto", "on", "off"], default=d.docker,
                   help="Docker executor on the Linux agent (auto: when an engine answers)")
    p.add_argument("--micropython", choices=["auto", "on", "off"], default=d.micropython,
                   help="the MicroPython agent (auto: when `micropython` is installed)")
    p.add_argument("--no-linux-agent", action="store_true")
    p.add_argument("--gateway", action="store_true",
                   help="make the Linux agent a gateway (docs/gateway.md) and put the "
                        "MicroPython agent behind it")
    p.add_argument("--gateway-port", type=int, default=d.gateway_port,
                   help="the gateway's CoAP port for the MicroPython agent")
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.gateway and args.no_linux_agent:
        parser.error("--gateway makes the Linux agent the gateway: drop --no-linux-agent")
    if not 0 < args.gateway_port < 65536:
        parser.error("--gateway-port must be a port number (1-65535): the MicroPython agent "
                     "is told it before the gateway binds, so 0 (any) cannot work")
    settings = ClusterSettings(
        data_dir=args.data_dir, host=args.host, ws_port=args.ws_port, coap_port=args.coap_port,
        http_port=args.http_port,
        heartbeat_ms=args.heartbeat_ms, docker=args.docker, micropython=args.micropython,
        linux_agent=not args.no_linux_agent, demo=not args.no_demo,
        keep_running=args.keep_running or args.no_demo, samples=args.samples,
        period_ms=args.period_ms, gateway=args.gateway, gateway_port=args.gateway_port)
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
