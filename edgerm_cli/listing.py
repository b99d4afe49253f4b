"""`edgerm agents|frameworks|tasks|offers`: the cluster's state as tables or JSON.

The listing commands read the master's read-only state resource (WebSocket `/state`: the first
frame is `StateRequest{operator token}`, the answer one `ClusterState`) through the shared
WebSocket client (`edgerm.transport.websocket`). `fetch_state` is also what the local cluster
polls while its agents register.

Error handling: a missing operator token exits with EXIT_USAGE before anything is sent; an
unreachable master, a refusal or an undecodable answer with EXIT_MASTER, each one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import trio

from edgerm.framework import describe_connection_error, endpoint_url, reason_name, state_name
from edgerm.masters import MasterList
from edgerm.state_json import listing_json
from edgerm.tls import TlsError
from edgerm.transport.websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConfig,
    connect_websocket,
)
from edgerm.wire import DecodeError, Limits, decode, encode, pb
from edgerm_cli import EXIT_MASTER, EXIT_USAGE
from edgerm_cli.target import TargetError, resolve_target

__all__ = ["StateError", "fetch_state", "fetch_state_from", "request_state", "LISTINGS",
           "list_command", "render_table",
           "agents_table", "frameworks_table", "tasks_table", "offers_table"]

# The largest `ClusterState` accepted: a big cluster's state is a few MiB.
STATE_MAX_BYTES = 16 * 1024 * 1024


class StateError(Exception):
    """No state: why, for the user. `leader`: a standby's NOT_LEADER named this leader."""

    def __init__(self, message: str, code: int = 0, leader: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.leader = leader


async def fetch_state_from(masters: Sequence[str], operator_token: str,
                           timeout_s: float = 10.0, ca_file: str | None = None
                           ) -> pb.ClusterState:
    """`fetch_state` from the leader among `masters`: a standby's NOT_LEADER sends it to the
    leader it names if that is one of `masters`, else (and when a master does not answer) to
    the next; each master is tried twice at most. Raises the last `StateError`."""
    ml = MasterList(masters)
    last: StateError | None = None
    for _ in range(2 * len(ml)):
        try:
            return await fetch_state(ml.current, operator_token, timeout_s, ca_file)
        except StateError as e:
            last = e
            if len(ml) == 1 or e.code not in (0, pb.NOT_LEADER, pb.UNAVAILABLE):
                raise
            if e.code == pb.NOT_LEADER:
                ml.refused(e.leader)
            else:
                ml.rotate()
    assert last is not None
    raise last


async def request_state(url: str, operator_token: str, timeout_s: float,
                        ca_file: str | None = None) -> bytes:
    """Send a `StateRequest` to a master's `/state` URL; its raw answer. Raises
    `trio.TooSlowError` past `timeout_s`, and `OSError` (`TlsError` for a certificate that
    does not verify against `ca_file`), `HandshakeError` or `ConnectionClosed` when the link
    fails (each caller words those its own way)."""
    config = WebSocketConfig(ping_interval=None, max_message_size=STATE_MAX_BYTES,
                             message_queue_size=1, connect_timeout=timeout_s,
                             disconnect_timeout=1.0)
    with trio.fail_after(timeout_s):
        async with connect_websocket(url, config=config, ca_file=ca_file) as ws:
            await ws.send(encode(pb.StateRequest(token=operator_token)))
            return await ws.receive()


async def fetch_state(master: str, operator_token: str, timeout_s: float = 10.0,
                      ca_file: str | None = None) -> pb.ClusterState:
    """The master's `ClusterState` over WebSocket `/state`.

    Error handling: an unreachable master, a refusal (the master answers an `Error`) or an
    undecodable answer raise `StateError` with the reason."""
    url = endpoint_url(master, "/state")
    try:
        raw = await request_state(url, operator_token, timeout_s, ca_file)
    except trio.TooSlowError:
        raise StateError(f"no answer from {url} within {timeout_s:g} s") from None
    except TlsError as e:
        raise StateError(str(e)) from None
    except (OSError, HandshakeError) as e:
        raise StateError(f"cannot reach {url}: {describe_connection_error(e)}") from None
    except ConnectionClosed as e:
        raise StateError(f"{url}: {describe_connection_error(e)}") from None
    try:
        return decode(pb.ClusterState, raw, _state_limits())
    except DecodeError as e:
        problem = e
    # A refusal: the master sends an `Error` (bare, or inside a FrameworkEvent).
    errors: list[pb.Error] = []
    try:
        errors.append(decode(pb.Error, raw))
    except DecodeError:
        pass
    try:
        errors.append(decode(pb.FrameworkEvent, raw).error)
    except DecodeError:
        pass
    for error in errors:
        if error.code:
            raise StateError(_error_text(error.code, error.message), error.code, error.leader)
    raise StateError(f"undecodable answer from {url}: {problem}")


def _state_limits() -> Any:
    return Limits(max_input=STATE_MAX_BYTES, max_items=1 << 20)


def _error_text(code: int, message: str) -> str:
    try:
        name = pb.ErrorCode.Name(code)
    except ValueError:
        name = str(code)
    return f"{name}: {message}"


# ---------------------------------------------------------------------------------------------
# Tables


def fmt_resources(res: pb.Resources) -> str:
    parts = [f"cpus {res.cpus:g}", f"mem {res.mem_mb:g} MB"]
    if res.disk_mb:
        parts.append(f"disk {res.disk_mb:g} MB")
    if res.ports:
        parts.append("ports " + ",".join(f"{r.begin}-{r.end}" for r in res.ports))
    return ", ".join(parts)


def fmt_devices(devices: Sequence[pb.Device]) -> str:
    return ",".join(d.name for d in devices) or "-"


def fmt_executors(executors: Sequence[int]) -> str:
    return ",".join(_enum_name(pb.Executor, e) for e in executors) or "-"


def fmt_attributes(attributes: Sequence[pb.Attribute]) -> str:
    out = []
    for a in attributes:
        kind = a.WhichOneof("value")
        if kind == "text":
            out.append(f"{a.name}={a.text}")
        elif kind == "scalar":
            out.append(f"{a.name}={a.scalar:g}")
        elif kind == "set":
            out.append(f"{a.name}={{{','.join(a.set.items)}}}")
    return " ".join(out) or "-"


def _enum_name(enum: Any, value: int) -> str:
    try:
        return str(enum.Name(value))
    except ValueError:
        return str(value)


def _ago(now: float, then: float) -> str:
    if not then:
        return "-"
    return f"{max(0.0, now - then):.1f}s ago"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [c.ljust(widths[i]) if i < len(row) - 1 else c for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def agents_table(state: pb.ClusterState) -> str:
    rows = [[str(a.agent_id), a.name, a.state or "-", a.transport or "-",
             f"{a.used.cpus:g}/{a.total.cpus:g}", f"{a.used.mem_mb:g}/{a.total.mem_mb:g}",
             fmt_devices(a.total.devices), fmt_executors(a.executors),
             _ago(state.now, a.last_seen), fmt_attributes(a.attributes)]
            for a in state.agents]
    return render_table(["ID", "NAME", "STATE", "LINK", "CPUS", "MEM MB", "DEVICES",
                         "EXECUTORS", "SEEN", "ATTRIBUTES"], rows)


def frameworks_table(state: pb.ClusterState) -> str:
    rows = [[f.framework_id, f.name, f.principal or "-", f.role or "-",
             "yes" if f.connected else "no", str(f.tasks), f"{f.weight:g}",
             f"{f.dominant_share:.3f}"]
            for f in state.frameworks]
    return render_table(["ID", "NAME", "PRINCIPAL", "ROLE", "CONNECTED", "TASKS", "WEIGHT",
                         "SHARE"], rows)


def tasks_table(state: pb.ClusterState) -> str:
    rows = [[t.task_id, t.framework_id, str(t.agent_id), t.name or "-",
             _enum_name(pb.Executor, t.executor), state_name(t.state),
             reason_name(t.reason) if t.reason else "-", one_line(t.message) or "-"]
            for t in state.tasks]
    return render_table(["TASK", "FRAMEWORK", "AGENT", "NAME", "EXECUTOR", "STATE", "REASON",
                         "MESSAGE"], rows)


def offers_table(state: pb.ClusterState) -> str:
    # The state resource describes each agent once, in `agents`; an offer there may carry only
    # its agent's id, so the name and executors come from that agent when the offer lacks them.
    agents = {a.agent_id: a for a in state.agents}
    rows = []
    for o in state.offers:
        agent = agents.get(o.agent_id)
        name = o.agent_name or (agent.name if agent is not None else "")
        executors = list(o.executors) or (list(agent.executors) if agent is not None else [])
        rows.append([o.offer_id, f"{o.agent_id} {name}".strip(), fmt_resources(o.resources),
                     fmt_devices(o.resources.devices), fmt_executors(executors),
                     f"{o.expires_in_s:.1f}s"])
    return render_table(["OFFER", "AGENT", "RESOURCES", "DEVICES", "EXECUTORS", "EXPIRES"], rows)


def one_line(text: str, limit: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


LISTINGS: dict[str, tuple[str, Callable[[pb.ClusterState], str]]] = {
    "agents": ("agents", agents_table),
    "frameworks": ("frameworks", frameworks_table),
    "tasks": ("tasks", tasks_table),
    "offers": ("offers", offers_table),
}


async def list_command(args: argparse.Namespace, out: TextIO) -> int:
    try:
        target = resolve_target(args, need="operator")
    except TargetError as e:
        print(f"edgerm: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        state = await fetch_state_from(target.masters, target.operator_token,
                                       ca_file=target.ca_file)
    except StateError as e:
        print(f"edgerm: {e}", file=sys.stderr)
        return EXIT_MASTER
    field, table = LISTINGS[args.command]
    if args.json:
        items = listing_json(state, field)
        print(json.dumps(items, indent=2, sort_keys=True), file=out)
    else:
        print(table(state), file=out)
    return 0
