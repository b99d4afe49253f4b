"""The master as a plain object: decoded calls and the clock in; replies, pushed messages, timers
and durable records out. No sockets, no sleeping, no clock reads (sans-IO, like h11).

Inputs (the shell calls these; `now` is seconds since the epoch):
  `agent_call(data, now, transport)` -> `AgentResult` (the reply to send back),
  `agent_channel(agent_id, open)` (an Observe on `c` or an agent WebSocket opened/closed),
  `framework_call(conn, data, now)`, `framework_disconnected(conn, now)`,
  `cluster_state(data, now)`, `handle_timer(now)`, `recover(snapshot, now)`.
Outputs (the shell pulls these):
  `take_records()` -> records to commit in one transaction;
  `take_outbox()` -> `ToFramework` / `ToAgent` / `CloseFramework` to send *after* that commit;
  `get_timer()` -> the next deadline at which to call `handle_timer`.

Persist, then act: every state change emits its record into the same ordered batch as the
messages that tell anyone about it. The shell commits everything `take_records()` returned before
it sends anything `take_outbox()` returned after it, and answers a call only once every record
emitted before the answer is durable. So nothing a framework or an agent was told can be lost by
a crash; what was not yet told may be lost and is recomputed from what is durable.

In-between states are explicit (Mesos's `Slaves` sets): an agent recovered from the store is
`synced=False` until it re-registers (the master kept only the seq of its last registration, so
it trusts no call but a signed Register with a seq past that one); a framework being torn down
is `removing` until its last task is terminal.

Memory: one `Agent` (slots, small ints, the encoded registration) per agent; tasks, commands and
offers exist only while they do. No per-agent protobuf message is kept.

Logging: the core logs what happens (registrations, refusals, subscriptions, task and agent state
changes) through the stdlib `logging` module, which does no I/O of its own: the handler the
process configures does (docs/master.md, "Logs"). Every line carries its facts as `extra=` fields
(`event`, `agent_id`, `framework_id`, `task_id`, `peer`, ...) for structured output. The steady
heartbeat path logs nothing; refusals are rate-limited per subject (`_RefusalLog`), never dropped
without a count.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import logging
import math
import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from edgerm.resources import Res, ResourceError
from edgerm.wire import (
    NONCE_LEN,
    PROTOCOL_VERSION,
    DecodeError,
    Limits,
    compute_mac,
    decode,
    derive_secret,
    encode,
    pb,
    sign,
    token_key,
    verify,
)
from edgerm_master import records as rec
from edgerm_master.allocator import Allocator
from edgerm_master.defaults import MasterConfig
from edgerm_master.fastpath import parse_steady_heartbeat_untrusted
from edgerm_master.modules import ModuleError, check_module
from edgerm_master.replies import build_reply, launch_command
from edgerm_master.store import AGENT_ACTIVE, AGENT_LOST, AGENT_UNREACHABLE, Snapshot
from edgerm_master.task_states import (
    ACTIVE,
    TERMINAL,
    IllegalTransition,
    check_transition,
    state_name,
)
from edgerm_master.validation import (
    CallError,
    check_refuse_seconds,
    check_task_info,
    check_text,
    executor_of,
    module_of,
    tokens_match,
)

__all__ = [
    "Master", "AgentResult", "ModuleRead", "ToFramework", "ToAgent", "CloseFramework",
    "Agent", "Task", "Framework", "Offer", "VERSION",
]

VERSION = "edgerm-master 0.1.0"

E = pb.ErrorCode
TS = pb.TaskState
R = pb.Reason

ACTIVE_STATE, UNREACHABLE_STATE, LOST_STATE = AGENT_ACTIVE, AGENT_UNREACHABLE, AGENT_LOST
_AGENT_STATE_NAMES = {AGENT_ACTIVE: "active", AGENT_UNREACHABLE: "unreachable", AGENT_LOST: "lost"}

# What an agent may report in a StatusUpdate; the rest are the master's to decide.
AGENT_REPORTABLE = frozenset({TS.STARTING, TS.RUNNING, TS.FINISHED, TS.FAILED, TS.KILLED,
                              TS.ERROR})

# Timer kinds in the heap (deadline, tie, kind, key).
# Bytes of the secret a framework gets at creation (it proves the framework id is its own).
FRAMEWORK_SECRET_LEN = 16

_T_AGENT_CHECK = 1
_T_AGENT_LOST = 2
_T_OFFER = 3
_T_FAILOVER = 4
_T_RETRY = 5
_T_MODULE = 6
_T_RELEASE = 7

# A reply's framing around its commands (seq, mac, update_ack and the array head); the rest of
# the agent's max_payload is the commands' budget.
_REPLY_OVERHEAD = 32
# The smallest allocation gap: a burst of events triggers one round, not one per event.
_ALLOC_MIN_GAP_S = 0.02


# Loggers by subject, so an operator can turn one up or down.
log_agents = logging.getLogger("edgerm.master.agents")
log_frameworks = logging.getLogger("edgerm.master.frameworks")
log_tasks = logging.getLogger("edgerm.master.tasks")
log_operator = logging.getLogger("edgerm.master.operator")

# Refusals logged per subject (agents, frameworks, operator) within one window; more are counted
# and summed up in one line when the window ends. A fleet with a wrong token or a flood of forged
# calls cannot fill the disk, and the operator still sees how many there were and the last reason.
_REFUSALS_PER_WINDOW = 10
_REFUSAL_WINDOW_S = 10.0


class _RefusalLog:
    """Rate-limited refusal lines (sans-IO: time is the `now` of the call being refused)."""

    __slots__ = ("_window_start", "_logged", "_suppressed", "_last")

    def __init__(self) -> None:
        self._window_start: dict[str, float] = {}
        self._logged: dict[str, int] = {}
        self._suppressed: dict[str, int] = {}
        self._last: dict[str, str] = {}

    def log(self, logger: logging.Logger, level: int, now: float, text: str,
            extra: dict[str, Any]) -> None:
        key = logger.name
        if now - self._window_start.get(key, -math.inf) >= _REFUSAL_WINDOW_S:
            self.flush(now, key)
            self._window_start[key] = now
            self._logged[key] = 0
        if self._logged[key] < _REFUSALS_PER_WINDOW:
            self._logged[key] += 1
            logger.log(level, "%s", text, extra=extra)
        else:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            self._last[key] = text

    def flush(self, now: float, only: str | None = None) -> None:
        """Sum up the refusals not logged in windows that have ended (or `only`'s)."""
        for key in [only] if only is not None else list(self._suppressed):
            n = self._suppressed.get(key, 0)
            if not n:
                continue
            if only is None and now - self._window_start.get(key, -math.inf) < _REFUSAL_WINDOW_S:
                continue
            logging.getLogger(key).warning(
                "%d more refusals in %g s not logged one by one; the last: %s", n,
                _REFUSAL_WINDOW_S, self._last[key],
                extra={"event": "refusals_suppressed", "count": n})
            del self._suppressed[key]


# --------------------------------------------------------------------------------------------
# Outputs


@dataclass(slots=True)
class ToFramework:
    """Send `event` on framework connection `conn` (after the commit)."""
    conn: int
    event: pb.FrameworkEvent


@dataclass(slots=True)
class CloseFramework:
    """Close framework connection `conn` (after sending what precedes this)."""
    conn: int
    reason: str
    # The connection never subscribed: its first call was refused (a policy violation).
    refused: bool = False


@dataclass(slots=True)
class ToAgent:
    """Push this signed `AgentReply` (seq 0) on the agent's Observe or WebSocket."""
    agent_id: int
    data: bytes


@dataclass(slots=True)
class ModuleRead:
    """The shell reads `length` bytes at `offset` of a module and answers with a ModuleChunk."""
    sha256: bytes
    offset: int
    length: int
    total: int
    seq: int


@dataclass(slots=True)
class AgentResult:
    """The answer to one AgentCall."""
    data: bytes               # encoded AgentReply; signed when the caller authenticated
    error: int = 0            # a pb.ErrorCode; 0 when the call succeeded
    agent_id: int = 0         # the authenticated agent, 0 if none
    module: ModuleRead | None = None


# --------------------------------------------------------------------------------------------
# State


class Agent:
    __slots__ = (
        "agent_id", "secret", "info", "total", "executors", "max_payload", "state",
        "synced", "seq", "last_seen", "unreachable_since", "update_ack", "command_ack",
        "next_command", "next_task", "commands", "sent", "tasks", "pushable", "transport",
        "rereg_cid",
    )

    def __init__(self, agent_id: int, secret: bytes, info: bytes, reg: pb.Register,
                 total: Res) -> None:
        self.agent_id = agent_id
        self.secret = secret
        self.info = info                      # encoded pb.Register (no token, no tasks)
        self.total = total
        self.executors = _executor_mask(reg.executors)
        self.max_payload = reg.max_payload or 0
        self.state = ACTIVE_STATE
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


class Task:
    __slots__ = (
        "framework_id", "task_id", "agent_id", "number", "spec", "res", "state", "prev_state",
        "reason", "message", "exit_code", "launch_cid", "updates", "outputs", "output_seq",
        "outputs_dropped", "module", "told",
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


def _executor_mask(executors: Iterable[int]) -> int:
    mask = 0
    for e in executors:
        if 0 < e < 32:
            mask |= 1 << e
    return mask


def _code_name(code: int) -> str:
    try:
        return str(E.Name(code))
    except ValueError:
        return str(code)


def _reason_name(reason: int) -> str:
    try:
        return str(R.Name(reason))
    except ValueError:
        return str(reason)


def _agent_name(agent: Agent) -> str:
    """The agent's name (decoded from its registration: for log lines on rare events only)."""
    try:
        return decode(pb.Register, agent.info).name
    except DecodeError:
        return "?"


def _error_reply(code: int, text: str, seq: int = 0) -> pb.AgentReply:
    return pb.AgentReply(seq=seq, error=pb.Error(code=code, message=text))  # type: ignore[arg-type]


_REG_NONCES_KEPT = 4096

_BAD_AGENT = ("unknown agent, bad mac or stale seq; an agent the master does not know registers "
              "afresh with the agent token")


# --------------------------------------------------------------------------------------------
# The core


class Master:
    """The EdgeRM master's state machine. See the module docstring for the I/O contract.

    Args:
        config: settings (`MasterConfig`).
        random_bytes: the source of secrets and ids (`os.urandom`; tests pass a seeded one).
    """

    def __init__(self, config: MasterConfig | None = None,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self.config = cfg = config or MasterConfig()
        self.random_bytes = random_bytes
        self.allocator = Allocator(refuse_default_s=cfg.refuse_default_s)
        self.agents: dict[int, Agent] = {}
        self.frameworks: dict[str, Framework] = {}
        self.conns: dict[int, str] = {}
        self.offers: dict[str, Offer] = {}
        self.offers_by_agent: dict[int, set[str]] = {}
        self.modules: dict[bytes, ModuleInfo] = {}
        self.module_sizes: dict[bytes, int] = {}
        self.modules_total = 0
        self.epoch = 1
        self.next_agent_id = 1
        self._offer_seq = 0
        # (deadline, kind, key): keys of one kind share a type, so ties compare fine.
        self._timers: list[tuple[float, int, Any]] = []
        # Agents of one fleet report identical inventories: share one Res per distinct one.
        self._inventories: dict[bytes, Res] = {}
        self._records: list[rec.Record] = []
        self._outbox: list[ToFramework | ToAgent | CloseFramework] = []
        self._push: set[int] = set()
        self._now = 0.0
        # The address of the caller being handled (for log lines only; "" when unknown).
        self._peer = ""
        self._refusal_log = _RefusalLog()
        self._alloc_due = 0.0
        self._last_alloc = -math.inf
        self.records_emitted = 0
        self.stats: dict[str, int] = {
            "agent_calls": 0, "agent_errors": 0, "framework_calls": 0, "framework_errors": 0,
            "updates_ignored": 0, "outputs_dropped": 0, "offers_made": 0, "tasks_launched": 0,
        }
        # The keys that sign first registrations; the tokens themselves never cross the link.
        self._token_keys = [(token, token_key(token)) for token in cfg.agent_tokens if token]
        # Nonces of recent first registrations: a recorded one replayed is refused (bounded;
        # memory only, so a replay from before a master restart makes an agent that can sign
        # nothing and is LOST after unreachable_after_s).
        self._reg_nonces: dict[bytes, None] = {}
        self._agent_limits = Limits(max_input=cfg.agent_message_max,
                                    max_bytes=cfg.agent_message_max,
                                    max_string=cfg.agent_message_max)
        self._framework_limits = Limits(
            max_input=cfg.framework_message_max,
            max_bytes=max(cfg.framework_message_max, cfg.module_max_bytes + 1),
            max_string=64 * 1024,
            max_items=max(4096, cfg.max_tasks_per_accept))

    # ----------------------------------------------------------------------------- outputs

    def has_output(self) -> bool:
        return bool(self._records or self._outbox or self._push)

    def take_records(self) -> list[rec.Record]:
        out, self._records = self._records, []
        return out

    def take_outbox(self) -> list[ToFramework | ToAgent | CloseFramework]:
        for aid in sorted(self._push):
            agent = self.agents.get(aid)
            if agent is None or not agent.pushable or not agent.commands:
                continue
            commands = self._commands_for(agent)
            if commands:
                self._outbox.append(ToAgent(aid, build_reply(
                    agent.secret, 0, agent.update_ack, commands)))
        self._push.clear()
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float:
        """The next time `handle_timer` has work (never later than the next allocation)."""
        due = self._alloc_due
        if self._timers and self._timers[0][0] < due:
            due = self._timers[0][0]
        return due

    def _record(self, r: rec.Record) -> None:
        self._records.append(r)
        self.records_emitted += 1

    def _send(self, fw: Framework, event: pb.FrameworkEvent) -> None:
        if fw.conn is not None:
            self._outbox.append(ToFramework(fw.conn, event))

    def _timer(self, deadline: float, kind: int, key: Any) -> None:
        heapq.heappush(self._timers, (deadline, kind, key))

    def _inventory(self, resources: pb.Resources) -> Res:
        """Res.from_pb, shared between agents with the same inventory. Raises ResourceError."""
        key = resources.SerializeToString(deterministic=True)
        res = self._inventories.get(key)
        if res is None:
            res = Res.from_pb(resources)
            if len(self._inventories) >= 4096:
                self._inventories.clear()
            self._inventories[key] = res
        return res

    def _alloc_soon(self, now: float) -> None:
        due = max(now, self._last_alloc + _ALLOC_MIN_GAP_S)
        if due < self._alloc_due:
            self._alloc_due = due

    # ----------------------------------------------------------------------------- recovery

    def recover(self, snap: Snapshot, now: float) -> None:
        """Rebuild the state from the store. Agents are unsynced until they re-register,
        frameworks disconnected until they re-subscribe (their failover clocks start now)."""
        cfg = self.config
        self.epoch = snap.epoch
        self.next_agent_id = max(self.next_agent_id, snap.next_agent_id)
        for m in snap.modules:
            self.modules[m.sha256] = ModuleInfo(m.size, m.fmt, m.name, now)
            self.module_sizes[m.sha256] = m.size
            self.modules_total += m.size
        for f in snap.frameworks:
            fw = Framework(f.framework_id, f.name, f.role, self._weight(f.role), f.failover_s,
                           f.secret_digest)
            fw.disconnected_at = now
            fw.removing = f.removing
            self.frameworks[fw.framework_id] = fw
            self.allocator.add_framework(fw.framework_id, fw.role, fw.weight)
            self.allocator.set_framework_active(fw.framework_id, False)
            self._timer(now + fw.failover_s, _T_FAILOVER, fw.framework_id)
        for a in snap.agents:
            reg = decode(pb.Register, a.info)
            agent = Agent(a.agent_id, a.secret, a.info, reg, self._inventory(reg.resources))
            agent.state = a.state
            agent.synced = False
            agent.last_seen = now
            agent.unreachable_since = a.unreachable_since
            agent.update_ack = a.update_ack
            agent.command_ack = a.command_ack
            agent.next_command = a.next_command
            agent.next_task = a.next_task
            agent.seq = a.seq  # the last registration's: a replayed one is refused (_reregister)
            self.agents[agent.agent_id] = agent
            self.next_agent_id = max(self.next_agent_id, agent.agent_id + 1)
            if agent.state != LOST_STATE:
                self.allocator.add_agent(agent.agent_id, agent.total)
                self.allocator.set_agent_active(agent.agent_id, False)
            if agent.state == ACTIVE_STATE:
                self._timer(now + cfg.unreachable_after_s, _T_AGENT_CHECK, agent.agent_id)
            elif agent.state == UNREACHABLE_STATE:
                self._timer(agent.unreachable_since + cfg.lost_after_s, _T_AGENT_LOST,
                            agent.agent_id)
        for aid, cid, body in snap.commands:
            holder = self.agents.get(aid)
            if holder is None:
                continue
            if holder.commands is None:
                holder.commands = {}
            holder.commands[cid] = body
            if decode(pb.Command, body).WhichOneof("command") == "reregister":
                holder.rereg_cid = cid
        for t in snap.tasks:
            owner = self.frameworks.get(t.framework_id)
            host = self.agents.get(t.agent_id)
            if owner is None or host is None:
                continue
            fw, agent = owner, host
            res = Res.from_pb(decode(pb.Resources, t.resources))
            task = Task(t.framework_id, t.task_id, t.agent_id, t.number, t.spec, res, t.state)
            task.prev_state = t.prev_state
            task.reason = t.reason
            task.message = t.message
            task.exit_code = t.exit_code
            task.output_seq = t.output_seq
            fw.tasks[task.task_id] = task
            if t.state in TERMINAL:
                continue
            if agent.tasks is None:
                agent.tasks = {}
            agent.tasks[task.number] = task
            mod = module_of(decode(pb.TaskSpec, t.spec))
            if mod is not None and mod[0] in self.modules:
                task.module = mod[0]
                self.modules[mod[0]].refs += 1
            if agent.state != LOST_STATE:
                self.allocator.allocate(fw.framework_id, agent.agent_id, res)
            for cid, body in (agent.commands or {}).items():
                cmd = decode(pb.Command, body)
                if cmd.WhichOneof("command") == "launch" and cmd.launch.task == task.number:
                    task.launch_cid = cid
        for u in snap.updates:
            owner = self.frameworks.get(u.framework_id)
            known = owner.tasks.get(u.task_id) if owner else None
            if owner is None or known is None:
                continue
            if known.updates is None:
                known.updates = deque()
            st = decode(pb.TaskStatus, u.body)
            known.updates.append(st)
            known.told = st.state
            owner.pending.add(known.task_id)
        for o in snap.outputs:
            owner = self.frameworks.get(o.framework_id)
            known = owner.tasks.get(o.task_id) if owner else None
            if owner is None or known is None or owner.removing:
                continue
            if known.outputs is None:
                known.outputs = deque()
            known.outputs.append((pb.TaskOutput(task_id=o.task_id, seq=o.seq, data=o.data,
                                                topic=o.topic), None))
            known.output_seq = max(known.output_seq, o.seq)
            owner.outputs_held.add(known.task_id)
        for fw in list(self.frameworks.values()):
            for task in list(fw.tasks.values()):
                if task.state in TERMINAL and not task.updates:
                    self._forget_task(fw, task)
            if fw.removing:
                self._finish_removal(fw)
        for sha, info in self.modules.items():
            if info.refs == 0:
                self._timer(now + cfg.module_grace_s, _T_MODULE, sha)
        self._alloc_due = now

    # ----------------------------------------------------------------------------- timers

    def handle_timer(self, now: float) -> None:
        cfg = self.config
        self._now = now
        self._refusal_log.flush(now)
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, kind, key = heapq.heappop(timers)
            if kind == _T_AGENT_CHECK:
                agent = self.agents.get(key)
                if agent is None or agent.state != ACTIVE_STATE:
                    continue
                deadline = agent.last_seen + cfg.unreachable_after_s
                if now >= deadline:
                    self._mark_unreachable(agent, now)
                else:
                    self._timer(deadline, _T_AGENT_CHECK, key)
            elif kind == _T_AGENT_LOST:
                agent = self.agents.get(key)
                if (agent is not None and agent.state == UNREACHABLE_STATE
                        and now >= agent.unreachable_since + cfg.lost_after_s):
                    self._mark_lost(agent, now)
            elif kind == _T_OFFER:
                offer = self.offers.get(key)
                if offer is not None and now >= offer.expires:
                    self._remove_offer(offer, rescind=True)
            elif kind == _T_FAILOVER:
                fw = self.frameworks.get(key)
                if (fw is not None and fw.conn is None and not fw.removing
                        and now >= fw.disconnected_at + fw.failover_s):
                    log_frameworks.info(
                        "framework %s %r removed: it did not come back within its failover "
                        "timeout (%g s)", fw.framework_id, fw.name, fw.failover_s,
                        extra={"event": "framework_removed", "framework_id": fw.framework_id,
                               "why": "failover_timeout"})
                    self._remove_framework(fw, now)
            elif kind == _T_RETRY:
                fw = self.frameworks.get(key)
                if fw is None:
                    continue
                fw.retry_at = 0.0
                if fw.conn is not None:
                    for tid in sorted(fw.pending):
                        task = fw.tasks.get(tid)
                        if task is not None and task.updates:
                            self._send(fw, pb.FrameworkEvent(update=task.updates[0]))
                if fw.pending:
                    self._arm_retry(fw, now)
            elif kind == _T_RELEASE:
                fw = self.frameworks.get(key)
                if fw is not None:
                    fw.release_at = 0.0
                    self._release_outputs(fw, now)
            elif kind == _T_MODULE:
                m = self.modules.get(key)
                if m is not None and m.refs == 0 and now >= m.idle_since + cfg.module_grace_s:
                    self._record(rec.RemoveModule(key))
                    del self.modules[key]
                    del self.module_sizes[key]
                    self.modules_total -= m.size
        if now >= self._alloc_due:
            self._last_alloc = now
            self._allocate(now)
            self._alloc_due = now + cfg.allocation_interval_s

    # ----------------------------------------------------------------------------- agents

    def agent_call(self, data: bytes, now: float, transport: str = "coap", peer: str = ""
                   ) -> AgentResult:
        """One AgentCall from the network (untrusted bytes) -> the reply to send back. `peer`
        (the caller's address) only goes into log lines."""
        self.stats["agent_calls"] += 1
        self._now = now
        self._peer = peer
        if len(data) > self.config.agent_message_max:
            return self._agent_error(E.TOO_LARGE, f"AgentCall of {len(data)} bytes is over the "
                                     f"limit of {self.config.agent_message_max}")
        fast = parse_steady_heartbeat_untrusted(data)
        if fast is not None:
            aid, seq, mac, unsigned, ack = fast
            agent = self.agents.get(aid)
            if (agent is not None and agent.synced and agent.state == ACTIVE_STATE
                    and seq > agent.seq
                    and hmac.compare_digest(compute_mac(agent.secret, unsigned), mac)):
                agent.seq = seq
                agent.last_seen = now
                agent.transport = transport
                if ack > agent.command_ack:
                    self._ack_commands(agent, min(ack, agent.next_command - 1))
                return self._reply(agent, seq)
            # Anything unusual about it: the general path decides (and gives the same answer).
        try:
            call = decode(pb.AgentCall, data, self._agent_limits)
        except DecodeError as e:
            return self._agent_error(E.BAD_REQUEST, f"bad AgentCall: {e}")
        kind = call.WhichOneof("call")
        if call.agent_id == 0:
            if kind != "register":
                return self._agent_error(
                    E.UNAUTHENTICATED, "an AgentCall without agent_id must be a Register signed "
                    "with the agent token's key")
            token = self._registration_token(call)
            if token is None:
                return self._agent_error(
                    E.UNAUTHENTICATED, "first registration not signed with an agent token of "
                    "this master: give the agent the token in the master's agent_tokens")
            try:
                return self._first_registration(call.register, token, call.seq, now, transport)
            except CallError as e:
                return self._agent_error(e.code, e.text)
        agent = self.agents.get(call.agent_id)
        if agent is None or not verify(call, agent.secret):
            return self._agent_error(E.UNAUTHENTICATED, _BAD_AGENT)
        try:
            if kind == "register":
                return self._reregister(agent, call.register, call.seq, now, transport)
            if kind is None:
                raise CallError(E.BAD_REQUEST, "AgentCall carries no call (register, heartbeat, "
                                "status, publish or module)")
            if not agent.synced or agent.state == LOST_STATE:
                # The master restarted (no seq baseline) or gave the agent up: only a signed
                # Register is trusted now. Nothing else of this call is applied.
                self._ask_reregister(agent)
                return self._reply(agent, call.seq)
            if call.seq <= agent.seq:
                return self._agent_error(E.UNAUTHENTICATED, _BAD_AGENT, agent, call.seq)
            if kind == "heartbeat":
                self._heartbeat_check(agent, call.heartbeat)
            agent.seq = call.seq
            self._seen(agent, now, transport)
            if kind == "heartbeat":
                self._heartbeat(agent, call.heartbeat, now)
            elif kind == "status":
                self._status(agent, call.status, now)
            elif kind == "publish":
                self._publish(agent, call.publish, now)
            elif kind == "module":
                return self._module_request(agent, call.module, call.seq)
            return self._reply(agent, call.seq)
        except CallError as e:
            return self._agent_error(e.code, e.text, agent, call.seq)

    def _registration_token(self, call: pb.AgentCall) -> str | None:
        """The configured agent token whose key signed this first registration, if any. Every
        key is tried (no early exit) so the time does not tell which one matched."""
        found = None
        for token, key in self._token_keys:
            if verify(call, key):
                found = token
        return found

    def agent_channel(self, agent_id: int, open: bool) -> None:
        """The agent's push channel (CoAP Observe on `c`, or its WebSocket) opened or closed."""
        agent = self.agents.get(agent_id)
        if agent is None:
            return
        agent.pushable = open
        if open and agent.commands:
            self._push.add(agent_id)

    def agent_secret(self, agent_id: int) -> bytes | None:
        agent = self.agents.get(agent_id)
        return agent.secret if agent else None

    def _agent_error(self, code: int, text: str, agent: Agent | None = None,
                     seq: int = 0) -> AgentResult:
        self.stats["agent_errors"] += 1
        who = f"agent {agent.agent_id}" if agent is not None else "an agent"
        self._refusal_log.log(
            log_agents, logging.WARNING, self._now,
            f"refused a call from {who} at {self._peer or '?'}: {_code_name(code)}: {text}",
            {"event": "agent_refused", "agent_id": agent.agent_id if agent else 0,
             "peer": self._peer, "code": _code_name(code)})
        reply = _error_reply(code, text, seq)
        if agent is not None:
            return AgentResult(sign(reply, agent.secret), code, agent.agent_id)
        return AgentResult(encode(reply), code)

    def _reply(self, agent: Agent, seq: int, registered: pb.Registered | None = None
               ) -> AgentResult:
        data = build_reply(agent.secret, seq, agent.update_ack, self._commands_for(agent),
                           encode(registered) if registered is not None else None)
        return AgentResult(data, 0, agent.agent_id)

    def _commands_for(self, agent: Agent) -> list[bytes]:
        """The unacknowledged commands to put in a reply: always a prefix of the queue (the
        agent applies ids in order and skips ids below what it applied, so a later command
        must never travel without the earlier ones), and only when one of them is new or was
        last sent `command_resend_s` ago (a burst of update replies does not repeat them all).
        """
        cmds = agent.commands
        if not cmds:
            return []
        now = self._now
        sent = agent.sent
        if sent is None:
            sent = agent.sent = {}
        gap = self.config.command_resend_s
        for cid in cmds:
            t = sent.get(cid)
            if t is None or now - t >= gap:
                break
        else:
            return []
        budget = (agent.max_payload or self.config.default_max_payload) - _REPLY_OVERHEAD
        out: list[bytes] = []
        used = 0
        for cid, body in cmds.items():
            if out and used + len(body) > budget:
                break
            out.append(body)
            used += len(body)
            sent[cid] = now
        return out

    def _check_register(self, reg: pb.Register) -> Res:
        if reg.protocol_version != PROTOCOL_VERSION:
            raise CallError(E.UNSUPPORTED, f"Register.protocol_version {reg.protocol_version} is "
                            f"not supported; this master speaks {PROTOCOL_VERSION}")
        check_text(reg.name, "Register.name")
        try:
            return self._inventory(reg.resources)
        except ResourceError as e:
            raise CallError(E.BAD_REQUEST, f"Register.resources: {e}") from None

    @staticmethod
    def _info(reg: pb.Register) -> bytes:
        info = pb.Register()
        info.CopyFrom(reg)
        info.ClearField("nonce")
        info.ClearField("tasks")
        info.ClearField("update_next")
        return encode(info)

    def _first_registration(self, reg: pb.Register, token: str, seq: int, now: float,
                            transport: str) -> AgentResult:
        if len(reg.nonce) != NONCE_LEN:
            raise CallError(E.BAD_REQUEST, f"Register.nonce must be {NONCE_LEN} fresh random "
                            f"bytes, not {len(reg.nonce)}")
        if reg.nonce in self._reg_nonces:
            raise CallError(E.UNAUTHENTICATED, "replayed registration (nonce already used): "
                            "an agent registers with a fresh nonce")
        total = self._check_register(reg)
        self._reg_nonces[reg.nonce] = None
        if len(self._reg_nonces) > _REG_NONCES_KEPT:
            del self._reg_nonces[next(iter(self._reg_nonces))]
        aid = self.next_agent_id
        self.next_agent_id += 1
        master_nonce = self.random_bytes(NONCE_LEN)
        secret = derive_secret(token, reg.nonce, master_nonce)
        info = self._info(reg)
        agent = Agent(aid, secret, info, reg, total)
        agent.seq = seq
        agent.last_seen = now
        agent.transport = transport
        self.agents[aid] = agent
        self._record(rec.AdmitAgent(aid, secret, info, now))
        self.allocator.add_agent(aid, total)
        self._timer(now + self.config.unreachable_after_s, _T_AGENT_CHECK, aid)
        self._alloc_soon(now)
        log_agents.info("agent %d %r registered over %s from %s", aid, reg.name, transport,
                        self._peer or "?",
                        extra={"event": "agent_registered", "agent_id": aid,
                               "agent_name": reg.name, "transport": transport,
                               "peer": self._peer})
        return self._reply(agent, seq, self._registered(agent, master_nonce))

    def _registered(self, agent: Agent, master_nonce: bytes = b"") -> pb.Registered:
        cfg = self.config
        return pb.Registered(agent_id=agent.agent_id, nonce=master_nonce,
                             heartbeat_ms=cfg.heartbeat_ms, jitter_ms=cfg.jitter_ms,
                             update_ack=agent.update_ack)

    def _reregister(self, agent: Agent, reg: pb.Register, seq: int, now: float,
                    transport: str) -> AgentResult:
        """A signed Register from a known agent (restart, ReRegister, master restart). Its seq
        must pass every seq seen from the agent (agents persist a bound ahead of their seq, so
        it does after a reboot too): a recorded one replayed, or a heartbeat recorded before the
        agent restarted, would otherwise be accepted again."""
        if seq <= agent.seq:
            raise CallError(E.UNAUTHENTICATED, _BAD_AGENT)
        total = self._check_register(reg)
        reported: dict[int, int] = {}
        for rep in reg.tasks:
            reported[rep.task] = rep.state
        # Checks done; from here on the call is applied.
        aid = agent.agent_id
        was = _AGENT_STATE_NAMES.get(agent.state, "?")
        if not agent.synced:
            was += ", recovered from the store"
        log_agents.info("agent %d %r re-registered over %s from %s (was %s, reports %d tasks)",
                        aid, reg.name, transport, self._peer or "?", was, len(reported),
                        extra={"event": "agent_reregistered", "agent_id": aid,
                               "agent_name": reg.name, "transport": transport,
                               "peer": self._peer, "was": was})
        agent.seq = seq
        self._record(rec.ReregisterAgent(aid, seq))
        agent.synced = True
        agent.last_seen = now
        agent.transport = transport
        info = self._info(reg)
        if info != agent.info:
            agent.info = info
            agent.executors = _executor_mask(reg.executors)
            agent.max_payload = reg.max_payload
            self._record(rec.UpdateAgentInfo(aid, info))
        if agent.rereg_cid and agent.commands and agent.rereg_cid in agent.commands:
            self._drop_command(agent, agent.rereg_cid)
        agent.rereg_cid = 0
        if agent.state == LOST_STATE:
            agent.total = total
            agent.state = ACTIVE_STATE
            self._record(rec.MarkAgentReachable(aid))
            self.allocator.add_agent(aid, total)
            self._timer(now + self.config.unreachable_after_s, _T_AGENT_CHECK, aid)
        else:
            self._set_total(agent, total, now)
            if agent.state == UNREACHABLE_STATE:
                self._mark_reachable(agent, now, reported)
            else:
                self.allocator.set_agent_active(aid, True)
        # Registered.update_ack tells the agent which of its queued updates we already hold; it
        # keeps sending the rest oldest first, so our update_ack never jumps over one.
        # Reconcile the agent's tasks with ours.
        for task in list((agent.tasks or {}).values()):
            state = reported.get(task.number)
            if state is None:
                self._task_missing_on_agent(agent, task, now)
            elif task.state == TS.UNREACHABLE:
                self._restore_task(task, now, reported=state)
        for number, state in reported.items():
            if (agent.tasks is None or number not in agent.tasks) and state not in TERMINAL:
                self._enqueue_kill(agent, number)
        self._alloc_soon(now)
        return self._reply(agent, seq, self._registered(agent))

    def _task_missing_on_agent(self, agent: Agent, task: Task, now: float) -> None:
        """Our non-terminal task is not in the agent's report after its restart."""
        was = task.prev_state if task.state == TS.UNREACHABLE else task.state
        if was == TS.STAGING:
            if task.state == TS.UNREACHABLE:
                self._restore_task(task, now)
            if not (agent.commands and task.launch_cid in agent.commands):
                self._enqueue_launch(agent, task)
        elif was == TS.KILLING:
            self._set_state(task, TS.KILLED, R.KILL_REQUESTED,
                            "the agent restarted while the task was being killed", 0, now)
        else:
            self._set_state(task, TS.FAILED, R.AGENT_RESTARTED,
                            "the agent restarted and does not have the task", 0, now)

    def _ask_reregister(self, agent: Agent) -> None:
        if agent.rereg_cid and agent.commands and agent.rereg_cid in agent.commands:
            return
        agent.rereg_cid = self._enqueue(agent, pb.Command(reregister=pb.ReRegister()),
                                        push=False)

    def _seen(self, agent: Agent, now: float, transport: str) -> None:
        agent.last_seen = now
        agent.transport = transport
        if agent.state == UNREACHABLE_STATE:
            self._mark_reachable(agent, now)

    def _heartbeat_check(self, agent: Agent, hb: pb.Heartbeat) -> None:
        if hb.HasField("resources"):
            try:
                Res.from_pb(hb.resources)
            except ResourceError as e:
                raise CallError(E.BAD_REQUEST, f"Heartbeat.resources: {e}") from None

    def _heartbeat(self, agent: Agent, hb: pb.Heartbeat, now: float) -> None:
        if hb.HasField("resources") or len(hb.attributes):
            info = decode(pb.Register, agent.info)
            if hb.HasField("resources"):
                info.resources.CopyFrom(hb.resources)
                self._set_total(agent, self._inventory(hb.resources), now)
            if len(hb.attributes):
                del info.attributes[:]
                info.attributes.extend(hb.attributes)
            agent.info = encode(info)
            self._record(rec.UpdateAgentInfo(agent.agent_id, agent.info))
        if hb.command_ack > agent.command_ack:
            self._ack_commands(agent, min(hb.command_ack, agent.next_command - 1))

    def _set_total(self, agent: Agent, total: Res, now: float) -> None:
        if total == agent.total:
            return
        # Outstanding offers on the agent are rescinded: they may no longer fit.
        for oid in list(self.offers_by_agent.get(agent.agent_id, ())):
            self._remove_offer(self.offers[oid], rescind=True)
        try:
            self.allocator.update_agent_total(agent.agent_id, total)
        except ResourceError:
            # Its tasks hold more than it now says it has: keep accounting by the old total
            # until they end (the agent enforces its own limits).
            self.stats["overcommitted_agents"] = self.stats.get("overcommitted_agents", 0) + 1
            return
        agent.total = total
        self._alloc_soon(now)

    def _ack_commands(self, agent: Agent, upto: int) -> None:
        if upto <= agent.command_ack:
            return
        agent.command_ack = upto
        if agent.commands:
            for cid in [c for c in agent.commands if c <= upto]:
                del agent.commands[cid]
                if agent.sent:
                    agent.sent.pop(cid, None)
            if not agent.commands:
                agent.commands = agent.sent = None
        self._record(rec.AckCommands(agent.agent_id, upto))

    def _drop_command(self, agent: Agent, cid: int) -> None:
        if agent.commands is not None:
            agent.commands.pop(cid, None)
        if agent.sent is not None:
            agent.sent.pop(cid, None)
        self._record(rec.DropCommand(agent.agent_id, cid))

    def _enqueue(self, agent: Agent, cmd: pb.Command | None, push: bool = True,
                 launch: Task | None = None) -> int:
        cid = agent.next_command
        agent.next_command += 1
        if launch is not None:
            body = launch_command(cid, launch.number, launch.spec)
        else:
            assert cmd is not None
            cmd.id = cid
            body = encode(cmd)
        if agent.commands is None:
            agent.commands = {}
        agent.commands[cid] = body
        self._record(rec.EnqueueCommand(agent.agent_id, cid, body))
        if push and agent.pushable and agent.synced and agent.state == ACTIVE_STATE:
            self._push.add(agent.agent_id)
        return cid

    def _enqueue_launch(self, agent: Agent, task: Task) -> None:
        task.launch_cid = self._enqueue(agent, None, launch=task)

    def _enqueue_kill(self, agent: Agent, number: int) -> None:
        for body in (agent.commands or {}).values():
            cmd = decode(pb.Command, body)
            if cmd.WhichOneof("command") == "kill" and cmd.kill.task == number:
                return
        self._enqueue(agent, pb.Command(kill=pb.Kill(task=number)))

    def _mark_unreachable(self, agent: Agent, now: float) -> None:
        aid = agent.agent_id
        log_agents.warning(
            "agent %d %r is UNREACHABLE: nothing heard for %g s; its %d tasks are UNREACHABLE, "
            "LOST if it stays away %g s", aid, _agent_name(agent), now - agent.last_seen,
            len(agent.tasks or ()), self.config.lost_after_s,
            extra={"event": "agent_unreachable", "agent_id": aid})
        agent.state = UNREACHABLE_STATE
        agent.unreachable_since = now
        self._record(rec.MarkAgentUnreachable(aid, now))
        for oid in list(self.offers_by_agent.get(aid, ())):
            self._remove_offer(self.offers[oid], rescind=True)
        self.allocator.set_agent_active(aid, False)
        for task in list((agent.tasks or {}).values()):
            if task.state == TS.UNREACHABLE:
                continue  # still waiting for the report of its last return (`_mark_reachable`)
            self._set_state(task, TS.UNREACHABLE, R.AGENT_UNREACHABLE,
                            "the agent missed its heartbeats", 0, now, prev=task.state,
                            kind=rec.MarkTaskUnreachable)
        self._timer(now + self.config.lost_after_s, _T_AGENT_LOST, aid)

    def _mark_reachable(self, agent: Agent, now: float,
                        reported: dict[int, int] | None = None) -> None:
        aid = agent.agent_id
        agent.state = ACTIVE_STATE
        agent.unreachable_since = 0.0
        self._record(rec.MarkAgentReachable(aid))
        if agent.synced:
            self.allocator.set_agent_active(aid, True)
        if reported is None:
            # (A re-registration logs itself, saying what the agent was.)
            log_agents.info("agent %d %r is reachable again (over %s from %s)", aid,
                            _agent_name(agent), agent.transport, self._peer or "?",
                            extra={"event": "agent_reachable", "agent_id": aid,
                                   "peer": self._peer})
        if reported is None and any(t.state == TS.UNREACHABLE
                                    for t in (agent.tasks or {}).values()):
            # Heard from, but not told what runs: the agent may have restarted meanwhile (a
            # Linux agent keeps its seq, so its first heartbeat is authentic). Its tasks stay
            # UNREACHABLE until its registration reports them (`_reregister`), so a framework
            # is never told RUNNING for a task the agent no longer has.
            self._ask_reregister(agent)
        self._timer(now + self.config.unreachable_after_s, _T_AGENT_CHECK, aid)
        self._alloc_soon(now)
        if agent.pushable and agent.commands:
            self._push.add(aid)

    def _restore_task(self, task: Task, now: float, reported: int = 0) -> None:
        """UNREACHABLE -> the state before it (rule 3), or what the agent reports running.

        The framework is told only a return to RUNNING that the agent itself reported. A return
        to a state the task is waiting to leave (STAGING, STARTING, KILLING), or to one the
        agent contradicts (it reports an end, whose update follows), is recorded but not
        announced: the agent's next update (STARTING, RUNNING or an end) is legal after
        UNREACHABLE and tells it. So a framework never sees STAGING, nor STARTING or KILLING
        twice, nor RUNNING for a task that has ended.
        """
        target = task.prev_state or TS.RUNNING
        if reported in (TS.STARTING, TS.RUNNING) and target in (TS.STAGING, TS.STARTING):
            target = reported
        announce = target == TS.RUNNING and reported == TS.RUNNING
        self._set_state(task, target, R.REASON_UNSPECIFIED, "the agent is reachable again", 0,
                        now, announce=announce)

    def _mark_lost(self, agent: Agent, now: float) -> None:
        aid = agent.agent_id
        log_agents.warning("agent %d %r is LOST: unreachable for %g s; its %d tasks are LOST",
                           aid, _agent_name(agent), now - agent.unreachable_since,
                           len(agent.tasks or ()),
                           extra={"event": "agent_lost", "agent_id": aid})
        agent.state = LOST_STATE
        self._record(rec.MarkAgentLost(aid))
        for task in list((agent.tasks or {}).values()):
            self._set_state(task, TS.LOST, R.AGENT_LOST,
                            f"the agent did not come back within {self.config.lost_after_s:g} s",
                            0, now, kind=rec.MarkTaskLost)
        for cid in list(agent.commands or ()):
            self._record(rec.DropCommand(aid, cid))
        agent.commands = agent.sent = None
        agent.rereg_cid = 0
        self.allocator.remove_agent(aid)

    def _status(self, agent: Agent, su: pb.StatusUpdate, now: float) -> None:
        if su.update_id <= agent.update_ack:
            return  # already applied: the reply re-acknowledges it
        if su.update_id != agent.update_ack + 1:
            return  # a gap: the agent sends the missing one first
        agent.update_ack = su.update_id
        self._record(rec.AckAgentUpdates(agent.agent_id, su.update_id))
        task = agent.tasks.get(su.task) if agent.tasks else None
        if su.state not in AGENT_REPORTABLE:
            self.stats["updates_ignored"] += 1
            return
        if task is None:
            # A task we hold as terminal or never had: make sure it does not run.
            if su.state not in TERMINAL:
                self._enqueue_kill(agent, su.task)
            self.stats["updates_ignored"] += 1
            return
        try:
            check_transition(task.state, su.state)
        except IllegalTransition:
            self.stats["updates_ignored"] += 1
            return
        message = su.message[: self.config.max_message_text]
        self._set_state(task, su.state, su.reason, message, su.exit_code, now)

    def _publish(self, agent: Agent, pu: pb.Publish, now: float) -> None:
        if pu.update_id <= agent.update_ack or pu.update_id != agent.update_ack + 1:
            return
        agent.update_ack = pu.update_id
        self._record(rec.AckAgentUpdates(agent.agent_id, pu.update_id))
        task = agent.tasks.get(pu.task) if agent.tasks else None
        if task is None:
            self.stats["updates_ignored"] += 1
            return
        fw = self.frameworks.get(task.framework_id)
        if fw is None or fw.removing:
            return
        task.output_seq += 1
        out = pb.TaskOutput(task_id=task.task_id, seq=task.output_seq, data=pu.data,
                            topic=pu.topic)
        # Persist, then act: the output is durable with the update_ack that accepts it, and
        # kept until the framework has surely had it (`_release_outputs`), so neither a crash
        # nor a dropped connection loses it, and its number goes on after a restart.
        self._record(rec.AddOutput(fw.framework_id, task.task_id, out.seq, out.data, out.topic))
        sent: float | None = None
        if fw.conn is not None:
            self._send(fw, pb.FrameworkEvent(output=out))
            sent = now
            self._arm_release(fw, now)
        if task.outputs is None:
            task.outputs = deque()
        task.outputs.append((out, sent))
        fw.outputs_held.add(task.task_id)
        if len(task.outputs) > self.config.outputs_kept:
            old, old_sent = task.outputs.popleft()
            self._record(rec.ReleaseOutputs(fw.framework_id, task.task_id, old.seq))
            if old_sent is None:
                # Never sent: a gap in the task's seq, which the SDK reports.
                task.outputs_dropped += 1
                self.stats["outputs_dropped"] += 1

    def _arm_release(self, fw: Framework, now: float) -> None:
        if fw.release_at == 0.0:
            fw.release_at = now + self.config.status_retry_s
            self._timer(fw.release_at, _T_RELEASE, fw.framework_id)

    def _release_outputs(self, fw: Framework, now: float) -> None:
        """Forget the outputs sent at least `status_retry_s` ago on the framework's current
        connection: it stayed open that long after them, so they arrived. (Outputs carry no
        acknowledgement; a connection that drops sooner gets them again when the framework
        re-subscribes, and the SDK drops repeats by seq.) A task's outputs also go when the
        task is forgotten: its end was acknowledged, and it was sent after them."""
        if fw.conn is None:
            return  # re-sent, and the timer re-armed, when the framework subscribes again
        horizon = now - self.config.status_retry_s
        more = False
        for tid in list(fw.outputs_held):
            task = fw.tasks.get(tid)
            held = task.outputs if task is not None else None
            upto = 0
            while held:
                sent_at = held[0][1]
                if sent_at is None or sent_at > horizon:
                    break
                upto = held.popleft()[0].seq
            if upto:
                self._record(rec.ReleaseOutputs(fw.framework_id, tid, upto))
            if held:
                more = True
            else:
                if task is not None:
                    task.outputs = None
                fw.outputs_held.discard(tid)
        if more:
            self._arm_release(fw, now)

    def _module_request(self, agent: Agent, mr: pb.ModuleRequest, seq: int) -> AgentResult:
        m = self.modules.get(mr.sha256)
        if m is None:
            raise CallError(E.NOT_FOUND, f"no module {mr.sha256.hex()}")
        if mr.offset > m.size:
            raise CallError(E.BAD_REQUEST, f"offset {mr.offset} beyond the module's {m.size} "
                            "bytes")
        limit = 64 * 1024
        length = min(mr.length or limit, limit, m.size - mr.offset)
        result = self._reply(agent, seq)
        result.module = ModuleRead(mr.sha256, mr.offset, length, m.size, seq)
        return result

    def module_chunk(self, agent_id: int, read: ModuleRead, data: bytes) -> bytes:
        """The shell read the bytes of `read`: the signed reply that carries them."""
        agent = self.agents[agent_id]
        reply = pb.AgentReply(seq=read.seq, update_ack=agent.update_ack,
                              module=pb.ModuleChunk(sha256=read.sha256, offset=read.offset,
                                                    total=read.total, data=data))
        return sign(reply, agent.secret)

    def module_size(self, sha256: bytes) -> int | None:
        m = self.modules.get(sha256)
        return m.size if m else None

    # ----------------------------------------------------------------------------- tasks

    def _set_state(self, task: Task, state: int, reason: int, message: str, exit_code: int,
                   now: float, prev: int = 0,
                   kind: type[rec.UpdateTaskState] = rec.UpdateTaskState,
                   announce: bool = True) -> None:
        """Move a task (the table must allow it), durably; tell its framework unless
        `announce` is false (a silent return from UNREACHABLE, see `_restore_task`)."""
        check_transition(task.state, state)
        if log_tasks.isEnabledFor(logging.INFO):  # (the arguments cost more than the check)
            log_tasks.info("task %r of %s on agent %d: %s -> %s%s%s", task.task_id,
                           task.framework_id, task.agent_id, state_name(task.state),
                           state_name(state), f" ({_reason_name(reason)})" if reason else "",
                           f": {message}" if message else "",
                           extra={"event": "task_state", "framework_id": task.framework_id,
                                  "task_id": task.task_id, "agent_id": task.agent_id,
                                  "state": state_name(state), "reason": _reason_name(reason)})
        task.state = state
        task.prev_state = prev
        task.reason = reason
        task.message = message
        task.exit_code = exit_code
        self._record(kind(task.framework_id, task.task_id, state, prev, reason, message,
                          exit_code))
        if announce and state != task.told:
            self._status_update(task, now)
        if state in TERMINAL:
            self._task_terminal(task, now)

    def _status_update(self, task: Task, now: float) -> None:
        fw = self.frameworks.get(task.framework_id)
        if fw is None or fw.removing:
            return
        task.told = task.state
        st = pb.TaskStatus(task_id=task.task_id, state=task.state, reason=task.reason,  # type: ignore[arg-type]
                           message=task.message, agent_id=task.agent_id,
                           uuid=self.random_bytes(16), timestamp=now, exit_code=task.exit_code)
        self._record(rec.AddStatusUpdate(fw.framework_id, task.task_id, st.uuid, encode(st)))
        if task.updates is None:
            task.updates = deque()
        task.updates.append(st)
        fw.pending.add(task.task_id)
        if len(task.updates) == 1:
            self._send(fw, pb.FrameworkEvent(update=st))
        self._arm_retry(fw, now)

    def _arm_retry(self, fw: Framework, now: float) -> None:
        if fw.retry_at == 0.0:
            fw.retry_at = now + self.config.status_retry_s
            self._timer(fw.retry_at, _T_RETRY, fw.framework_id)

    def _task_terminal(self, task: Task, now: float) -> None:
        agent = self.agents.get(task.agent_id)
        if agent is not None:
            if agent.tasks is not None:
                agent.tasks.pop(task.number, None)
            if agent.commands and task.launch_cid in agent.commands:
                self._drop_command(agent, task.launch_cid)
        self.allocator.recover(task.framework_id, task.agent_id, task.res)
        if task.module is not None:
            m = self.modules.get(task.module)
            if m is not None:
                m.refs -= 1
                if m.refs == 0:
                    m.idle_since = now
                    self._timer(now + self.config.module_grace_s, _T_MODULE, task.module)
            task.module = None
        self._alloc_soon(now)
        fw = self.frameworks.get(task.framework_id)
        if fw is None:
            return
        if fw.removing:
            self._forget_task(fw, task)
            self._finish_removal(fw)

    def _forget_task(self, fw: Framework, task: Task) -> None:
        fw.tasks.pop(task.task_id, None)
        fw.pending.discard(task.task_id)
        self._record(rec.RemoveTask(fw.framework_id, task.task_id))
        task.updates = None
        task.outputs = None
        fw.outputs_held.discard(task.task_id)
        fw.completed[task.task_id] = task
        while len(fw.completed) > self.config.completed_tasks_kept:
            del fw.completed[next(iter(fw.completed))]

    def _kill_task(self, task: Task, now: float, removing: bool = False) -> None:
        agent = self.agents.get(task.agent_id)
        assert agent is not None
        queued = bool(agent.commands) and task.launch_cid in agent.commands  # type: ignore[operator]
        was = task.prev_state if task.state == TS.UNREACHABLE else task.state
        if was == TS.STAGING and queued:
            # The agent never got the launch: cancel it (the prototype sent both and ran it).
            if removing:
                self._set_state(task, TS.DROPPED, R.FRAMEWORK_REMOVED,
                                "the framework was removed before the launch was delivered", 0,
                                now)
            else:
                self._set_state(task, TS.KILLED, R.KILLED_BEFORE_LAUNCH,
                                "killed before the agent got the launch", 0, now)
            return
        if task.state == TS.KILLING or (task.state == TS.UNREACHABLE
                                        and task.prev_state == TS.KILLING):
            return
        if task.state == TS.UNREACHABLE:
            # Stays UNREACHABLE; the kill waits in the agent's queue and the task returns as
            # KILLING if the agent comes back.
            task.prev_state = TS.KILLING
            self._record(rec.UpdateTaskState(task.framework_id, task.task_id, task.state,
                                             TS.KILLING, task.reason, task.message,
                                             task.exit_code))
        else:
            reason = R.FRAMEWORK_REMOVED if removing else R.KILL_REQUESTED
            self._set_state(task, TS.KILLING, reason, "", 0, now)
        self._enqueue_kill(agent, task.number)

    # ----------------------------------------------------------------------------- frameworks

    def framework_call(self, conn: int, data: bytes, now: float, peer: str = "") -> None:
        """One FrameworkCall (untrusted bytes) on connection `conn`; answers go to the outbox.
        `peer` (the connection's address) only goes into log lines."""
        self.stats["framework_calls"] += 1
        self._now = now
        self._peer = peer
        if conn in self.conns:
            self._framework_call(conn, data, now)
            return
        # A connection's first call must subscribe it; anything else (garbage, another call, a
        # refused Subscribe) is answered and the connection closed, so an unauthenticated peer
        # cannot keep it open by sending more.
        self._framework_call(conn, data, now)
        if conn not in self.conns:
            self._outbox.append(CloseFramework(conn, "the first call must be a valid Subscribe",
                                               refused=True))

    def _framework_call(self, conn: int, data: bytes, now: float) -> None:
        if len(data) > self.config.framework_message_max:
            self._fw_error(conn, 0, E.TOO_LARGE, f"FrameworkCall of {len(data)} bytes is over the"
                           f" limit of {self.config.framework_message_max}")
            return
        try:
            call = decode(pb.FrameworkCall, data, self._framework_limits)
        except DecodeError as e:
            self._fw_error(conn, 0, E.BAD_REQUEST, f"bad FrameworkCall: {e}")
            return
        kind = call.WhichOneof("call")
        try:
            if kind == "subscribe":
                self._subscribe(conn, call, now)
                return
            fid = self.conns.get(conn)
            if fid is None:
                self._fw_error(conn, call.call_id, E.UNAUTHENTICATED,
                               "subscribe first: the first call on a connection is Subscribe")
                return
            if call.framework_id != fid:
                raise CallError(E.FORBIDDEN, "framework_id does not match the framework "
                                "subscribed on this connection")
            fw = self.frameworks[fid]
            if kind is None:
                raise CallError(E.BAD_REQUEST, "FrameworkCall carries no call")
            handler = self._FRAMEWORK_CALLS[kind]
            handler(self, fw, call, now)
        except CallError as e:
            self._fw_error(conn, call.call_id, e.code, e.text)

    def framework_disconnected(self, conn: int, now: float) -> None:
        fid = self.conns.pop(conn, None)
        if fid is None:
            return
        fw = self.frameworks.get(fid)
        if fw is None or fw.conn != conn:
            return
        fw.conn = None
        fw.disconnected_at = now
        log_frameworks.info(
            "framework %s %r disconnected%s", fid, fw.name,
            "" if fw.removing else f"; it keeps its tasks for {fw.failover_s:g} s (failover)",
            extra={"event": "framework_disconnected", "framework_id": fid})
        self.allocator.set_framework_active(fid, False)
        for oid in list(fw.offers):
            self._remove_offer(self.offers[oid], rescind=False)
        if not fw.removing:
            self._timer(now + fw.failover_s, _T_FAILOVER, fid)

    def _fw_error(self, conn: int, call_id: int, code: int, text: str) -> None:
        self.stats["framework_errors"] += 1
        fid = self.conns.get(conn, "")
        who = f"framework {fid}" if fid else f"framework connection {conn}"
        # A refused login is the operator's business; a refused call mostly a race the
        # framework handles (an offer that just expired).
        level = logging.WARNING if code in (E.UNAUTHENTICATED, E.FORBIDDEN) else logging.INFO
        self._refusal_log.log(
            log_frameworks, level, self._now,
            f"refused a call from {who} at {self._peer or '?'}: {_code_name(code)}: {text}",
            {"event": "framework_refused", "framework_id": fid, "peer": self._peer,
             "code": _code_name(code)})
        self._outbox.append(ToFramework(conn, pb.FrameworkEvent(
            call_id=call_id, error=pb.Error(code=code, message=text))))  # type: ignore[arg-type]

    def _weight(self, role: str) -> float:
        return float(self.config.role_weights.get(role, 1.0))

    def _subscribe(self, conn: int, call: pb.FrameworkCall, now: float) -> None:
        cfg = self.config
        sub = call.subscribe
        if not tokens_match(sub.token, cfg.framework_tokens):
            self._fw_error(conn, call.call_id, E.UNAUTHENTICATED,
                           ("wrong framework token" if sub.token else "no framework token "
                            "given") + ": subscribe with one of the master's framework_tokens")
            return
        check_text(sub.name, "Subscribe.name")
        check_text(sub.role, "Subscribe.role")
        failover = sub.failover_timeout_s
        if math.isnan(failover) or failover < 0:
            raise CallError(E.BAD_REQUEST, "Subscribe.failover_timeout_s must be >= 0")
        failover = min(failover or cfg.failover_default_s, cfg.failover_max_s)
        role = sub.role or "*"
        current = self.conns.get(conn)
        if current is not None and current != call.framework_id:
            raise CallError(E.CONFLICT, f"this connection is already subscribed as {current}")
        if call.framework_id:
            fw = self.frameworks.get(call.framework_id)
            if fw is None or fw.removing:
                self._fw_error(conn, call.call_id, E.NOT_FOUND,
                               f"no framework {call.framework_id!r} (removed, or its failover "
                               "timeout passed): subscribe without framework_id to start anew")
                return
            # The id is public (listed in the state view); the secret is what makes it yours.
            # Checked before anything about the framework is touched or told.
            if not fw.secret_digest or not hmac.compare_digest(
                    fw.secret_digest, hashlib.sha256(sub.framework_secret).digest()):
                self._fw_error(conn, call.call_id, E.FORBIDDEN,
                               f"framework {call.framework_id!r} belongs to whoever it gave its "
                               "framework_secret: Subscribe.framework_secret is missing or wrong")
                return
            if sub.role and role != fw.role:
                raise CallError(E.BAD_REQUEST, f"the framework's role is {fw.role!r}; it cannot "
                                "change on failover")
            if fw.conn is not None and fw.conn != conn:
                self._outbox.append(CloseFramework(fw.conn, "another connection subscribed as "
                                                   "this framework"))
                self.conns.pop(fw.conn, None)
            if fw.name != sub.name or fw.failover_s != failover:
                fw.name = sub.name
                fw.failover_s = failover
                self._record(rec.UpdateFramework(fw.framework_id, fw.name, failover))
            secret = b""
        else:
            fid = "fw-" + self.random_bytes(8).hex()
            while fid in self.frameworks:
                fid = "fw-" + self.random_bytes(8).hex()
            secret = self.random_bytes(FRAMEWORK_SECRET_LEN)
            digest = hashlib.sha256(secret).digest()
            fw = Framework(fid, sub.name, role, self._weight(role), failover, digest)
            self.frameworks[fid] = fw
            self._record(rec.AddFramework(fid, sub.name, role, failover, digest))
            self.allocator.add_framework(fid, role, fw.weight)
        fw.conn = conn
        self.conns[conn] = fw.framework_id
        log_frameworks.info("framework %s %r (role %s) %s from %s", fw.framework_id, fw.name,
                            fw.role, "re-subscribed" if call.framework_id else "subscribed",
                            self._peer or "?",
                            extra={"event": "framework_subscribed",
                                   "framework_id": fw.framework_id, "framework_name": fw.name,
                                   "role": fw.role, "failover": bool(call.framework_id),
                                   "peer": self._peer})
        self.allocator.set_framework_active(fw.framework_id, True)
        self._send(fw, pb.FrameworkEvent(call_id=call.call_id, subscribed=pb.Subscribed(
            framework_id=fw.framework_id, heartbeat_interval_s=cfg.framework_heartbeat_s,
            weight=fw.weight, framework_secret=secret)))
        # Resume delivery. First every output kept for re-sending (the framework may not have
        # had it; the SDK drops repeats by seq), then the head of every task's unacknowledged
        # updates: a task's end then always arrives after its outputs, so acknowledging the
        # end proves the outputs arrived (see `_forget_task`).
        for tid in sorted(fw.outputs_held):
            task = fw.tasks.get(tid)
            if task is None or not task.outputs:
                continue
            task.outputs = deque((out, now) for out, _ in task.outputs)
            for out, _ in task.outputs:
                self._send(fw, pb.FrameworkEvent(output=out))
        if fw.outputs_held:
            self._arm_release(fw, now)
        for tid in sorted(fw.pending):
            task = fw.tasks.get(tid)
            if task is not None and task.updates:
                self._send(fw, pb.FrameworkEvent(update=task.updates[0]))
        if fw.pending:
            self._arm_retry(fw, now)
        self._alloc_soon(now)

    def _accept(self, fw: Framework, call: pb.FrameworkCall, now: float) -> None:
        acc = call.accept
        if not acc.offer_ids:
            raise CallError(E.BAD_REQUEST, "Accept.offer_ids is empty")
        if len(acc.launch) > self.config.max_tasks_per_accept:
            raise CallError(E.TOO_LARGE, f"{len(acc.launch)} tasks in one accept, limit "
                            f"{self.config.max_tasks_per_accept}")
        refuse = check_refuse_seconds(acc.refuse_seconds, "Accept.refuse_seconds")
        offers: list[Offer] = []
        for oid in acc.offer_ids:
            offer = self.offers.get(oid)
            # Someone else's offer looks exactly like an unknown one: nothing leaks.
            if offer is None or offer.framework_id != fw.framework_id:
                raise CallError(E.INVALID_OFFER, f"offer {oid!r} is unknown, expired, rescinded "
                                "or already used")
            if offer in offers:
                raise CallError(E.BAD_REQUEST, f"offer {oid!r} is named twice")
            if now >= offer.expires:
                raise CallError(E.INVALID_OFFER, f"offer {oid!r} has expired")
            offers.append(offer)
        aid = offers[0].agent_id
        if any(o.agent_id != aid for o in offers):
            raise CallError(E.INVALID_OFFER, "the offers of one accept must all be on one agent")
        agent = self.agents[aid]
        if agent.state != ACTIVE_STATE or not agent.synced:
            raise CallError(E.INVALID_OFFER, f"agent {aid} is not active")
        offered = offers[0].res
        for o in offers[1:]:
            offered = offered + o.res
        claims: list[Res] = []
        needed = Res.EMPTY
        ids: set[str] = set()
        for ti in acc.launch:
            check_task_info(ti, agent.executors, self.module_sizes)
            if ti.task_id in ids or ti.task_id in fw.tasks or ti.task_id in fw.completed:
                raise CallError(E.CONFLICT, f"task id {ti.task_id!r} is already used by this "
                                "framework")
            ids.add(ti.task_id)
            try:
                claim = Res.claim_from_pb(ti.spec.resources, agent.total)
            except ResourceError as e:
                raise CallError(E.BAD_REQUEST, f"task {ti.task_id!r}: resources: {e}") from None
            claims.append(claim)
            needed = needed + claim
        if not offered.contains(needed):
            raise CallError(E.INVALID_OFFER, "the tasks need more than the offers hold: "
                            + "; ".join(offered.missing(needed)))
        # Valid: from here on nothing raises.
        for o in offers:
            self._drop_offer(o)
        rest = offered - needed
        if not rest.is_empty():
            self.allocator.recover(fw.framework_id, aid, rest)
        if refuse > 0:
            self.allocator.filter(fw.framework_id, aid, now + refuse)
        for ti, claim in zip(acc.launch, claims, strict=True):
            self._launch(fw, agent, ti, claim)
        self._send(fw, pb.FrameworkEvent(call_id=call.call_id, accepted=pb.Accepted(
            task_ids=[ti.task_id for ti in acc.launch])))
        self._alloc_soon(now)

    def _launch(self, fw: Framework, agent: Agent, ti: pb.TaskInfo, claim: Res) -> None:
        number = agent.next_task
        agent.next_task += 1
        spec = ti.spec
        mod = module_of(spec)
        if mod is not None:
            size = self.module_sizes[mod[0]]
            if spec.WhichOneof("kind") == "wasm":
                spec.wasm.size = size
            else:
                spec.micropython.size = size
        spec_bytes = encode(spec)
        task = Task(fw.framework_id, ti.task_id, agent.agent_id, number, spec_bytes, claim,
                    TS.STAGING)
        self._record(rec.AddTask(fw.framework_id, ti.task_id, agent.agent_id, number,
                                 spec_bytes, encode(claim.to_pb()), TS.STAGING))
        fw.tasks[ti.task_id] = task
        if agent.tasks is None:
            agent.tasks = {}
        agent.tasks[number] = task
        if mod is not None:
            task.module = mod[0]
            self.modules[mod[0]].refs += 1
        task.launch_cid = self._enqueue(agent, None, launch=task)
        self.stats["tasks_launched"] += 1
        if log_tasks.isEnabledFor(logging.INFO):
            log_tasks.info("task %r of %s launched on agent %d: STAGING", ti.task_id,
                           fw.framework_id, agent.agent_id,
                           extra={"event": "task_state", "framework_id": fw.framework_id,
                                  "task_id": ti.task_id, "agent_id": agent.agent_id,
                                  "state": "STAGING", "reason": ""})

    def _decline(self, fw: Framework, call: pb.FrameworkCall, now: float) -> None:
        dec = call.decline
        refuse = check_refuse_seconds(dec.refuse_seconds, "Decline.refuse_seconds")
        refuse = refuse or self.config.refuse_default_s
        for oid in dec.offer_ids:
            offer = self.offers.get(oid)
            if offer is None or offer.framework_id != fw.framework_id:
                continue  # expired or rescinded meanwhile: nothing to give back
            self._remove_offer(offer, rescind=False)
            self.allocator.filter(fw.framework_id, offer.agent_id, now + refuse)

    def _kill(self, fw: Framework, call: pb.FrameworkCall, now: float) -> None:
        tid = call.kill.task_id
        task = fw.tasks.get(tid) or fw.completed.get(tid)
        if task is None:
            raise CallError(E.NOT_FOUND, f"this framework has no task {tid!r}")
        if task.state in TERMINAL:
            self._answer_status(fw, task, call.call_id, now)
            return
        self._kill_task(task, now)

    def _view_status(self, task: Task, now: float, reason: int = 0) -> pb.TaskStatus:
        """A status without uuid: informational, not to be acknowledged."""
        return pb.TaskStatus(task_id=task.task_id, state=task.state,  # type: ignore[arg-type]
                             reason=reason or task.reason, message=task.message,  # type: ignore[arg-type]
                             agent_id=task.agent_id, timestamp=now, exit_code=task.exit_code)

    def _reconcile(self, fw: Framework, call: pb.FrameworkCall, now: float) -> None:
        ids = list(call.reconcile.task_ids)
        if ids:
            for tid in ids:
                task = fw.tasks.get(tid) or fw.completed.get(tid)
                if task is None:
                    st = pb.TaskStatus(task_id=tid, state=TS.LOST, reason=R.TASK_UNKNOWN,
                                       message="the master has no such task", timestamp=now)
                    self._send(fw, pb.FrameworkEvent(call_id=call.call_id, update=st))
                else:
                    self._answer_status(fw, task, call.call_id, now)
        else:
            for task in fw.tasks.values():
                self._answer_status(fw, task, call.call_id, now)

    def _answer_status(self, fw: Framework, task: Task, call_id: int, now: float) -> None:
        """A reconciliation's answer for one task. With updates not yet acknowledged, the
        oldest of them again (uuid and all: the framework sees it once, and the rest follow in
        order); the current state instead would overtake them (FINISHED before the RUNNING
        still to come) and repeat the end. Otherwise the state as it is, RECONCILIATION."""
        if task.updates:
            self._send(fw, pb.FrameworkEvent(call_id=call_id, update=task.updates[0]))
        else:
            self._send(fw, pb.FrameworkEvent(call_id=call_id, update=self._view_status(
                task, now, R.RECONCILIATION)))

    def _acknowledge(self, fw: Framework, call: pb.FrameworkCall, now: float) -> None:
        ack = call.acknowledge
        task = fw.tasks.get(ack.task_id)
        if task is None or not task.updates:
            return  # already acknowledged (delivery is at least once)
        if task.updates[0].uuid != ack.uuid:
            if any(u.uuid == ack.uuid for u in task.updates):
                raise CallError(E.CONFLICT, "acknowledge the updates of a task in the order "
                                "they came")
            return
        task.updates.popleft()
        self._record(rec.AckStatusUpdate(fw.framework_id, task.task_id, ack.uuid))
        if task.updates:
            self._send(fw, pb.FrameworkEvent(update=task.updates[0]))
            return
        fw.pending.discard(task.task_id)
        if task.state in TERMINAL:
            self._forget_task(fw, task)

    def _teardown(self, fw: Framework, call: pb.FrameworkCall, now: float) -> None:
        log_frameworks.info("framework %s %r tore itself down", fw.framework_id, fw.name,
                            extra={"event": "framework_removed",
                                   "framework_id": fw.framework_id, "why": "teardown"})
        self._remove_framework(fw, now)

    def _revive(self, fw: Framework, call: pb.FrameworkCall, now: float) -> None:
        fw.suppressed = False
        self.allocator.revive(fw.framework_id)
        self._alloc_soon(now)

    def _suppress(self, fw: Framework, call: pb.FrameworkCall, now: float) -> None:
        fw.suppressed = True
        self.allocator.suppress(fw.framework_id)

    def _upload(self, fw: Framework, call: pb.FrameworkCall, now: float) -> None:
        cfg = self.config
        up = call.upload
        data = up.data
        if not data:
            raise CallError(E.BAD_REQUEST, "UploadModule.data is empty")
        if len(data) > cfg.module_max_bytes:
            raise CallError(E.TOO_LARGE, f"module of {len(data)} bytes, limit "
                            f"{cfg.module_max_bytes}")
        check_text(up.name, "UploadModule.name")
        try:
            check_module(up.format, data)
        except ModuleError as e:
            raise CallError(E.BAD_REQUEST, str(e)) from None
        sha = hashlib.sha256(data).digest()
        m = self.modules.get(sha)
        if m is None:
            if self.modules_total + len(data) > cfg.modules_total_bytes:
                raise CallError(E.TOO_LARGE, "the module store is full "
                                f"({self.modules_total} of {cfg.modules_total_bytes} bytes)")
            m = ModuleInfo(len(data), up.format, up.name, now)
            self.modules[sha] = m
            self.module_sizes[sha] = m.size
            self.modules_total += m.size
            self._record(rec.StoreModule(sha, up.format, up.name, data, now))
            self._timer(now + cfg.module_grace_s, _T_MODULE, sha)
        elif m.refs == 0:
            m.idle_since = now
            self._timer(now + cfg.module_grace_s, _T_MODULE, sha)
        self._send(fw, pb.FrameworkEvent(call_id=call.call_id, module_stored=pb.ModuleStored(
            sha256=sha, size=m.size, format=m.fmt)))  # type: ignore[arg-type]

    _FRAMEWORK_CALLS: dict[str, Callable[[Master, Framework, pb.FrameworkCall, float], None]] = {
        "accept": _accept, "decline": _decline, "kill": _kill, "reconcile": _reconcile,
        "acknowledge": _acknowledge, "teardown": _teardown, "upload": _upload,
        "revive": _revive, "suppress": _suppress,
    }

    def _remove_framework(self, fw: Framework, now: float) -> None:
        """Teardown or failover timeout: kill its tasks; forget it once they are all over."""
        if fw.removing:
            return
        fw.removing = True
        self._record(rec.MarkFrameworkRemoving(fw.framework_id))
        for oid in list(fw.offers):
            self._remove_offer(self.offers[oid], rescind=False)
        self.allocator.set_framework_active(fw.framework_id, False)
        if fw.conn is not None:
            self._outbox.append(CloseFramework(fw.conn, "framework removed"))
            self.conns.pop(fw.conn, None)
            fw.conn = None
        for task in fw.tasks.values():
            task.updates = None
            task.outputs = None
        fw.pending.clear()
        fw.outputs_held.clear()
        for task in list(fw.tasks.values()):
            if task.state not in TERMINAL:
                self._kill_task(task, now, removing=True)
        self._finish_removal(fw)

    def _finish_removal(self, fw: Framework) -> None:
        if fw.framework_id not in self.frameworks:
            return
        if any(t.state not in TERMINAL for t in fw.tasks.values()):
            return
        self._record(rec.RemoveFramework(fw.framework_id))
        log_frameworks.info("framework %s %r forgotten: none of its tasks is left",
                            fw.framework_id, fw.name,
                            extra={"event": "framework_forgotten",
                                   "framework_id": fw.framework_id})
        self.allocator.remove_framework(fw.framework_id)
        del self.frameworks[fw.framework_id]

    # ----------------------------------------------------------------------------- offers

    def _allocate(self, now: float) -> None:
        batches: dict[str, list[pb.Offer]] = {}
        expires = now + self.config.offer_timeout_s
        infos: dict[int, pb.Register] = {}
        for fid, aid, res in self.allocator.offers(now):
            fw = self.frameworks.get(fid)
            agent = self.agents.get(aid)
            if (fw is None or fw.conn is None or fw.removing or agent is None
                    or agent.state != ACTIVE_STATE or not agent.synced):
                self.allocator.recover(fid, aid, res)
                continue
            self._offer_seq += 1
            oid = f"{self.epoch}-{self._offer_seq}"
            offer = Offer(oid, fid, aid, res, expires)
            self.offers[oid] = offer
            self.offers_by_agent.setdefault(aid, set()).add(oid)
            fw.offers.add(oid)
            self._timer(expires, _T_OFFER, oid)
            reg = infos.get(aid)
            if reg is None:
                reg = infos[aid] = decode(pb.Register, agent.info)
            batches.setdefault(fid, []).append(pb.Offer(
                offer_id=oid, agent_id=aid, agent_name=reg.name, resources=res.to_pb(),
                attributes=reg.attributes, executors=reg.executors,
                expires_in_s=self.config.offer_timeout_s))
            self.stats["offers_made"] += 1
        for fid, offers in batches.items():
            self._send(self.frameworks[fid], pb.FrameworkEvent(offers=pb.Offers(offers=offers)))

    def _drop_offer(self, offer: Offer) -> None:
        del self.offers[offer.offer_id]
        by_agent = self.offers_by_agent.get(offer.agent_id)
        if by_agent is not None:
            by_agent.discard(offer.offer_id)
            if not by_agent:
                del self.offers_by_agent[offer.agent_id]
        fw = self.frameworks.get(offer.framework_id)
        if fw is not None:
            fw.offers.discard(offer.offer_id)

    def _remove_offer(self, offer: Offer, rescind: bool) -> None:
        """Declined, expired, rescinded: the offer's resources are free again."""
        self._drop_offer(offer)
        self.allocator.recover(offer.framework_id, offer.agent_id, offer.res)
        fw = self.frameworks.get(offer.framework_id)
        if rescind and fw is not None:
            self._send(fw, pb.FrameworkEvent(rescind=pb.Rescind(offer_id=offer.offer_id)))

    # ----------------------------------------------------------------------------- operator

    def cluster_state(self, data: bytes, now: float, peer: str = "") -> tuple[int, bytes]:
        """A StateRequest -> (0, encoded ClusterState) or (error code, encoded Error)."""
        try:
            req = decode(pb.StateRequest, data, Limits(max_input=4096))
        except DecodeError as e:
            return self._state_refused(E.BAD_REQUEST, f"bad StateRequest: {e}", now, peer)
        if not tokens_match(req.token, self.config.operator_tokens):
            return self._state_refused(
                E.UNAUTHENTICATED, ("wrong operator token" if req.token else "no operator token "
                                    "given") + ": ask with one of the master's operator_tokens",
                now, peer)
        return 0, encode(self.state_view(now))

    def _state_refused(self, code: int, text: str, now: float, peer: str) -> tuple[int, bytes]:
        self._refusal_log.log(
            log_operator, logging.WARNING, now,
            f"refused a state request from {peer or '?'}: {_code_name(code)}: {text}",
            {"event": "state_refused", "peer": peer, "code": _code_name(code)})
        return code, encode(pb.Error(code=code, message=text))  # type: ignore[arg-type]

    def state_view(self, now: float) -> pb.ClusterState:
        cs = pb.ClusterState(now=now, version=VERSION)
        for agent in self.agents.values():
            reg = decode(pb.Register, agent.info)
            used = Res.EMPTY
            for task in (agent.tasks or {}).values():
                used = used + task.res
            view = cs.agents.add(agent_id=agent.agent_id, name=reg.name,
                                 state=_AGENT_STATE_NAMES.get(agent.state, "?"),
                                 total=agent.total.to_pb(), used=used.to_pb(),
                                 last_seen=agent.last_seen, transport=agent.transport)
            view.attributes.extend(reg.attributes)
            view.executors.extend(reg.executors)
        for fw in self.frameworks.values():
            try:
                share = self.allocator.dominant_share(fw.framework_id)
            except KeyError:
                share = 0.0
            cs.frameworks.add(framework_id=fw.framework_id, name=fw.name, role=fw.role,
                              weight=fw.weight, connected=fw.conn is not None,
                              tasks=sum(1 for t in fw.tasks.values() if t.state in ACTIVE),
                              dominant_share=share)
            for task in list(fw.tasks.values()) + list(fw.completed.values()):
                spec = decode(pb.TaskSpec, task.spec)
                cs.tasks.add(task_id=task.task_id, framework_id=fw.framework_id,
                             agent_id=task.agent_id, name=spec.name, state=task.state,  # type: ignore[arg-type]
                             reason=task.reason, message=task.message,  # type: ignore[arg-type]
                             executor=executor_of(spec), resources=task.res.to_pb())  # type: ignore[arg-type]
        for offer in self.offers.values():
            cs.offers.add(offer_id=offer.offer_id, agent_id=offer.agent_id,
                          resources=offer.res.to_pb(),
                          expires_in_s=max(0.0, offer.expires - now))
        return cs

    def describe_task(self, framework_id: str, task_id: str) -> str:
        fw = self.frameworks.get(framework_id)
        task = fw.tasks.get(task_id) if fw else None
        return state_name(task.state) if task else "unknown"
