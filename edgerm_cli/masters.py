"""`edgerm masters`: each master's role and which one leads (docs/ha.md).

Two sources, together when both are given:
- every master the command is pointed at (`--master`, a comma list or repeated;
  edgerm_cli.target) is asked for the operator state (WebSocket `/state`): the leader answers
  it, a standby refuses with NOT_LEADER naming the leader's URL, a master that does not answer
  is `unreachable`;
- with `--etcd URL[,URL]` (and `--etcd-prefix`), etcd's members registry (election.py): every
  running master by name with the URLs it advertises, and the holder of the election key. A
  probed master is matched to its registry entry by its WebSocket URL.

The `--json` document is built by edgerm_master.members.masters_json, as the master's
`/api/v1/masters` is (edgerm_master/http_masters.py): the same names and shape.

Error handling: when nothing answers, EXIT_MASTER with one line on stderr; otherwise a table
(or `--json`) of all of them, the unreachable ones included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

import trio

from edgerm.framework import describe_connection_error, endpoint_url
from edgerm.transport.websocket import (
    ConnectionClosed,
    HandshakeError,
)
from edgerm.wire import DecodeError, decode, pb
from edgerm_cli import EXIT_MASTER, EXIT_USAGE
from edgerm_cli.listing import render_table, request_state
from edgerm_cli.target import TargetError, resolve_target
from edgerm_master.members import MasterRow, masters_json, registry_rows

__all__ = ["MasterRow", "probe_master", "masters_command", "masters_table"]


async def probe_master(url: str, operator_token: str, timeout_s: float = 3.0,
                       ca_file: str | None = None) -> MasterRow:
    """Ask one master for the operator state; what its answer says of its role."""
    row = MasterRow("", "unreachable", {"ws": url})
    try:
        raw = await request_state(endpoint_url(url, "/state"), operator_token, timeout_s,
                                  ca_file)
    except trio.TooSlowError:
        row.detail = f"no answer within {timeout_s:g} s"
        return row
    except (OSError, HandshakeError, ConnectionClosed) as e:
        row.detail = describe_connection_error(e)
        return row
    try:
        if decode(pb.ClusterState, raw).version:  # only a ClusterState carries the version
            row.role = "leader"
            row.leader = url
            return row
    except DecodeError:
        pass
    try:
        err = decode(pb.Error, raw)
    except DecodeError:
        err = pb.Error()
    if err.code == pb.NOT_LEADER:
        row.role = "standby"
        row.leader = err.leader
    else:
        row.role = "refusing"
        row.detail = err.message or "an answer that is neither a state nor a refusal"
    return row


def masters_table(rows: list[MasterRow]) -> str:
    cells = [[r.name or "-", r.role, r.urls.get("coap", "-"), r.urls.get("ws", "-"),
              r.urls.get("http", "-"), r.leader or "-", r.detail or ""] for r in rows]
    return render_table(["NAME", "ROLE", "COAP", "WS", "HTTP", "LEADER", "DETAIL"], cells)


async def read_registry(endpoints: list[str], prefix: str, timeout_s: float = 3.0
                        ) -> list[MasterRow]:
    """Every master in etcd's members registry under `prefix`, the leader marked."""
    from edgerm_master.election import read_registry as read
    from edgerm_master.etcd_client import EtcdClient

    client = EtcdClient(endpoints, timeout_s=timeout_s)
    try:
        members, leader = await read(client, prefix)
    finally:
        await client.aclose()
    return registry_rows(members, leader)


def _merge(registered: list[MasterRow], probed: list[MasterRow]) -> list[MasterRow]:
    """The registry's rows, each checked by its probe where there is one (the probe's role
    wins: it is what the master says of itself now), then the probed masters not registered."""
    by_ws = {r.urls.get("ws", ""): r for r in probed}
    out = []
    for r in registered:
        p = by_ws.pop(r.urls.get("ws", ""), None)
        if p is not None and p.role in ("unreachable", "refusing"):
            r.role, r.detail = p.role, p.detail
        out.append(r)
    return out + list(by_ws.values())


async def masters_command(args: argparse.Namespace, out: TextIO) -> int:
    try:
        target = resolve_target(args, need="operator")
    except TargetError as e:
        print(f"edgerm: {e}", file=sys.stderr)
        return EXIT_USAGE
    etcd = [u.strip() for u in (args.etcd or os.environ.get("EDGERM_ETCD", "")).split(",")
            if u.strip()]
    given = args.master or os.environ.get("EDGERM_MASTER") or not etcd
    urls = (list(target.masters) or [target.master]) if given else []
    rows: list[MasterRow] = [MasterRow("", "unreachable", {"ws": u}) for u in urls]

    async def probe(i: int) -> None:
        rows[i] = await probe_master(urls[i], target.operator_token, ca_file=target.ca_file)

    async with trio.open_nursery() as nursery:
        for i in range(len(urls)):
            nursery.start_soon(probe, i)
    if etcd:
        try:
            rows = _merge(await read_registry(etcd, args.etcd_prefix), rows)
        except Exception as e:  # EtcdError, or a URL httpx refuses
            print(f"edgerm: etcd {','.join(etcd)}: {e} (check --etcd)", file=sys.stderr)
            return EXIT_MASTER
    elif all(r.role == "unreachable" for r in rows):
        print("edgerm: no master answered: " + "; ".join(
            f"{r.urls['ws']}: {r.detail}" for r in rows) + " (check --master)", file=sys.stderr)
        return EXIT_MASTER
    if args.json:
        print(json.dumps(masters_json(rows), indent=2, sort_keys=True), file=out)
    else:
        print(masters_table(rows), file=out)
    return 0
