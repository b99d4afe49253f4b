"""The master core's state: the tables every part of the core reads and writes, and the few
primitives by which they emit (records, messages, timers). No logic of any one job lives here;
`agents`, `commands`, `frameworks`, `tasks`, `offers`, `uploads`, `recovery` and `view` are
functions over one `MasterState` (as aioquic's connection parts share one `QuicConnection`).

In-between states are explicit (Mesos's `Slaves` sets): an agent recovered from the store is
`synced=False` until it re-registers (the master kept only the seq of its last registration, so
it trusts no call but a signed Register with a seq past that one); a framework being torn down
is `removing` until its last task is terminal.

Memory: one `Agent` (slots, small ints, the encoded registration) per agent; tasks, commands and
offers exist only while they do. No per-agent protobuf message is kept.
"""

from __future__ import annotations

import heapq
import math
import os
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from edgerm.resources import Res
from edgerm.wire import Limits, pb, token_key
from edgerm_master import records as rec
from edgerm_master.agent_states import AGENT_ACTIVE
from edgerm_master.allocator import Allocator
from edgerm_master.config import MasterConfig
from edgerm_master.events import Outgoing, ToFramework
from edgerm_master.logs import DeclineWatch, RefusalLog

__all__ = ["MasterState", "Agent", "Task", "TaskJournal", "journal_of", "Framework", "Offer",
           "ModuleInfo",
           "T_AGENT_CHECK", "T_AGENT_LOST", "T_OFFER", "T_FAILOVER", "T_RETRY", "T_MODULE",
           "T_RELEASE"]

# Timer kinds: the heap holds (deadline, kind, key); `Master.handle_timer` dispatches on kind.
T_AGENT_CHECK = 1   # key: agent id; UNREACHABLE if silent since
T_AGENT_LOST = 2    # key: agent id; LOST if still UNREACHABLE
T_OFFER = 3         # key: offer id; rescinded if still outstanding
T_FAILOVER = 4      # key: framework id; removed if still disconnected
T_RETRY = 5         # key: framework id; unacknowledged updates re-sent
T_MODULE = 6        # key: module sha256; removed if still unreferenced
T_RELEASE = 7       # key: framework id; outputs surely delivered are forgotten

# The smallest allocation gap: a burst of events triggers one round, not one per event.
ALLOC_MIN_GAP_S = 0.02
# Distinct inventories shared between agents (`MasterState.inventory`) before the cache resets.
_INVENTORIES_KEPT = 4096

class Agent:
    __slots__ = (
        "agent_id", "secret", "info", "total", "executors", "max_payload", "state",
        "synced", "seq", "last_seen", "unreachable_since", "update_ack", "command_ack",
        "next_command", "next_task", "commands", "sent", "tasks", "pushable", "transport",
        "rereg_cid", "kind", "oscore",
    )

    def __init__(self, agent_id: int, secret: bytes, info: bytes, reg: pb.Register,
                 total: Res) -> None:
        self.agent_id = agent_id
        self.secret = secret
        self.info = info                      # encoded pb.Register (no token, no tasks)
        self.total = total
        self.executors = executor_mask(reg.executors)
        self.max_payload = reg.max_payload or 0
        self.state = AGENT_ACTIVE
        self.synced = True
        self.seq = 0
        self.last_seen = 0.0
        self.unreachable_since = 0.0
        self.update_ack = 0
        self.command_ack = 0
        self.next_command = 1
        self.next_task = 1
        self.commands: dict[int, bytes] | None = None   # unacknowledged, encoded, by id
        self.sent: dict[int, float] | None = None       # when each last went out
        self.tasks: dict[int, Task] | None = None            # non-terminal, by number
        self.pushable = False
        self.transport = ""
        self.rereg_cid = 0
        self.kind = agent_kind(reg)               # for the metrics' `kind` label
        # The master's OSCORE context for this agent (edgerm.agent_oscore.LinkContext),
        # derived from `secret` on its first protected call (oscore_calls.context).
        self.oscore: Any = None


class Task:
    __slots__ = (
        "framework_id", "task_id", "agent_id", "number", "spec", "res", "state", "prev_state",
        "reason", "message", "exit_code", "launch_cid", "updates", "outputs", "output_seq",
        "outputs_dropped", "module", "told", "journal",
    )

    def __init__(self, framework_id: str, task_id: str, agent_id: int, number: int, spec: bytes,
                 res: Res, state: int) -> None:
        self.framework_id = framework_id
        self.task_id = task_id
        self.agent_id = agent_id
        self.number = number
        self.spec = spec                      # encoded pb.TaskSpec
        self.res = res
        self.state = state
        self.prev_state = 0
        self.reason = 0
        self.message = ""
        self.exit_code = 0
        self.launch_cid = 0
        self.updates: deque[pb.TaskStatus] | None = None  # unacknowledged, oldest first
        # Outputs to re-send after a reconnect or restart, oldest first, each with when it was
        # last sent on the framework's current connection (None: not yet). Durable rows.
        self.outputs: deque[tuple[pb.TaskOutput, float | None]] | None = None
        self.output_seq = 0
        self.outputs_dropped = 0
        self.module: bytes | None = None
        # The state its framework was last told (memory only): a silent return from
        # UNREACHABLE followed by UNREACHABLE again must not tell UNREACHABLE twice.
        self.told = 0
        # What the operator's view shows of its past (memory only, not recovered after a
        # restart): see `TaskJournal`.
        self.journal: TaskJournal | None = None


# Kept per task for the operator's view (HTTP API, dashboard): its last state changes and its
# last outputs. Bounded, so a chatty task costs the same as a quiet one.
JOURNAL_STATES = 16
JOURNAL_OUTPUTS = 5


class TaskJournal:
    """A task's recent past for operators: `states` (time, state, reason, message) oldest
    first, and `outputs` (time, seq, topic, data), the last few it published. Short lists, not
    deques: a deque with a maxlen costs ~600 bytes even empty, and the master keeps thousands
    of tasks."""

    __slots__ = ("states", "outputs")

    def __init__(self) -> None:
        self.states: list[tuple[float, int, int, str]] = []
        self.outputs: list[tuple[float, int, str, bytes]] = []

    def add_state(self, now: float, state: int, reason: int, message: str) -> None:
        self.states.append((now, state, reason, message))
        if len(self.states) > JOURNAL_STATES:
            del self.states[0]

    def add_output(self, now: float, seq: int, topic: str, data: bytes) -> None:
        self.outputs.append((now, seq, topic, data))
        if len(self.outputs) > JOURNAL_OUTPUTS:
            del self.outputs[0]


def journal_of(task: Task) -> TaskJournal:
    if task.journal is None:
        task.journal = TaskJournal()
    return task.journal


class Framework:
    __slots__ = (
        "framework_id", "name", "role", "weight", "failover_s", "conn", "disconnected_at",
        "removing", "tasks", "completed", "offers", "pending", "retry_at", "suppressed",
        "secret_digest", "outputs_held", "release_at",
    )

    def __init__(self, framework_id: str, name: str, role: str, weight: float,
                 failover_s: float, secret_digest: bytes) -> None:
        self.framework_id = framework_id
        # SHA-256 of the secret handed out in its first Subscribed; a re-subscription must
        # present the secret. Empty (a store from before secrets): nobody can re-subscribe.
        self.secret_digest = secret_digest
        self.name = name
        self.role = role
        self.weight = weight
        self.failover_s = failover_s
        self.conn: int | None = None
        self.disconnected_at = 0.0
        self.removing = False
        self.tasks: dict[str, Task] = {}        # every task not yet forgotten
        self.completed: dict[str, Task] = {}    # terminal and acknowledged, the newest kept
        self.offers: set[str] = set()
        self.pending: set[str] = set()          # task ids with unacknowledged updates
        self.retry_at = 0.0
        self.outputs_held: set[str] = set()     # task ids with outputs kept for re-sending
        self.release_at = 0.0
        self.suppressed = False


class Offer:
    __slots__ = ("offer_id", "framework_id", "agent_id", "res", "expires")

    def __init__(self, offer_id: str, framework_id: str, agent_id: int, res: Res,
                 expires: float) -> None:
        self.offer_id = offer_id
        self.framework_id = framework_id
        self.agent_id = agent_id
        self.res = res
        self.expires = expires


class ModuleInfo:
    __slots__ = ("size", "fmt", "name", "refs", "idle_since")

    def __init__(self, size: int, fmt: int, name: str, idle_since: float) -> None:
        self.size = size
        self.fmt = fmt
        self.name = name
        self.refs = 0
        self.idle_since = idle_since


# The agent kinds the metrics' `kind` label takes (from the agent's `os` attribute, up to a '-':
# the Linux agent sends "linux-<release>", the MicroPython agent "micropython", the Zephyr agent
# "zephyr"); any other value is "other", none "unknown": agents cannot mint label values.
KNOWN_AGENT_KINDS = {k: k for k in ("linux", "micropython", "zephyr", "darwin", "freebsd",
                                    "windows")}


def agent_kind(reg: pb.Register) -> str:
    """What kind of agent registered `reg` (see KNOWN_AGENT_KINDS)."""
    for attr in reg.attributes:
        if attr.name == "os" and attr.WhichOneof("value") == "text":
            return KNOWN_AGENT_KINDS.get(attr.text.split("-", 1)[0].lower(), "other")
    return "unknown"


def executor_mask(executors: Iterable[int]) -> int:
    mask = 0
    for e in executors:
        if 0 < e < 32:
            mask |= 1 << e
    return mask


# --------------------------------------------------------------------------------------------
# The shared state


@dataclass(slots=True, eq=False)
class MasterState:
    """Every table of the master core, its pending outputs and its counters.

    Args:
        config: settings (`MasterConfig`).
        random_bytes: the source of secrets and ids (`os.urandom`; tests pass a seeded one).
    """

    config: MasterConfig = field(default_factory=MasterConfig)
    random_bytes: Callable[[int], bytes] = os.urandom
    allocator: Allocator = field(init=False)
    agents: dict[int, Agent] = field(default_factory=dict)
    frameworks: dict[str, Framework] = field(default_factory=dict)
    # Removed frameworks, newest last, for the operator's view of their tasks (view.py).
    removed_frameworks: deque[Framework] = field(default_factory=deque)
    conns: dict[int, str] = field(default_factory=dict)     # framework connection -> its id
    offers: dict[str, Offer] = field(default_factory=dict)
    offers_by_agent: dict[int, set[str]] = field(default_factory=dict)
    modules: dict[bytes, ModuleInfo] = field(default_factory=dict)
    module_sizes: dict[bytes, int] = field(default_factory=dict)
    modules_total: int = 0
    epoch: int = 1
    next_agent_id: int = 1
    offer_seq: int = 0
    # (deadline, kind, key): keys of one kind share a type, so ties compare fine.
    timers: list[tuple[float, int, Any]] = field(default_factory=list)
    # Agents of one fleet report identical inventories: one Res per distinct one (`inventory`).
    inventories: dict[bytes, Res] = field(default_factory=dict)
    records: list[rec.Record] = field(default_factory=list)
    outbox: list[Outgoing] = field(default_factory=list)
    # Agents with commands to push on their open channel when the outbox is taken.
    push: set[int] = field(default_factory=set)
    # The time of the input being handled (the `now` of the call or timer).
    now: float = 0.0
    # The address of the caller being handled (for log lines only; "" when unknown).
    peer: str = ""
    refusal_log: RefusalLog = field(default_factory=RefusalLog)
    decline_watch: DeclineWatch = field(default_factory=DeclineWatch)
    alloc_due: float = 0.0
    last_alloc: float = -math.inf
    records_emitted: int = 0
    stats: dict[str, int] = field(default_factory=lambda: {
        "agent_calls": 0, "agent_errors": 0, "framework_calls": 0, "framework_errors": 0,
        "updates_ignored": 0, "outputs_dropped": 0, "offers_made": 0, "tasks_launched": 0,
    })
    # Agent calls by transport ("coap", "websocket") for the metrics (metrics.py), counted so
    # that the fast path does one dict increment: `fast_heartbeats` are the steady heartbeats
    # it answered, `calls` every other call, `heartbeats` the heartbeats the general path
    # accepted. All calls: calls + fast_heartbeats; all heartbeats: heartbeats + fast_heartbeats.
    calls: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    heartbeats: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    fast_heartbeats: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    # The keys that sign first registrations; the tokens themselves never cross the link.
    token_keys: list[tuple[str, bytes]] = field(init=False)
    # Nonces of recent first registrations: a recorded one replayed is refused (bounded;
    # memory only, so a replay from before a master restart makes an agent that can sign
    # nothing and is LOST after unreachable_after_s).
    reg_nonces: dict[bytes, None] = field(default_factory=dict)
    agent_limits: Limits = field(init=False)
    framework_limits: Limits = field(init=False)
    # First registrations on CoAP not yet confirmed by a valid OSCORE request (key
    # confirmation: agents.promote_pending), oldest first, each with its deadline: not
    # persisted, not offered, not shown (docs/protocol.md "The first registration ...").
    pending: dict[int, tuple[Agent, float]] = field(default_factory=dict)
    # True while an OSCORE-protected agent call is handled: its replies carry no seq and no
    # mac (OSCORE protects them; commands.reply, error_reply, uploads.module_chunk).
    oscore_call: bool = False
    # The master's OSCORE Sender Sequence Number (one for every agent context: it never
    # repeats) and the bound written ahead of it in the store (oscore_calls.next_master_seq);
    # 0: not leading yet (recovery sets both from the stored bound).
    master_seq: int = 0
    master_seq_bound: int = 0

    def __post_init__(self) -> None:
        cfg = self.config
        self.allocator = Allocator(refuse_default_s=cfg.refuse_default_s)
        self.token_keys = [(token, token_key(token)) for token in cfg.agent_tokens if token]
        self.agent_limits = Limits(max_input=cfg.agent_message_max,
                                   max_bytes=cfg.agent_message_max,
                                   max_string=cfg.agent_message_max)
        self.framework_limits = Limits(
            max_input=cfg.framework_message_max,
            max_bytes=max(cfg.framework_message_max, cfg.module_max_bytes + 1),
            max_string=64 * 1024,
            max_items=max(4096, cfg.max_tasks_per_accept))

    # --- the primitives every part emits through

    def record(self, item: rec.Record) -> None:
        """Persist, then act: `item` joins the batch committed before anything sent after it."""
        self.records.append(item)
        self.records_emitted += 1

    def send(self, fw: Framework, event: pb.FrameworkEvent) -> None:
        """`event` to the framework's connection, if it has one (after the commit)."""
        if fw.conn is not None:
            self.outbox.append(ToFramework(fw.conn, event))

    def timer(self, deadline: float, kind: int, key: Any) -> None:
        heapq.heappush(self.timers, (deadline, kind, key))

    def alloc_soon(self, now: float) -> None:
        """An allocation round is due (no sooner than `ALLOC_MIN_GAP_S` after the last)."""
        due = max(now, self.last_alloc + ALLOC_MIN_GAP_S)
        if due < self.alloc_due:
            self.alloc_due = due

    def inventory(self, resources: pb.Resources) -> Res:
        """Res.from_pb, shared between agents with the same inventory. Raises ResourceError."""
        key = resources.SerializeToString(deterministic=True)
        res = self.inventories.get(key)
        if res is None:
            res = Res.from_pb(resources)
            if len(self.inventories) >= _INVENTORIES_KEPT:
                self.inventories.clear()
            self.inventories[key] = res
        return res

    def weight(self, role: str) -> float:
        return float(self.config.role_weights.get(role, 1.0))
