"""The master's Prometheus metrics (docs/operations.md, "Metrics"): what `/metrics` serves.

Two kinds of numbers, two ways to keep them:

* **Gauges** (agents by state and kind, tasks by state, resources, offers, WebSocket
  connections) are computed when Prometheus scrapes, from the master's own tables, by a custom
  collector (`MasterCollector`): nothing is maintained for them on the hot path, and they can
  never drift from the state they describe.
* **Counters and histograms** of things that happen (calls, heartbeats, refusals, CoAP
  retransmissions and duplicates, call and commit latencies, allocation rounds) are plain ints
  the code that sees them bumps: the core's per-transport counts (`MasterState.calls`, ...),
  the refusal counts of `RefusalLog`, the CoAP endpoint's `stats`, and the shell's
  `Histogram`s here. A `prometheus_client.Histogram.observe` takes a lock and walks its
  buckets (~2 µs); `Histogram.observe` below is one bisect and two additions, so timing every
  heartbeat costs well under the 5 % budget (bench/master_heartbeats.py measures it).

Agents' sensor values are not exported: they are the frameworks' data, not the operator's.
Label values that agents choose (their kind, resource names) are bounded (`MAX_KINDS`,
`KNOWN_AGENT_KINDS`; each agent's kind is worked out once, at registration: `state.agent_kind`)
so that a misbehaving fleet cannot blow up Prometheus's series count.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from edgerm.wire import pb
from edgerm_master.agent_states import STATE_NAMES
from edgerm_master.http_server import HttpApp, HttpError, HttpRequest, HttpResponse
from edgerm_master.state import KNOWN_AGENT_KINDS
from edgerm_master.task_states import TERMINAL

if TYPE_CHECKING:
    from edgerm.coap.message_layer import CoapStats
    from edgerm_master.core import Master

__all__ = ["Histogram", "ShellMetrics", "MasterCollector", "master_registry", "render",
           "add_metrics_route",
           "CONTENT_TYPE", "KNOWN_AGENT_KINDS", "MAX_KINDS",
           "LATENCY_BUCKETS", "COMMIT_BUCKETS", "ALLOCATION_BUCKETS"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds. A call answered inline takes tens of µs; one that waits for a commit, milliseconds.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                  5.0)
ALLOCATION_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)

# Resource kinds exported per metric at most (agents name their devices and custom resources).
MAX_KINDS = 64


_STATE_AND_KIND = attrgetter("state", "kind")


class Histogram:
    """A cumulative-bucket histogram that is cheap to observe (no lock: the master runs in one
    Trio thread) and read by the collector at scrape time."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, i.e. Prometheus's `le` (value <= bound).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs ending with +Inf, as Prometheus wants them."""
        out = []
        total = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            total += n
            out.append((_float_str(bound), float(total)))
        out.append(("+Inf", float(total + self.counts[-1])))
        return out


def _float_str(x: float) -> str:
    return repr(float(x))


class ShellMetrics:
    """What the Trio shell times and counts (the core counts its own in `MasterState`)."""

    __slots__ = ("call_latency", "commit_latency", "allocation", "ws_open")

    def __init__(self) -> None:
        self.call_latency = {"coap": Histogram(LATENCY_BUCKETS),
                             "websocket": Histogram(LATENCY_BUCKETS)}
        self.commit_latency = Histogram(COMMIT_BUCKETS)
        self.allocation = Histogram(ALLOCATION_BUCKETS)
        # Open WebSocket connections by path (/agent, /framework, /state).
        self.ws_open: dict[str, int] = {}

    def ws_opened(self, path: str) -> None:
        self.ws_open[path] = self.ws_open.get(path, 0) + 1

    def ws_closed(self, path: str) -> None:
        self.ws_open[path] = self.ws_open.get(path, 0) - 1


def _bounded(amounts: Mapping[str, float]) -> Iterator[tuple[str, float]]:
    """The first MAX_KINDS kinds by name (cpus, mem_mb, ... sort before device:/scalar:...)."""
    for i, name in enumerate(sorted(amounts, key=lambda k: (":" in k, k))):
        if i >= MAX_KINDS:
            return
        yield name, amounts[name]


class MasterCollector(Collector):
    """Reads the master's state and counters when scraped.

    Args:
        core: the master core (its tables, counters and refusal counts).
        shell: the shell's timings and connection counts (None: a master without a shell).
        coap_stats: returns the CoAP endpoint's counters (None before it serves).
        leading: whether this master leads now (`edgerm_master_leader`; None: always 1).
    """

    def __init__(self, core: Master, shell: ShellMetrics | None = None,
                 coap_stats: Callable[[], tuple[CoapStats, Any] | None] | None = None,
                 leading: Callable[[], bool] | None = None) -> None:
        self.core = core
        self.shell = shell
        self.coap_stats = coap_stats
        self.leading = leading

    def collect(self) -> Iterable[Metric]:
        # 1 on the leader, 0 on a standby (whose other gauges show its warm copy, not the
        # cluster: alert and graph on the leader's series, `edgerm_master_leader == 1`).
        yield GaugeMetricFamily("edgerm_master_leader", "1 if this master leads (serves), 0 "
                                "if it is a standby.",
                                value=1 if self.leading is None or self.leading() else 0)
        yield from self._agents()
        yield from self._tasks_and_frameworks()
        yield from self._resources()
        yield from self._counters()
        if self.shell is not None:
            yield from self._shell(self.shell)
        if self.coap_stats is not None:
            stats = self.coap_stats()
            if stats is not None:
                yield from self._coap(*stats)

    # ------------------------------------------------------------------------- gauges

    def _agents(self) -> Iterator[Metric]:
        # (map + attrgetter + Counter: the whole loop runs in C.)
        counts = Counter(map(_STATE_AND_KIND, self.core.state.agents.values()))
        g = GaugeMetricFamily("edgerm_agents", "Agents known to the master, by state and kind.",
                              labels=["state", "kind"])
        for state, name in STATE_NAMES.items():  # every state, 0 included: queries see 0
            if not any(k[0] == state for k in counts):
                g.add_metric([name, ""], 0)
        for (state, kind), n in sorted(counts.items()):
            g.add_metric([STATE_NAMES.get(state, "?"), kind], n)
        yield g

    def _tasks_and_frameworks(self) -> Iterator[Metric]:
        st = self.core.state
        counts: dict[int, int] = {}
        connected = 0
        for fw in st.frameworks.values():
            if fw.conn is not None:
                connected += 1
            for table in (fw.tasks, fw.completed):
                for task in table.values():
                    counts[task.state] = counts.get(task.state, 0) + 1
        g = GaugeMetricFamily("edgerm_tasks", "Tasks the master knows (active, and the recent "
                              "ended ones it keeps), by state.", labels=["state"])
        for state, n in sorted(counts.items()):
            g.add_metric([_task_state_name(state)], n)
        yield g
        f = GaugeMetricFamily("edgerm_frameworks", "Frameworks, by whether one of their "
                              "connections is subscribed.", labels=["connected"])
        f.add_metric(["true"], connected)
        f.add_metric(["false"], len(st.frameworks) - connected)
        yield f
        yield GaugeMetricFamily("edgerm_offers", "Outstanding offers.", value=len(st.offers))

    def _resources(self) -> Iterator[Metric]:
        st = self.core.state
        alloc = st.allocator
        capacity = alloc.total_quantities()
        allocated: dict[str, float] = {}
        for fid in alloc.frameworks():
            for kind, x in alloc.allocated_quantities(fid).items():
                allocated[kind] = allocated.get(kind, 0.0) + x
        # The allocator holds offered and launched resources alike. Launched tasks are few
        # next to agents (offers are up to one per agent): sum them, and offered is the rest.
        used: dict[str, float] = {}
        for fw in st.frameworks.values():
            for task in fw.tasks.values():
                if task.state not in TERMINAL:
                    for kind, x in task.res.quantities().items():
                        used[kind] = used.get(kind, 0.0) + x
        offered = {k: round(x - used.get(k, 0.0), 6) for k, x in allocated.items()}
        offered = {k: x for k, x in offered.items() if x > 0}
        used = {k: round(x, 6) for k, x in used.items()}
        for name, doc, amounts in (
            ("edgerm_resources_capacity", "Resources of the active agents, by kind (ports: "
             "a count; device:NAME: units).", capacity),
            ("edgerm_resources_offered", "Resources in outstanding offers, by kind.", offered),
            ("edgerm_resources_used", "Resources held by launched tasks, by kind.", used),
        ):
            g = GaugeMetricFamily(name, doc, labels=["kind"])
            for kind, x in _bounded(amounts):
                g.add_metric([kind], x)
            yield g

    # ------------------------------------------------------------------------- counters

    def _counters(self) -> Iterator[Metric]:
        st = self.core.state
        c = CounterMetricFamily("edgerm_agent_calls", "Agent calls received (every kind, "
                                "refused ones too), by transport.", labels=["transport"])
        for transport, n in _transports(st.calls, st.fast_heartbeats):
            c.add_metric([transport], n)
        yield c
        c = CounterMetricFamily("edgerm_agent_heartbeats", "Authentic heartbeats accepted, by "
                                "transport.", labels=["transport"])
        for transport, n in _transports(st.heartbeats, st.fast_heartbeats):
            c.add_metric([transport], n)
        yield c
        c = CounterMetricFamily("edgerm_framework_calls", "Framework calls received.",
                                labels=["transport"])
        c.add_metric(["websocket"], st.stats["framework_calls"])
        yield c
        c = CounterMetricFamily("edgerm_refusals", "Calls refused (and bad datagrams dropped), "
                                "by subject and reason (the error code).",
                                labels=["subject", "reason"])
        for (subject, reason), n in sorted(st.refusal_log.counts.items()):
            c.add_metric([subject, reason], n)
        yield c
        for key, doc in (("tasks_launched", "Tasks launched."),
                         ("offers_made", "Offers made."),
                         ("updates_ignored", "Task status updates ignored (stale or unknown)."),
                         ("outputs_dropped", "Task outputs dropped (over a task's limit).")):
            yield CounterMetricFamily("edgerm_" + key, doc, value=st.stats.get(key, 0))

    def _shell(self, shell: ShellMetrics) -> Iterator[Metric]:
        h = HistogramMetricFamily(
            "edgerm_agent_call_duration_seconds", "From an agent call reaching the master's "
            "handler to its answer being ready (waiting for its commit included), by transport.",
            labels=["transport"])
        for transport, hist in sorted(shell.call_latency.items()):
            h.add_metric([transport], hist.buckets(), hist.sum)
        yield h
        for name, doc, hist in (
            ("edgerm_store_commit_duration_seconds", "One store transaction (a batch of "
             "records), from hand-over to durable.", shell.commit_latency),
            ("edgerm_allocation_round_duration_seconds", "One allocation round (DRF over every "
             "agent with free resources).", shell.allocation),
        ):
            h = HistogramMetricFamily(name, doc)
            h.add_metric([], hist.buckets(), hist.sum)
            yield h
        g = GaugeMetricFamily("edgerm_websocket_connections", "Open WebSocket connections, by "
                              "path.", labels=["path"])
        for path in ("/agent", "/framework", "/state"):
            g.add_metric([path], shell.ws_open.get(path, 0))
        yield g

    def _coap(self, stats: CoapStats, shell_stats: Any) -> Iterator[Metric]:
        for key, doc in (
            ("received", "CoAP datagrams received."),
            ("retransmissions", "CoAP messages of the master's (notifications, separate "
             "responses) sent again for want of an ACK."),
            ("duplicates", "CoAP requests received again and answered from the dedup cache "
             "(dedup hits)."),
            ("malformed", "CoAP datagrams dropped as malformed."),
            ("gave_up", "CoAP messages of the master's never acknowledged."),
        ):
            yield CounterMetricFamily("edgerm_coap_" + key, doc, value=getattr(stats, key))
        yield CounterMetricFamily(
            "edgerm_coap_overloaded", "CoAP requests answered 5.03 (queue full or over the "
            "peer's quota).", value=shell_stats.overloaded + shell_stats.displaced)


def _transports(*counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """The sums by transport: both transports, 0 included (so rate() has a series from the
    start), and any other."""
    out = {"coap": 0, "websocket": 0}
    for c in counts:
        for transport, n in c.items():
            out[transport] = out.get(transport, 0) + n
    return sorted(out.items())


def _task_state_name(state: int) -> str:
    try:
        return str(pb.TaskState.Name(state))  # type: ignore[arg-type]
    except ValueError:
        return str(state)


def master_registry(collector: MasterCollector) -> CollectorRegistry:
    """A registry with the master's collector only (no process or GC metrics of the default
    registry: one master per process, and those would cost every scrape)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of `registry` (serve with `CONTENT_TYPE`)."""
    return generate_latest(registry)


def add_metrics_route(app: HttpApp, text: Callable[[], bytes | None]) -> None:
    """Serve `GET /metrics` (no token: Prometheus scrapes it; it holds counts, no names or
    data) with what `text()` renders; when it gives None (metrics off) a 404 that says so."""

    async def metrics(request: HttpRequest) -> HttpResponse:
        body = text()
        if body is None:
            raise HttpError(404, "metrics_off", "this master runs with metrics off "
                            "(--no-metrics or metrics = false): start it without to scrape it")
        return HttpResponse(200, body, CONTENT_TYPE)

    app.route("/metrics", metrics, auth=False)
