"""Where the master is and which tokens to use, for every `edgerm` command.

In order: flags (`--master`, repeatable or a comma list for several masters, `--token`,
`--operator-token`, `--ca-file`), the environment (`EDGERM_MASTER`, a comma list too,
`EDGERM_TOKEN`, `EDGERM_OPERATOR_TOKEN`, `EDGERM_CA_FILE`), and the state file a local cluster
(`python -m edgerm_cli.cluster`) writes: `$EDGERM_HOME/cluster.json` when EDGERM_HOME is set, else
`./.edgerm/cluster.json` (where the cluster keeps it by default), else `~/.edgerm/cluster.json`.
A malformed address or a missing token is a `TargetError`: one line for the user, raised before
anything is sent.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgerm.framework import endpoint_url
from edgerm.masters import split_urls

__all__ = ["DEFAULT_MASTER", "Target", "TargetError", "add_target_arguments", "resolve_target",
           "state_file", "add_ca_file_argument"]

DEFAULT_MASTER = "ws://127.0.0.1:5690"


def state_file() -> Path:
    """The file a running local cluster describes itself in (`edgerm_cli.cluster` writes it).

    `$EDGERM_HOME/cluster.json` when EDGERM_HOME is set. Otherwise `./.edgerm/cluster.json`,
    the cluster's default data directory, when there is one and it is ours: one left in a
    shared directory by another user is ignored, as it could send our token to their master.
    Otherwise `~/.edgerm/cluster.json`."""
    home = os.environ.get("EDGERM_HOME")
    if home:
        return Path(home) / "cluster.json"
    local = Path(".edgerm") / "cluster.json"
    try:
        if local.stat().st_uid == os.getuid():
            return local
    except OSError:
        pass
    return Path.home() / ".edgerm" / "cluster.json"


@dataclass(frozen=True)
class Target:
    master: str                      # the first of `masters`
    framework_token: str
    operator_token: str
    masters: tuple[str, ...] = ()    # every master given; commands follow the leader among them
    # The CA file a wss:// master's certificate must chain to; None: the system's trust store.
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if not self.masters:
            object.__setattr__(self, "masters", (self.master,))


class TargetError(Exception):
    """The master address or a token is missing or malformed: one line for the user."""


def add_target_arguments(parser: argparse.ArgumentParser,
                         master_help: str = "master address, or a comma list of masters "
                                            "(env EDGERM_MASTER)") -> None:
    """`--master`, `--token` and a hidden `--operator-token`: what `resolve_target` reads, as a
    framework script (examples/frameworks/) takes them. The `edgerm` command has its own, with
    `--master` repeatable and the operator token shown."""
    parser.add_argument("--master", help=master_help)
    parser.add_argument("--token", help="framework token (env EDGERM_TOKEN)")
    parser.add_argument("--operator-token", help=argparse.SUPPRESS)
    add_ca_file_argument(parser)


def add_ca_file_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ca-file", metavar="PEM",
                        help="CA certificate(s) a wss:// master's certificate must chain to "
                             "(env EDGERM_CA_FILE; default: the local cluster's, else the "
                             "system's trusted CAs)")


def resolve_target(args: argparse.Namespace, need: str = "") -> Target:
    """Where the master is and the tokens. `need` ("framework" or "operator") names the token
    the command cannot work without. Raises TargetError for a malformed address or a missing
    token: saying "no token given" beats the master's "wrong token"."""
    local: dict[str, Any] = {}
    try:
        local = json.loads(state_file().read_text())
    except (OSError, ValueError):
        pass
    given = args.master if isinstance(args.master, list) else [args.master or ""]
    local_masters = local.get("masters") or [local.get("master") or ""]
    masters = (split_urls(given) or split_urls([os.environ.get("EDGERM_MASTER", "")])
               or split_urls(str(m) for m in local_masters) or [DEFAULT_MASTER])
    master = masters[0]
    token = (args.token or os.environ.get("EDGERM_TOKEN") or local.get("framework_token") or "")
    operator = (args.operator_token or os.environ.get("EDGERM_OPERATOR_TOKEN")
                or local.get("operator_token") or "")
    ca_file = (getattr(args, "ca_file", None) or os.environ.get("EDGERM_CA_FILE")
               or (local.get("ca_file") if masters == split_urls(
                   str(m) for m in local_masters) else None) or None)
    try:
        for m in masters:
            endpoint_url(m, "")
    except ValueError as e:
        raise TargetError(str(e)) from None
    if need == "framework" and not token:
        raise TargetError("no framework token given: pass --token or set EDGERM_TOKEN (the "
                          "master's framework_tokens; a local cluster's is used by itself)")
    if need == "operator" and not operator:
        raise TargetError("no operator token given: pass --operator-token or set "
                          "EDGERM_OPERATOR_TOKEN (the master's operator_tokens; a local "
                          "cluster's is used by itself)")
    return Target(master, token, operator, tuple(masters), ca_file)
