"""The `edgerm` command's entry point: argument parsing and dispatch to `edgerm run`
(`edgerm_cli.run`), a listing (`edgerm_cli.listing`) or `edgerm install-service`
(`edgerm_cli.install_service`).

`[project.scripts] edgerm` and `python -m edgerm_cli` call `main()`, which returns the exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import trio

from edgerm_cli import EXIT_INTERRUPTED, install_service
from edgerm_cli.listing import LISTINGS, list_command
from edgerm_cli.masters import masters_command
from edgerm_cli.run import DOCKER_DEFAULT_MEM_MB, MICROPYTHON_DEFAULT_MEM_MB, run_command
from edgerm_cli.target import DEFAULT_MASTER, add_ca_file_argument

__all__ = ["build_parser", "main"]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--master", action="append",
                        help=f"master address (env EDGERM_MASTER; default: the local cluster's, "
                             f"else {DEFAULT_MASTER}); several masters (one leads): repeat it or "
                             f"give a comma list, the command follows the leader among them")
    parser.add_argument("--token", help="framework token (env EDGERM_TOKEN)")
    parser.add_argument("--operator-token", help="operator token for listings "
                                                 "(env EDGERM_OPERATOR_TOKEN)")
    add_ca_file_argument(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgerm", description="Launch a task on an EdgeRM cluster, or list its state.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="launch one WASM, Docker or MicroPython task and follow it",
                         description="Launch one task on a matching agent, show its progress and "
                                     "output, exit 0 when it FINISHED. Example: edgerm run --wasm "
                                     "task.wasm --device temp -- or: edgerm run --docker busybox "
                                     "-- echo hello")
    _common(run)
    kind = run.add_mutually_exclusive_group(required=True)
    kind.add_argument("--wasm", metavar="FILE", help="a WASM module (proto/wasm_abi.md)")
    kind.add_argument("--docker", metavar="IMAGE", help="a Docker image; the command after --")
    kind.add_argument("--micropython", metavar="FILE", help="MicroPython source or .mpy")
    run.add_argument("docker_command", nargs="*", metavar="CMD",
                     help="the Docker command, after --")
    run.add_argument("--arg", action="append", default=[], help="task argument (repeatable)")
    run.add_argument("--env", action="append", default=[], metavar="K=V",
                     help="environment variable (repeatable)")
    run.add_argument("--device", action="append", default=[],
                     help="a sensor/device the task needs, e.g. temp (repeatable)")
    run.add_argument("--cpus", type=float, default=0.1)
    run.add_argument("--mem", type=float, default=None,
                     help=f"memory in MB (default: for WASM the module's initial memory, one "
                          f"64 KiB page at least; Docker {DOCKER_DEFAULT_MEM_MB:g}; MicroPython "
                          f"{MICROPYTHON_DEFAULT_MEM_MB:g}, the agent's own heap)")
    run.add_argument("--disk", type=float, default=0.0, help="disk in MB")
    run.add_argument("--agent", help="agent name or shell pattern")
    run.add_argument("--attribute", action="append", default=[], metavar="K=V",
                     help="agent attribute to require (repeatable)")
    run.add_argument("--name", default="", help="task name")
    run.add_argument("--task-id", default="", help="task id (default: run-<random>)")
    run.add_argument("--entry", default="", help="WASM entry function")
    run.add_argument("--timeout", type=int, default=0,
                     help="task time limit in s, then it is killed, FAILED TIMEOUT (0: none)")
    run.add_argument("--offer-timeout", type=float, default=30.0,
                     help="give up when no offer fits within this many seconds")
    run.add_argument("--connect-timeout", type=float, default=10.0)
    run.add_argument("--failover-timeout", type=float, default=30.0,
                     help="how long the master keeps the task if this command loses its link")
    run.add_argument("--framework-name", default="edgerm-run")
    run.add_argument("--output", choices=["auto", "text", "hex", "f64"], default="auto",
                     help="how to print published data (auto: an f64 for 8 bytes holding a "
                          "number of everyday size, else text, else hex)")
    run.add_argument("-q", "--quiet", action="store_true", help="only output and failures")

    masters = sub.add_parser("masters", help="each master's role and which one leads",
                             description="Ask every master given with --master (a comma list "
                                         "or repeated) for its role: leader, standby (and the "
                                         "leader it names) or unreachable (docs/ha.md).")
    _common(masters)
    masters.add_argument("--json", action="store_true", help="JSON instead of a table")
    masters.add_argument("--etcd", metavar="URL[,URL]",
                         help="also read etcd's members registry (env EDGERM_ETCD): every "
                              "master by name, the leader")
    masters.add_argument("--etcd-prefix", default="/edgerm/",
                         help="the masters' [store] prefix (default /edgerm/)")
    for name, (_, _table) in LISTINGS.items():
        p = sub.add_parser(name, help=f"list the cluster's {name}")
        _common(p)
        p.add_argument("--json", action="store_true", help="JSON instead of a table")
    install_service.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The SDK logs connection changes; `edgerm run` reports them itself.
    logging.basicConfig(level=logging.ERROR, format="edgerm: %(message)s")
    logging.getLogger("edgerm.framework").setLevel(logging.CRITICAL)
    if args.command == "run" and args.docker_command and not args.docker:
        parser.error("a command after -- is only for --docker tasks")
    if args.command == "install-service":
        return install_service.install_command(args, sys.stdout, sys.stderr)
    try:
        if args.command == "run":
            return trio.run(run_command, args, sys.stdout, sys.stderr)
        if args.command == "masters":
            return trio.run(masters_command, args, sys.stdout)
        return trio.run(list_command, args, sys.stdout)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
