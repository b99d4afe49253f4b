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

`Master` is a facade: the state is one `MasterState` (state.py), and each job is a module of
functions over it (docs/architecture.md, "The master core"):
  `agents`      agents' calls, registration, liveness (the `agent_states` table), inventory;
  `commands`    each agent's command queue and the replies and pushes that carry it;
  `frameworks`  frameworks' connections and calls, delivery of task updates and outputs;
  `tasks`       launch, status, kill, the end of a task (the `task_states` table);
  `offers`      allocation rounds, offers, declines; `uploads` the modules tasks run;
  `recovery`    the state rebuilt from a store snapshot; `view` the operator's state view;
  `validation`  every check of a call; `logs` the log lines and the refusal rate limit.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgerm_master import (
    agents,
    commands,
    frameworks,
    offers,
    oscore_calls,
    recovery,
    uploads,
    view,
)
from edgerm_master import records as rec
from edgerm_master.agent_states import AGENT_ACTIVE, AGENT_LOST, AGENT_UNREACHABLE
from edgerm_master.allocator import Allocator
from edgerm_master.config import MasterConfig
from edgerm_master.events import AgentResult, CloseFramework, ModuleRead, ToAgent, ToFramework
from edgerm_master.oscore_calls import Inner, Refusal
from edgerm_master.state import (
    T_AGENT_CHECK,
    T_AGENT_LOST,
    T_FAILOVER,
    T_MODULE,
    T_OFFER,
    T_RELEASE,
    T_RETRY,
    Agent,
    Framework,
    MasterState,
    ModuleInfo,
    Offer,
    Task,
)
from edgerm_master.view import VERSION

if TYPE_CHECKING:  # (the core never imports the store: the shell hands it the snapshot)
    from edgerm_master.store import Snapshot

__all__ = [
    "Master", "AgentResult", "ModuleRead", "ToFramework", "ToAgent", "CloseFramework",
    "Agent", "Task", "Framework", "Offer", "VERSION",
    "ACTIVE_STATE", "UNREACHABLE_STATE", "LOST_STATE",
]

# The agent states under the names the core's users know them by (agent_states.py).
ACTIVE_STATE, UNREACHABLE_STATE, LOST_STATE = AGENT_ACTIVE, AGENT_UNREACHABLE, AGENT_LOST

# What each timer kind runs: (state, key, now).
_TIMERS: dict[int, Callable[[MasterState, Any, float], None]] = {
    T_AGENT_CHECK: agents.check_liveness,
    T_AGENT_LOST: agents.check_lost,
    T_OFFER: offers.expire,
    T_FAILOVER: frameworks.failover_expired,
    T_RETRY: frameworks.retry,
    T_RELEASE: frameworks.release_outputs,
    T_MODULE: uploads.expire,
}


class Master:
    """The EdgeRM master's state machine. See the module docstring for the I/O contract.

    Args:
        config: settings (`MasterConfig`).
        random_bytes: the source of secrets and ids (`os.urandom`; tests pass a seeded one).
    """

    def __init__(self, config: MasterConfig | None = None,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self.state = MasterState(config or MasterConfig(), random_bytes)

    # ----------------------------------------------------------------------------- inputs

    def agent_call(self, data: bytes, now: float, transport: str = "coap", peer: str = "",
                   mac_calls: bool = True) -> AgentResult:
        """One AgentCall from the network (untrusted bytes) -> the reply to send back. `peer`
        (the caller's address) only goes into log lines. `mac_calls` False (plain CoAP):
        only a first registration may be mac-signed (OSCORE protects everything after)."""
        return agents.agent_call(self.state, data, now, transport, peer, mac_calls)

    # --- OSCORE on the CoAP agent link (oscore_calls.py; docs/protocol.md)

    def oscore_unprotect(self, option: bytes, ciphertext: bytes, now: float | None = None
                         ) -> Inner | Refusal:
        """A protected CoAP request (its OSCORE option value and payload): the verified inner
        request, or the plain refusal to answer (nothing changed). `now` (default: the time
        of the last input) decides whether a pending first registration has expired."""
        return oscore_calls.unprotect_untrusted(self.state, option, ciphertext,
                                                self.state.now if now is None else now)

    def agent_call_protected(self, inner: Inner, now: float, transport: str = "coap",
                             peer: str = "") -> AgentResult:
        """The AgentCall inside a verified protected request (`inner.payload`), with its
        agent and seq from OSCORE; the reply's `data` is unsigned (protect it with
        `oscore_protect`) unless `agent_id` is 0 (a plain refusal: answer it unprotected)."""
        return agents.agent_call_protected(self.state, inner.agent, inner.seq, inner.payload,
                                           now, transport, peer)

    def oscore_protect(self, inner: Inner, code: int, payload: bytes,
                       content_format: int | None = 60,
                       options: list[tuple[int, bytes]] | None = None,
                       notification: bool = False) -> tuple[int, list[tuple[int, bytes]], bytes]:
        """(outer code, outer options, ciphertext) of the answer to `inner` (may emit a
        `SetOscoreSeqBound` record when the master's own sequence number is used)."""
        return oscore_calls.protect(self.state, inner, code, payload, content_format, options,
                                    notification)

    def oscore_accept_seq(self, inner: Inner) -> None:
        """A protected request answered without `agent_call_protected` (a module GET) used
        up its seq."""
        oscore_calls.accept_seq(inner)

    def oscore_protect_push(self, agent_id: int, request_piv: int, payload: bytes
                            ) -> tuple[list[tuple[int, bytes]], bytes] | None:
        """(outer options, ciphertext) of an Observe notification to `agent_id` (registered
        with Partial IV `request_piv`); None if the agent is gone."""
        agent = self.state.agents.get(agent_id)
        if agent is None:
            return None
        return oscore_calls.protect_push(self.state, agent, request_piv, payload)

    def agent_channel(self, agent_id: int, open: bool) -> None:
        """The agent's push channel (CoAP Observe on `c`, or its WebSocket) opened or closed."""
        agents.agent_channel(self.state, agent_id, open)

    def framework_call(self, conn: int, data: bytes, now: float, peer: str = "") -> None:
        """One FrameworkCall (untrusted bytes) on connection `conn`; answers go to the outbox.
        `peer` (the connection's address) only goes into log lines."""
        frameworks.framework_call(self.state, conn, data, now, peer)

    def framework_disconnected(self, conn: int, now: float) -> None:
        frameworks.framework_disconnected(self.state, conn, now)

    def cluster_state(self, data: bytes, now: float, peer: str = "") -> tuple[int, bytes]:
        """A StateRequest -> (0, encoded ClusterState) or (error code, encoded Error)."""
        return view.cluster_state(self.state, data, now, peer)

    def recover(self, snap: Snapshot, now: float) -> None:
        """Rebuild the state from the store. Agents are unsynced until they re-register,
        frameworks disconnected until they re-subscribe (their failover clocks start now)."""
        recovery.recover(self.state, snap, now)

    def handle_timer(self, now: float) -> None:
        """Run every timer due by `now`, then the allocation round if it is due."""
        self.run_timers(now)
        self.allocate_if_due(now)

    def run_timers(self, now: float) -> None:
        """The first half of `handle_timer`: every timer due by `now` (the shell calls the
        halves apart to time the allocation round alone)."""
        st = self.state
        st.now = now
        st.refusal_log.flush(now)
        st.decline_watch.flush(now)
        timers = st.timers
        while timers and timers[0][0] <= now:
            _, kind, key = heapq.heappop(timers)
            _TIMERS[kind](st, key, now)

    def allocate_if_due(self, now: float) -> bool:
        """The second half of `handle_timer`: the allocation round if it is due (True if it
        ran)."""
        st = self.state
        if now < st.alloc_due:
            return False
        st.last_alloc = now
        offers.allocate(st, now)
        st.alloc_due = now + st.config.allocation_interval_s
        return True

    def module_chunk(self, agent_id: int, read: ModuleRead, data: bytes) -> bytes:
        """The shell read the bytes of `read`: the signed reply that carries them."""
        return uploads.module_chunk(self.state, agent_id, read, data)

    def module_size(self, sha256: bytes) -> int | None:
        m = self.state.modules.get(sha256)
        return m.size if m else None

    # ----------------------------------------------------------------------------- outputs

    def has_output(self) -> bool:
        st = self.state
        return bool(st.records or st.outbox or st.push)

    def take_records(self) -> list[rec.Record]:
        st = self.state
        out, st.records = st.records, []
        return out

    def take_outbox(self) -> list[ToFramework | ToAgent | CloseFramework]:
        st = self.state
        commands.take_pushes(st)
        out, st.outbox = st.outbox, []
        return out

    def get_timer(self) -> float:
        """The next time `handle_timer` has work (never later than the next allocation)."""
        st = self.state
        due = st.alloc_due
        if st.timers and st.timers[0][0] < due:
            due = st.timers[0][0]
        return due

    # ----------------------------------------------------------------------------- the tables
    # (read by the shell, tests and benchmarks; every change goes through the inputs above)

    @property
    def config(self) -> MasterConfig:
        return self.state.config

    @property
    def allocator(self) -> Allocator:
        return self.state.allocator

    @property
    def agents(self) -> dict[int, Agent]:
        return self.state.agents

    @property
    def frameworks(self) -> dict[str, Framework]:
        return self.state.frameworks

    @property
    def conns(self) -> dict[int, str]:
        return self.state.conns

    @property
    def offers(self) -> dict[str, Offer]:
        return self.state.offers

    @property
    def modules(self) -> dict[bytes, ModuleInfo]:
        return self.state.modules

    @property
    def stats(self) -> dict[str, int]:
        return self.state.stats

    @property
    def records_emitted(self) -> int:
        """Records emitted so far (the shell compares it with what it committed)."""
        return self.state.records_emitted
