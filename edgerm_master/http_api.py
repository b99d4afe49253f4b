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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio
from google.protobuf.message import Message

from edgerm.outputs import format_output
from edgerm.state_json import LISTINGS, item_json, state_json
from edgerm.wire import pb
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
from edgerm_master.view import ITEM_VIEWS, items, operator_refusal, state_view, task_view

__all__ = ["Changes", "StateSource", "add_api_routes", "authenticator", "API"]

API = "/api/v1"
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
# A stream sends at most one snapshot this often, however often the state changes.
COALESCE_S = 0.5
# ... and at least this often (a comment line when nothing changed), so proxies keep it open
# and the page's "last seen" columns move on.
REFRESH_S = 10.0

# Search texts built between two yields to the event loop (~8 ms of the master's time).
WARM_SLICE = 100

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
TASK_STATES = tuple(n for n in TS.keys() if n != "TASK_STATE_UNSPECIFIED")  # RUNNING, ...


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
        name = state.upper().removeprefix("TASK_")
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


def _static_text(view: Message, listing: str) -> str:
    """What the filter box (`q`) searches in an item and does not change while it lives."""
    if listing == "agents":
        assert isinstance(view, pb.AgentView)
        attrs = " ".join(f"{a.name}={a.text}" for a in view.attributes)
        parts = [str(view.agent_id), view.name, attrs,
                 " ".join(d.name for d in view.total.devices)]
    elif listing == "frameworks":
        assert isinstance(view, pb.FrameworkView)
        parts = [view.framework_id, view.name, view.principal, view.role]
    elif listing == "tasks":
        assert isinstance(view, pb.TaskView)
        parts = [view.task_id, view.name, view.framework_id, str(view.agent_id)]
    else:
        assert isinstance(view, pb.Offer)
        parts = [view.offer_id, str(view.agent_id)]
    return " ".join(parts).lower()


class SearchText:
    """The static search text of agents and tasks, cached: building it needs the item's view,
    and decoding an agent's registration for each of 10,000 agents on each keystroke in the
    filter box would take most of a second. An entry is rebuilt when its source bytes change
    (an agent re-registered); the cache is dropped when it has grown well past the items."""

    def __init__(self) -> None:
        self._cache: dict[Any, tuple[bytes, str]] = {}

    def of(self, st: MasterState, listing: str, item: Any, now: float) -> str:
        key: tuple[Any, ...]
        if listing == "agents":
            key, source = ("a", item.agent_id), item.info
        elif listing == "tasks":
            key, source = ("t", item[0], item[1].task_id), item[1].spec
        else:
            return _static_text(ITEM_VIEWS[listing](st, item, now), listing)
        hit = self._cache.get(key)
        if hit is None or hit[0] is not source:  # (identity: the bytes object it was made of)
            hit = (source, _static_text(ITEM_VIEWS[listing](st, item, now), listing))
            self._cache[key] = hit
        return hit[1]

    async def warm(self, st: MasterState, listing: str, now: float) -> None:
        """Build what is missing in slices, yielding to the master's other tasks in between:
        the first search over 10,000 agents takes most of a second, which must not stall
        heartbeats."""
        if listing not in ("agents", "tasks"):
            return
        for n, item in enumerate(items(st, listing)):
            self.of(st, listing, item, now)
            if n % WARM_SLICE == WARM_SLICE - 1:
                await trio.sleep(0)

    def prune(self, items: int) -> None:
        if len(self._cache) > 2 * items + 1000:
            self._cache.clear()


def _matches(st: MasterState, item: Any, query: Query, now: float, texts: SearchText) -> bool:
    listing = query.listing
    dynamic = ""
    if listing == "agents":
        state = STATE_NAMES.get(item.state, "?")
        if query.state and state != query.state:
            return False
        dynamic = f"{state} {item.transport}"
    elif listing == "tasks":
        framework_id, task = item
        state = TS.Name(task.state)
        if query.state and state != query.state:
            return False
        if query.framework and framework_id != query.framework:
            return False
        if query.agent is not None and task.agent_id != query.agent:
            return False
        dynamic = state.lower()
    elif listing == "offers" and query.agent is not None and item.agent_id != query.agent:
        return False
    if not query.q:
        return True
    return query.q in dynamic or query.q in texts.of(st, listing, item, now)


def page(st: MasterState, query: Query, now: float, texts: SearchText) -> dict[str, Any]:
    """One page of a list: `{<listing>: [...], total, offset, limit, next_offset, now}`. Only
    the items on the page are turned into views."""
    found = items(st, query.listing)
    every = len(found)
    if query.q or query.state or query.framework or query.agent is not None:
        found = [i for i in found if _matches(st, i, query, now, texts)]
        texts.prune(every)
    total = len(found)
    end = query.offset + query.limit
    build = ITEM_VIEWS[query.listing]
    return {query.listing: [item_json(build(st, i, now)) for i in found[query.offset:end]],
            "total": total, "offset": query.offset, "limit": query.limit,
            "next_offset": end if end < total else None, "now": now}


def summary(st: MasterState) -> dict[str, Any]:
    """Counts for the dashboard's header: agents by state, frameworks, tasks by state, offers."""
    agents: dict[str, int] = {}
    for a in st.agents.values():
        name = STATE_NAMES.get(a.state, "?")
        agents[name] = agents.get(name, 0) + 1
    tasks: dict[str, int] = {}
    connected = sum(fw.conn is not None for fw in st.frameworks.values())
    for fw in list(st.frameworks.values()) + list(st.removed_frameworks):
        for t in list(fw.tasks.values()) + list(fw.completed.values()):
            name = TS.Name(t.state)
            tasks[name] = tasks.get(name, 0) + 1
    return {"agents": agents, "agents_total": len(st.agents),
            "frameworks": len(st.frameworks), "frameworks_connected": connected,
            "tasks": tasks, "tasks_total": sum(tasks.values()), "offers": len(st.offers)}


def _find_task(st: MasterState, task_id: str, framework: str) -> Task:
    found = []
    for fw in list(st.frameworks.values()) + list(st.removed_frameworks):
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
    """An output as JSON: its bytes (`base64`), `text` too if they are printable UTF-8, and
    `shown`, what `edgerm run --output auto` prints for them (an 8-byte reading as a number
    even when its bytes happen to be printable)."""
    out: dict[str, Any] = {"time": when, "seq": seq, "topic": topic, "size": len(data),
                           "base64": base64.b64encode(data).decode(),
                           "shown": format_output(data)}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return out
    if all(c.isprintable() or c.isspace() for c in text):
        out["text"] = text
    return out


def task_detail(st: MasterState, task_id: str, framework: str, now: float) -> dict[str, Any]:
    """One task: its `tasks` item plus `history` (state changes, oldest first) and `outputs`
    (the last few), both kept in memory since the master started."""
    task = _find_task(st, task_id, framework)
    view = task_view(st, (task.framework_id, task), now)
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

    texts = SearchText()

    def listing(name: str) -> Callable[[HttpRequest], Any]:
        async def handler(request: HttpRequest) -> HttpResponse:
            query = parse_query(request, name)
            if query.q:
                await texts.warm(source.state, name, source.clock())
            return json_response(page(source.state, query, source.clock(), texts))
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
                                   "page": page(st, query, now, texts)}
            if task_id:
                try:
                    out["task"] = task_detail(st, task_id, task_fw, now)
                except HttpError as e:
                    out["task"] = {"error": e.error, "message": e.message}
            return out

        async def prepare() -> None:
            if query.q:
                await texts.warm(source.state, view, source.clock())

        return HttpResponse(content_type="text/event-stream", stream=lambda: _event_stream(
            source.changes, snapshot, source.clock, prepare))

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
                        clock: Callable[[], float], prepare: Callable[[], Awaitable[None]]
                        ) -> AsyncIterator[bytes]:
    """`event: snapshot` each time what `snapshot()` shows changed (at most one per
    COALESCE_S), a comment line after REFRESH_S without one."""
    last: Any = None
    seen = -1
    while True:
        seen = changes.version
        await prepare()
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
