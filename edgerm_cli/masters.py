"""`edgerm masters`: each master's role and which one leads (docs/ha.md).

Every master the command is pointed at (`--master`, a comma list or repeated; edgerm_cli.target)
is asked for the operator state (WebSocket `/state`) at once: the leader answers it, a standby
refuses with NOT_LEADER naming the leader's URL, a master that does not answer is `unreachable`.

Error handling: when no master answers, EXIT_MASTER with one line on stderr; otherwise a table
(or `--json`) of all of them, the unreachable ones included.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from typing import TextIO

import trio

from edgerm.framework import describe_connection_error, endpoint_url
from edgerm.transport.websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConfig,
    connect_websocket,
)
from edgerm.wire import DecodeError, decode, encode, pb
from edgerm_cli import EXIT_MASTER, EXIT_USAGE
from edgerm_cli.listing import STATE_MAX_BYTES, render_table
from edgerm_cli.target import TargetError, resolve_target

__all__ = ["MasterRow", "probe_master", "masters_command", "masters_table"]


@dataclass
class MasterRow:
    """One master as `edgerm masters` shows it."""
    name: str            # from the members registry; "" when only probed
    role: str            # leader, standby, unreachable, refusing, registered (etcd only)
    urls: dict[str, str]
    leader: str = ""     # the leader's URL or name this master names ("" unknown)
    detail: str = ""     # why unreachable / refusing


async def probe_master(url: str, operator_token: str, timeout_s: float = 3.0) -> MasterRow:
    """Ask one master for the operator state; what its answer says of its role."""
    state_url = endpoint_url(url, "/state")
    config = WebSocketConfig(ping_interval=None, max_message_size=STATE_MAX_BYTES,
                             message_queue_size=1, connect_timeout=timeout_s,
                             disconnect_timeout=1.0)
    row = MasterRow("", "unreachable", {"ws": url})
    try:
        with trio.fail_after(timeout_s):
            async with connect_websocket(state_url, config=config) as ws:
                await ws.send(encode(pb.StateRequest(token=operator_token)))
                raw = await ws.receive()
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
              r.leader or "-", r.detail or ""] for r in rows]
    return render_table(["NAME", "ROLE", "COAP", "WS", "LEADER", "DETAIL"], cells)


async def masters_command(args: argparse.Namespace, out: TextIO) -> int:
    try:
        target = resolve_target(args, need="operator")
    except TargetError as e:
        print(f"edgerm: {e}", file=sys.stderr)
        return EXIT_USAGE
    urls = list(target.masters) or [target.master]
    rows: list[MasterRow] = [MasterRow("", "unreachable", {"ws": u}) for u in urls]

    async def probe(i: int) -> None:
        rows[i] = await probe_master(urls[i], target.operator_token)

    async with trio.open_nursery() as nursery:
        for i in range(len(urls)):
            nursery.start_soon(probe, i)
    if all(r.role == "unreachable" for r in rows):
        print("edgerm: no master answered: " + "; ".join(
            f"{r.urls['ws']}: {r.detail}" for r in rows) + " (check --master)", file=sys.stderr)
        return EXIT_MASTER
    leaders = [r.urls.get("ws", "") for r in rows if r.role == "leader"]
    if args.json:
        print(json.dumps({"leader": leaders[0] if leaders else "",
                          "masters": [asdict(r) for r in rows]}, indent=2, sort_keys=True),
              file=out)
    else:
        print(masters_table(rows), file=out)
    return 0
