"""The read-only JSON API under /api/v1 (docs/operations.md), and the change notices its
event stream waits on.

    GET /api/v1/state                       the whole ClusterState, as `edgerm ... --json` names it
    GET /api/v1/agents|frameworks|tasks|offers   one list, filtered and paged
    GET /api/v1/tasks/<task id>             one task with its recent states and outputs
    GET /api/v1/events?view=agents&...      Server-Sent Events: a snapshot of the summary and of
                                            that page whenever the master's state changed

Every item is built by `view.state_view` and turned into JSON by `edgerm.state_json`, the same
code as the CLI's `--json`. Every path needs an operator token (`Authorization: Bearer ...`).

Paging: `limit` (1..10000, default 100) and `offset` (default 0); an answer carries `total`
(after filters) and `next_offset` (null on the last page). Filters: `q` (a substring of ids,
names, states), `state`, and on tasks `framework` and `agent`, on offers `agent`. A bad or
unknown parameter is a 400 with the reason; nothing is answered partially.

Live updates (`events`): the flusher calls `Changes.bump()` after each batch of state changes
(steady heartbeats change nothing and bump nothing); a stream waits for a bump, sends a snapshot
if what it shows changed, then waits at least `COALESCE_S`: however busy the master, a
dashboard costs at most a few snapshots a second, each the size of one page.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio
from google.protobuf.message import Message

from edgerm.state_json import LISTINGS, item_json, state_json
from edgerm.wire import decode, pb
from edgerm_master.agent_states import STATE_NAMES
from edgerm_master.http_server import (
    HttpApp,
    HttpError,
    HttpRequest,
    HttpResponse,
    bearer_token,
    json_response,
)
from edgerm_master.state import MasterState, Task
from edgerm_master.validation import executor_of
from edgerm_master.view import operator_refusal, state_view

__all__ = ["Changes", "StateSource", "add_api_routes", "authenticator", "API"]

API = "/api/v1"
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
# A stream sends at most one snapshot this often, however often the state changes.
COALESCE_S = 0.5
# ... and at least this often (a comment line when nothing changed), so proxies keep it open
# and the page's "last seen" columns move on.
REFRESH_S = 10.0

TS = pb.TaskState


class Changes:
    """A counter of state changes with a wake-up for whoever waits on the next one."""

    def __init__(self) -> None:
        self.version = 0
        self._event = trio.Event()

    def bump(self) -> None:
        self.version += 1
        event, self._event = self._event, trio.Event()
        event.set()

    async def wait_past(self, version: int) -> None:
        """Return once `self.version` is past `version`."""
        while self.version <= version:
            await self._event.wait()


class StateSource(Protocol):
    """What the API reads: the master's state, its clock and its change notices
    (`MasterService`)."""

    @property
    def state(self) -> MasterState: ...

    def clock(self) -> float: ...

    @property
    def changes(self) -> Changes: ...


def authenticator(source: StateSource) -> Callable[[HttpRequest], HttpError | None]:
    """The operator-token check of `HttpApp`: 401 with the reason, logged like a refused
    `edgerm` state request."""

    def check(request: HttpRequest) -> HttpError | None:
        token = bearer_token(request)
        if operator_refusal(source.state, token, source.clock(), request.peer,
                            "HTTP request") is None:
            return None
        what = "wrong operator token" if token else "no operator token"
        return HttpError(401, "unauthenticated",
                         f"{what}: send one of the master's operator_tokens as "
                         "'Authorization: Bearer <token>'",
                         [("www-authenticate", 'Bearer realm="edgerm"')])

    return check


# ---------------------------------------------------------------------------------------------
# Query parameters


@dataclass(frozen=True)
class Query:
    """A list request's filters and page, checked."""

    listing: str
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    q: str = ""
    state: str = ""
    framework: str = ""
    agent: int | None = None


# The parameters each list takes beyond limit, offset and q.
_FILTERS = {"agents": ("state",), "frameworks": (), "tasks": ("state", "framework", "agent"),
            "offers": ("agent",)}
AGENT_STATES = tuple(sorted(set(STATE_NAMES.values())))
TASK_STATES = tuple(n for n in TS.keys() if n != "TASK_STATE_UNSPECIFIED")


def _bad(message: str) -> HttpError:
    return HttpError(400, "bad_request", message)


def _int_param(request: HttpRequest, name: str, default: int, low: int, high: int) -> int:
    raw = request.param(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"{name}={raw!r} is not an integer; use {low}..{high}") from None
    if not low <= value <= high:
        raise _bad(f"{name}={value} is out of range; use {low}..{high}")
    return value


def parse_query(request: HttpRequest, listing: str,
                extra: Sequence[str] = ()) -> Query:
    """The filters and page of a request for `listing`; HttpError 400 naming what is wrong."""
    allowed = {"limit", "offset", "q", *_FILTERS[listing], *extra}
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise _bad(f"unknown parameter {unknown[0]!r}; /{listing} takes "
                   + ", ".join(sorted(allowed)))
    limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_param(request, "offset", 0, 0, 2**31)
    state = (request.param("state") or "").strip()
    if state and listing == "agents":
        state = state.lower()
        if state not in AGENT_STATES:
            raise _bad(f"state={state!r} is not an agent state; use one of "
                       + ", ".join(AGENT_STATES))
    elif state:
        name = state.upper()
        name = name if name.startswith("TASK_") else "TASK_" + name
        if name not in TASK_STATES:
            raise _bad(f"state={state!r} is not a task state; use one of "
                       + ", ".join(TASK_STATES))
        state = name
    agent = None
    if request.param("agent"):
        agent = _int_param(request, "agent", 0, 1, 2**32 - 1)
    return Query(listing, limit, offset, (request.param("q") or "").strip().lower(), state,
                 (request.param("framework") or "").strip(), agent)


# ---------------------------------------------------------------------------------------------
# Building answers


def _text(item: Message, listing: str) -> str:
    """What the filter box (`q`) searches in an item, lower-case."""
    if listing == "agents":
        assert isinstance(item, pb.AgentView)
        attrs = " ".join(f"{a.name}={a.text}" for a in item.attributes)
        parts = [str(item.agent_id), item.name, item.state, item.transport, attrs,
                 " ".join(d.name for d in item.total.devices)]
    elif listing == "frameworks":
        assert isinstance(item, pb.FrameworkView)
        parts = [item.framework_id, item.name, item.role]
    elif listing == "tasks":
        assert isinstance(item, pb.TaskView)
        parts = [item.task_id, item.name, item.framework_id, TS.Name(item.state),
                 str(item.agent_id)]
    else:
        assert isinstance(item, pb.Offer)
        parts = [item.offer_id, str(item.agent_id), item.agent_name]
    return " ".join(parts).lower()


def _matches(item: Any, query: Query) -> bool:
    listing = query.listing
    if query.state:
        if listing == "agents" and item.state != query.state:
            return False
        if listing == "tasks" and TS.Name(item.state) != query.state:
            return False
    if query.framework and item.framework_id != query.framework:
        return False
    if query.agent is not None and item.agent_id != query.agent:
        return False
    return not query.q or query.q in _text(item, listing)


def page(state: pb.ClusterState, query: Query) -> dict[str, Any]:
    """One page of a list: `{<listing>: [...], total, offset, limit, next_offset, now}`."""
    items = getattr(state, query.listing)
    if query.q or query.state or query.framework or query.agent is not None:
        items = [m for m in items if _matches(m, query)]
    total = len(items)
    end = query.offset + query.limit
    return {query.listing: [item_json(m) for m in items[query.offset:end]], "total": total,
            "offset": query.offset, "limit": query.limit,
            "next_offset": end if end < total else None, "now": state.now}


def summary(st: MasterState) -> dict[str, Any]:
    """Counts for the dashboard's header: agents by state, frameworks, tasks by state, offers."""
    agents: dict[str, int] = {}
    for a in st.agents.values():
        name = STATE_NAMES.get(a.state, "?")
        agents[name] = agents.get(name, 0) + 1
    tasks: dict[str, int] = {}
    connected = 0
    for fw in st.frameworks.values():
        connected += fw.conn is not None
        for t in list(fw.tasks.values()) + list(fw.completed.values()):
            name = TS.Name(t.state)
            tasks[name] = tasks.get(name, 0) + 1
    return {"agents": agents, "agents_total": len(st.agents),
            "frameworks": len(st.frameworks), "frameworks_connected": connected,
            "tasks": tasks, "tasks_total": sum(tasks.values()), "offers": len(st.offers)}


def _find_task(st: MasterState, task_id: str, framework: str) -> Task:
    found = []
    for fw in st.frameworks.values():
        if framework and fw.framework_id != framework:
            continue
        task = fw.tasks.get(task_id) or fw.completed.get(task_id)
        if task is not None:
            found.append(task)
    if not found:
        raise HttpError(404, "not_found", f"no task {task_id!r}"
                        + (f" of framework {framework!r}" if framework else "")
                        + f"; {API}/tasks lists them")
    if len(found) > 1:
        raise _bad(f"task id {task_id!r} is used by {len(found)} frameworks; add "
                   "framework=<framework id>")
    return found[0]


def _output_json(when: float, seq: int, topic: str, data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"time": when, "seq": seq, "topic": topic, "size": len(data)}
    try:
        out["text"] = data.decode("utf-8")
    except UnicodeDecodeError:
        out["base64"] = base64.b64encode(data).decode()
    return out


def task_detail(st: MasterState, task_id: str, framework: str, now: float) -> dict[str, Any]:
    """One task: its `tasks` item plus `history` (state changes, oldest first) and `outputs`
    (the last few), both kept in memory since the master started."""
    task = _find_task(st, task_id, framework)
    spec = decode(pb.TaskSpec, task.spec)
    view = pb.TaskView(task_id=task.task_id, framework_id=task.framework_id,
                       agent_id=task.agent_id, name=spec.name, state=task.state,  # type: ignore[arg-type]
                       reason=task.reason, message=task.message,  # type: ignore[arg-type]
                       executor=executor_of(spec), resources=task.res.to_pb())  # type: ignore[arg-type]
    journal = task.journal
    history = [{"time": t, "state": TS.Name(s), "reason": pb.Reason.Name(r), "message": m}
               for t, s, r, m in (journal.states if journal else ())]
    outputs = [_output_json(*o) for o in (journal.outputs if journal else ())]
    return {"task": item_json(view), "history": history, "outputs": outputs,
            "outputs_total": task.output_seq, "now": now}


# ---------------------------------------------------------------------------------------------
# Routes


def add_api_routes(app: HttpApp, source: StateSource) -> None:
    """Every /api/v1 path on `app` (all need the operator token)."""

    async def state(request: HttpRequest) -> HttpResponse:
        if request.query:
            raise _bad(f"{API}/state takes no parameters (the lists do: {API}/agents?limit=...)")
        return json_response(state_json(state_view(source.state, source.clock())))

    def listing(name: str) -> Callable[[HttpRequest], Any]:
        async def handler(request: HttpRequest) -> HttpResponse:
            query = parse_query(request, name)
            return json_response(page(state_view(source.state, source.clock(), (name,)), query))
        return handler

    async def task(request: HttpRequest) -> HttpResponse:
        task_id = request.path[len(f"{API}/tasks/"):]
        unknown = sorted(set(request.query) - {"framework"})
        if unknown:
            raise _bad(f"unknown parameter {unknown[0]!r}; {API}/tasks/<id> takes framework")
        return json_response(task_detail(source.state, task_id, request.param("framework") or "",
                                         source.clock()))

    async def events(request: HttpRequest) -> HttpResponse:
        view = request.param("view") or "agents"
        if view not in LISTINGS:
            raise _bad(f"view={view!r}: use one of " + ", ".join(LISTINGS))
        query = parse_query(request, view, ("view", "task", "task_framework"))
        task_id = request.param("task") or ""
        task_fw = request.param("task_framework") or ""

        def snapshot() -> dict[str, Any]:
            st, now = source.state, source.clock()
            out: dict[str, Any] = {"summary": summary(st), "view": view,
                                   "page": page(state_view(st, now, (view,)), query)}
            if task_id:
                try:
                    out["task"] = task_detail(st, task_id, task_fw, now)
                except HttpError as e:
                    out["task"] = {"error": e.error, "message": e.message}
            return out

        return HttpResponse(content_type="text/event-stream", stream=lambda: _event_stream(
            source.changes, snapshot, source.clock))

    app.route(f"{API}/state", state)
    for name in LISTINGS:
        app.route(f"{API}/{name}", listing(name))
    app.route(f"{API}/tasks/", task, prefix=True)
    app.route(f"{API}/events", events)


def _strip_times(value: Any) -> Any:
    """`value` without its `now` keys: two snapshots that differ only in the time are equal."""
    if isinstance(value, dict):
        return {k: _strip_times(v) for k, v in value.items() if k != "now"}
    return value


async def _event_stream(changes: Changes, snapshot: Callable[[], dict[str, Any]],
                        clock: Callable[[], float]) -> AsyncIterator[bytes]:
    """`event: snapshot` each time what `snapshot()` shows changed (at most one per
    COALESCE_S), a comment line after REFRESH_S without one."""
    last: Any = None
    seen = -1
    while True:
        seen = changes.version
        current = snapshot()
        bare = _strip_times(current)
        if bare != last:
            last = bare
            current["now"] = clock()
            yield b"event: snapshot\ndata: " + json.dumps(
                current, separators=(",", ":")).encode() + b"\n\n"
        else:
            yield b": no change\n\n"
        await trio.sleep(COALESCE_S)
        with trio.move_on_after(REFRESH_S):
            await changes.wait_past(seen)
