"""Agents: their calls, registration, liveness and inventory.

`agent_call` is the entry for every AgentCall (untrusted bytes): the steady heartbeat by its
shortcut (`fastpath`), everything else decoded, authenticated (`validation`) and handed on:
registrations here, status updates to `tasks`, published outputs to `frameworks`, module reads
to `uploads`. The fast and the general path share `heard_from` (seq, last_seen, reachable
again) and `commands.take_ack`, so they cannot drift apart.

Liveness: a timer (`T_AGENT_CHECK`) marks an agent silent for `unreachable_after_s` UNREACHABLE,
another (`T_AGENT_LOST`) one UNREACHABLE for `lost_after_s` LOST; every state change goes
through the `agent_states` table (`set_state`).
"""

from __future__ import annotations

import hmac
import logging

from edgerm.resources import Res, ResourceError
from edgerm.wire import NONCE_LEN, compute_mac, decode, derive_secret, encode, pb
from edgerm_master import agent_states, commands, frameworks, offers, tasks, uploads
from edgerm_master import records as rec
from edgerm_master import validation as check
from edgerm_master.agent_states import AGENT_ACTIVE, AGENT_LOST, AGENT_UNREACHABLE
from edgerm_master.events import AgentResult
from edgerm_master.fastpath import (
    parse_protected_heartbeat_ack,
    parse_steady_heartbeat_untrusted,
)
from edgerm_master.logs import agent_name, code_name, log_agents
from edgerm_master.state import (
    T_AGENT_CHECK,
    T_AGENT_LOST,
    Agent,
    MasterState,
    agent_kind,
    executor_mask,
)
from edgerm_master.task_states import TERMINAL
from edgerm_master.validation import CallError

__all__ = ["agent_call", "agent_call_protected", "agent_channel", "check_liveness",
           "check_lost", "set_state", "heard_from"]

TS = pb.TaskState
R = pb.Reason
E = pb.ErrorCode

# First registrations' nonces remembered against replays (`MasterState.reg_nonces`).
REG_NONCES_KEPT = 4096
# First registrations on CoAP waiting for their key confirmation (`MasterState.pending`): at
# most this many (the oldest dropped: ~1 KB each), each for `unreachable_after_s` at most;
# sized for a fleet registering afresh at ~1,000/s that confirms within a heartbeat interval.
PENDING_KEPT = 65_536


def agent_call(st: MasterState, data: bytes, now: float, transport: str, peer: str,
               mac_calls: bool = True) -> AgentResult:
    """One AgentCall from the network (untrusted bytes) -> the reply to send back. `peer`
    (the caller's address) only goes into log lines. `mac_calls` False (plain CoAP, where
    OSCORE protects every call after the first registration): only a first registration
    may come mac-signed; any other signed call is refused UNAUTHENTICATED (no downgrade)."""
    st.stats["agent_calls"] += 1
    st.now = now
    st.peer = peer
    try:
        check.check_size(len(data), st.config.agent_message_max, "AgentCall")
    except CallError as e:
        st.calls[transport] += 1
        return _refused(st, e)
    fast = _steady_heartbeat(st, data, now, transport) if mac_calls else None
    if fast is not None:
        return fast
    # (Counted here, not above: the fast path counts its heartbeats only, one increment.)
    st.calls[transport] += 1
    # Anything unusual about it: the general path decides (and gives the same answer).
    try:
        call = check.decode_untrusted(pb.AgentCall, data, st.agent_limits)
        kind = call.WhichOneof("call")
        if call.agent_id == 0:
            check.check_first_call(kind)
            token = check.registration_token(call, st.token_keys)
            return _first_registration(st, call.register, token, call.seq, now, transport,
                                       pending=not mac_calls)
        if not mac_calls:
            # On CoAP only the first registration is signed; everything after it is
            # OSCORE-protected (agent_call_protected): no downgrade to the mac.
            raise CallError(E.UNAUTHENTICATED, "on CoAP every call after the first "
                            "registration must be OSCORE-protected")
        agent = check.check_caller(call, st.agents.get(call.agent_id))
    except CallError as e:
        return _refused(st, e)
    return _known_call(st, agent, call, kind, call.seq, now, transport)


def agent_call_protected(st: MasterState, agent: Agent, seq: int, data: bytes, now: float,
                         transport: str, peer: str) -> AgentResult:
    """An AgentCall that came OSCORE-protected from `agent` (oscore_calls verified it) with
    Sender Sequence Number `seq` (its Partial IV): handled as a signed call with that
    `agent_id` and `seq`; its reply carries neither seq nor mac (the shell protects it).
    A stale `seq` (a replay racing the original) is refused unauthenticated (agent_id 0 in
    the result: the shell answers a plain 4.01)."""
    st.stats["agent_calls"] += 1
    st.now = now
    st.peer = peer
    st.oscore_call = True
    try:
        if st.pending and st.pending.get(agent.agent_id, (None, 0.0))[0] is agent:
            _admit(st, agent, now, transport)   # its first valid OSCORE request: confirmed
        fast = _protected_heartbeat(st, agent, seq, data, now, transport)
        if fast is not None:
            return fast
        st.calls[transport] += 1
        try:
            check.check_size(len(data), st.config.agent_message_max, "AgentCall")
            call = check.decode_untrusted(pb.AgentCall, data, st.agent_limits)
            if call.agent_id or call.seq or call.mac:
                raise CallError(E.BAD_REQUEST, "an OSCORE-protected AgentCall carries no "
                                "agent_id, seq or mac (OSCORE's kid and Partial IV are them)")
            check.check_seq(agent.seq, seq)
        except CallError as e:
            if e.code == E.UNAUTHENTICATED:
                return _refused(st, e)
            return _refused(st, e, agent, seq, protected=True)
        return _known_call(st, agent, call, call.WhichOneof("call"), seq, now, transport)
    finally:
        st.oscore_call = False


def _protected_heartbeat(st: MasterState, agent: Agent, seq: int, data: bytes, now: float,
                         transport: str) -> AgentResult | None:
    """A steady protected heartbeat (`{5: {}}` or `{5: {1: ack}}`) of an active, synced agent
    with a fresh seq; None for anything else (the general path gives the same answer)."""
    if data == b"\xa1\x05\xa0":
        ack = 0
    else:
        ack = parse_protected_heartbeat_ack(data)
        if ack <= 0:
            return None
    if not agent.synced or agent.state != AGENT_ACTIVE or not check.seq_is_fresh(agent.seq,
                                                                                  seq):
        return None
    heard_from(st, agent, seq, now, transport)
    st.fast_heartbeats[transport] += 1
    commands.take_ack(st, agent, ack)
    return commands.reply(st, agent, seq)


def _known_call(st: MasterState, agent: Agent, call: pb.AgentCall, kind: str | None, seq: int,
                now: float, transport: str) -> AgentResult:
    """A call authenticated as `agent` (its mac, or OSCORE) with sequence number `seq`."""
    protected = st.oscore_call
    try:
        if kind == "register":
            return _reregister(st, agent, call.register, seq, now, transport)
        kind = check.check_call_kind(kind)
        if not agent.synced or agent.state == AGENT_LOST:
            # The master restarted (no seq baseline) or gave the agent up: only a signed
            # Register is trusted now. Nothing else of this call is applied.
            commands.ask_reregister(st, agent)
            return commands.reply(st, agent, seq)
        check.check_seq(agent.seq, seq)
        if kind == "heartbeat":
            check.check_heartbeat(call.heartbeat)
        heard_from(st, agent, seq, now, transport)
        if kind == "heartbeat":
            st.heartbeats[transport] += 1
            _heartbeat(st, agent, call.heartbeat, now)
        elif kind == "status":
            tasks.agent_status(st, agent, call.status, now)
        elif kind == "publish":
            frameworks.agent_publish(st, agent, call.publish, now)
        elif kind == "module":
            return uploads.module_request(st, agent, call.module, seq)
        return commands.reply(st, agent, seq)
    except CallError as e:
        if protected and e.code == E.UNAUTHENTICATED:
            return _refused(st, e)   # a stale seq: answered plain, like a failed tag
        return _refused(st, e, agent, seq, protected)


def _steady_heartbeat(st: MasterState, data: bytes, now: float, transport: str
                      ) -> AgentResult | None:
    """The reply to a steady heartbeat of an active agent, read straight from its bytes; None
    for anything else, which the general path answers (the same way)."""
    fast = parse_steady_heartbeat_untrusted(data)
    if fast is None:
        return None
    aid, seq, mac, unsigned, ack = fast
    agent = st.agents.get(aid)
    if (agent is None or not agent.synced or agent.state != AGENT_ACTIVE
            or not check.seq_is_fresh(agent.seq, seq)
            or not hmac.compare_digest(compute_mac(agent.secret, unsigned), mac)):
        return None
    heard_from(st, agent, seq, now, transport)
    st.fast_heartbeats[transport] += 1
    commands.take_ack(st, agent, ack)
    return commands.reply(st, agent, seq)


def heard_from(st: MasterState, agent: Agent, seq: int, now: float, transport: str) -> None:
    """An authentic call with a fresh `seq` from a synced agent: it is alive (and, if it was
    UNREACHABLE, reachable again)."""
    agent.seq = seq
    agent.last_seen = now
    agent.transport = transport
    if agent.state == AGENT_UNREACHABLE:
        mark_reachable(st, agent, now)


def _refused(st: MasterState, e: CallError, agent: Agent | None = None, seq: int = 0,
             protected: bool = False) -> AgentResult:
    st.stats["agent_errors"] += 1
    who = f"agent {agent.agent_id}" if agent is not None else "an agent"
    st.refusal_log.log(
        log_agents, logging.WARNING, st.now,
        f"refused a call from {who} at {st.peer or '?'}: {code_name(e.code)}: {e.text}",
        {"event": "agent_refused", "agent_id": agent.agent_id if agent else 0,
         "peer": st.peer, "code": code_name(e.code)})
    return commands.error_reply(e.code, e.text, seq, agent, protected)


def agent_channel(st: MasterState, agent_id: int, open: bool) -> None:
    """The agent's push channel (CoAP Observe on `c`, or its WebSocket) opened or closed."""
    agent = st.agents.get(agent_id)
    if agent is None:
        return
    agent.pushable = open
    if open and agent.commands:
        st.push.add(agent_id)


# --------------------------------------------------------------------------------------------
# Registration


def _info(reg: pb.Register) -> bytes:
    """What the master keeps of a registration: all but the nonce and the task report."""
    info = pb.Register()
    info.CopyFrom(reg)
    info.ClearField("nonce")
    info.ClearField("tasks")
    info.ClearField("update_next")
    return encode(info)


def _registered(st: MasterState, agent: Agent, master_nonce: bytes = b"") -> pb.Registered:
    cfg = st.config
    return pb.Registered(agent_id=agent.agent_id, nonce=master_nonce,
                         heartbeat_ms=cfg.heartbeat_ms, jitter_ms=cfg.jitter_ms,
                         update_ack=agent.update_ack)


def _first_registration(st: MasterState, reg: pb.Register, token: str, seq: int, now: float,
                        transport: str, pending: bool = False) -> AgentResult:
    """A new identity. `pending` (CoAP): kept aside until the agent's first valid OSCORE
    request proves it derived the secret (only a holder of the token can), so a replayed
    first registration leaves nothing behind but an entry that expires."""
    check.check_nonce(reg, st.reg_nonces)
    total = check.check_register(reg, st.inventory)
    st.reg_nonces[reg.nonce] = None
    if len(st.reg_nonces) > REG_NONCES_KEPT:
        del st.reg_nonces[next(iter(st.reg_nonces))]
    aid = st.next_agent_id
    st.next_agent_id += 1
    master_nonce = st.random_bytes(NONCE_LEN)
    secret = derive_secret(token, reg.nonce, master_nonce)
    agent = Agent(aid, secret, _info(reg), reg, total)
    agent.seq = seq
    agent.last_seen = now
    agent.transport = transport
    if pending:
        _expire_pending(st, now)
        st.pending[aid] = (agent, now + st.config.unreachable_after_s)
        if len(st.pending) > PENDING_KEPT:
            del st.pending[next(iter(st.pending))]
    else:
        _admit(st, agent, now, transport)
    return commands.reply(st, agent, seq, _registered(st, agent, master_nonce))


def _expire_pending(st: MasterState, now: float) -> None:
    """Forget unconfirmed first registrations past their deadline (oldest first)."""
    pending = st.pending
    while pending:
        aid, (_, deadline) = next(iter(pending.items()))
        if deadline > now:
            return
        del pending[aid]


def pending_agent(st: MasterState, agent_id: int, now: float) -> Agent | None:
    """The unconfirmed first registration `agent_id`, if it has not expired."""
    entry = st.pending.get(agent_id)
    if entry is None:
        return None
    if entry[1] <= now:
        del st.pending[agent_id]
        return None
    return entry[0]


def _admit(st: MasterState, agent: Agent, now: float, transport: str) -> None:
    """A new agent becomes known: persisted, offered, shown (a confirmed pending one too)."""
    aid = agent.agent_id
    st.pending.pop(aid, None)
    st.agents[aid] = agent
    st.record(rec.AdmitAgent(aid, agent.secret, agent.info, now))
    st.allocator.add_agent(aid, agent.total)
    st.timer(now + st.config.unreachable_after_s, T_AGENT_CHECK, aid)
    st.alloc_soon(now)
    name = agent_name(agent.info)
    log_agents.info("agent %d %r registered over %s from %s", aid, name, transport,
                    st.peer or "?",
                    extra={"event": "agent_registered", "agent_id": aid,
                           "agent_name": name, "transport": transport, "peer": st.peer})


def _reregister(st: MasterState, agent: Agent, reg: pb.Register, seq: int, now: float,
                transport: str) -> AgentResult:
    """A signed Register from a known agent (restart, ReRegister, master restart). Its seq
    must pass every seq seen from the agent (agents persist a bound ahead of their seq, so
    it does after a reboot too): a recorded one replayed, or a heartbeat recorded before the
    agent restarted, would otherwise be accepted again."""
    check.check_seq(agent.seq, seq)
    total = check.check_register(reg, st.inventory)
    reported: dict[int, int] = {}
    for report in reg.tasks:
        reported[report.task] = report.state
    # Checks done; from here on the call is applied.
    aid = agent.agent_id
    was = agent_states.state_name(agent.state)
    if not agent.synced:
        was += ", recovered from the store"
    log_agents.info("agent %d %r re-registered over %s from %s (was %s, reports %d tasks)",
                    aid, reg.name, transport, st.peer or "?", was, len(reported),
                    extra={"event": "agent_reregistered", "agent_id": aid,
                           "agent_name": reg.name, "transport": transport,
                           "peer": st.peer, "was": was})
    agent.seq = seq
    st.record(rec.ReregisterAgent(aid, seq))
    agent.synced = True
    agent.last_seen = now
    agent.transport = transport
    info = _info(reg)
    if info != agent.info:
        agent.info = info
        agent.kind = agent_kind(reg)
        agent.executors = executor_mask(reg.executors)
        agent.max_payload = reg.max_payload
        st.record(rec.UpdateAgentInfo(aid, info))
    if agent.rereg_cid and agent.commands and agent.rereg_cid in agent.commands:
        commands.drop(st, agent, agent.rereg_cid)
    agent.rereg_cid = 0
    if agent.state == AGENT_LOST:
        agent.total = total
        set_state(agent, AGENT_ACTIVE)
        st.record(rec.MarkAgentReachable(aid))
        st.allocator.add_agent(aid, total)
        st.timer(now + st.config.unreachable_after_s, T_AGENT_CHECK, aid)
    else:
        _set_total(st, agent, total, now)
        if agent.state == AGENT_UNREACHABLE:
            mark_reachable(st, agent, now, reported)
        else:
            st.allocator.set_agent_active(aid, True)
    # Registered.update_ack tells the agent which of its queued updates we already hold; it
    # keeps sending the rest oldest first, so our update_ack never jumps over one.
    # Reconcile the agent's tasks with ours.
    for task in list((agent.tasks or {}).values()):
        state = reported.get(task.number)
        if state is None:
            tasks.missing_on_agent(st, agent, task, now)
        elif task.state == TS.UNREACHABLE:
            tasks.restore(st, task, now, reported=state)
    for number, state in reported.items():
        if (agent.tasks is None or number not in agent.tasks) and state not in TERMINAL:
            commands.enqueue_kill(st, agent, number)
    st.alloc_soon(now)
    return commands.reply(st, agent, seq, _registered(st, agent))


# --------------------------------------------------------------------------------------------
# Inventory


def _heartbeat(st: MasterState, agent: Agent, hb: pb.Heartbeat, now: float) -> None:
    """A heartbeat's news beyond being alive: changed resources or attributes, command_ack."""
    if hb.HasField("resources") or len(hb.attributes):
        info = decode(pb.Register, agent.info)
        if hb.HasField("resources"):
            info.resources.CopyFrom(hb.resources)
            _set_total(st, agent, st.inventory(hb.resources), now)
        if len(hb.attributes):
            del info.attributes[:]
            info.attributes.extend(hb.attributes)
            agent.kind = agent_kind(info)
        agent.info = encode(info)
        st.record(rec.UpdateAgentInfo(agent.agent_id, agent.info))
    commands.take_ack(st, agent, hb.command_ack)


def _set_total(st: MasterState, agent: Agent, total: Res, now: float) -> None:
    if total == agent.total:
        return
    # Outstanding offers on the agent are rescinded: they may no longer fit.
    offers.rescind_on_agent(st, agent.agent_id)
    try:
        st.allocator.update_agent_total(agent.agent_id, total)
    except ResourceError:
        # Its tasks hold more than it now says it has: keep accounting by the old total
        # until they end (the agent enforces its own limits).
        st.stats["overcommitted_agents"] = st.stats.get("overcommitted_agents", 0) + 1
        return
    agent.total = total
    st.alloc_soon(now)


# --------------------------------------------------------------------------------------------
# Liveness


def set_state(agent: Agent, state: int) -> None:
    """Move the agent (the `agent_states` table must allow it)."""
    agent_states.check_transition(agent.state, state)
    agent.state = state


def check_liveness(st: MasterState, agent_id: int, now: float) -> None:
    """`T_AGENT_CHECK`: UNREACHABLE if nothing was heard for `unreachable_after_s`."""
    agent = st.agents.get(agent_id)
    if agent is None or agent.state != AGENT_ACTIVE:
        return
    deadline = agent.last_seen + st.config.unreachable_after_s
    if now >= deadline:
        _mark_unreachable(st, agent, now)
    else:
        st.timer(deadline, T_AGENT_CHECK, agent_id)


def check_lost(st: MasterState, agent_id: int, now: float) -> None:
    """`T_AGENT_LOST`: LOST if still UNREACHABLE after `lost_after_s`."""
    agent = st.agents.get(agent_id)
    if (agent is not None and agent.state == AGENT_UNREACHABLE
            and now >= agent.unreachable_since + st.config.lost_after_s):
        _mark_lost(st, agent, now)


def _mark_unreachable(st: MasterState, agent: Agent, now: float) -> None:
    aid = agent.agent_id
    log_agents.warning(
        "agent %d %r is UNREACHABLE: nothing heard for %g s; its %d tasks are UNREACHABLE, "
        "LOST if it stays away %g s", aid, agent_name(agent.info), now - agent.last_seen,
        len(agent.tasks or ()), st.config.lost_after_s,
        extra={"event": "agent_unreachable", "agent_id": aid})
    set_state(agent, AGENT_UNREACHABLE)
    agent.unreachable_since = now
    st.record(rec.MarkAgentUnreachable(aid, now))
    offers.rescind_on_agent(st, aid)
    st.allocator.set_agent_active(aid, False)
    for task in list((agent.tasks or {}).values()):
        if task.state == TS.UNREACHABLE:
            continue  # still waiting for the report of its last return (`mark_reachable`)
        tasks.set_state(st, task, TS.UNREACHABLE, R.AGENT_UNREACHABLE,
                        "the agent missed its heartbeats", 0, now, prev=task.state,
                        kind=rec.MarkTaskUnreachable)
    st.timer(now + st.config.lost_after_s, T_AGENT_LOST, aid)


def mark_reachable(st: MasterState, agent: Agent, now: float,
                   reported: dict[int, int] | None = None) -> None:
    """UNREACHABLE -> ACTIVE: heard from (`reported` None) or re-registered (its report)."""
    aid = agent.agent_id
    set_state(agent, AGENT_ACTIVE)
    agent.unreachable_since = 0.0
    st.record(rec.MarkAgentReachable(aid))
    if agent.synced:
        st.allocator.set_agent_active(aid, True)
    if reported is None:
        # (A re-registration logs itself, saying what the agent was.)
        log_agents.info("agent %d %r is reachable again (over %s from %s)", aid,
                        agent_name(agent.info), agent.transport, st.peer or "?",
                        extra={"event": "agent_reachable", "agent_id": aid, "peer": st.peer})
    if reported is None and any(t.state == TS.UNREACHABLE
                                for t in (agent.tasks or {}).values()):
        # Heard from, but not told what runs: the agent may have restarted meanwhile (a
        # Linux agent keeps its seq, so its first heartbeat is authentic). Its tasks stay
        # UNREACHABLE until its registration reports them (`_reregister`), so a framework
        # is never told RUNNING for a task the agent no longer has.
        commands.ask_reregister(st, agent)
    st.timer(now + st.config.unreachable_after_s, T_AGENT_CHECK, aid)
    st.alloc_soon(now)
    if agent.pushable and agent.commands:
        st.push.add(aid)


def _mark_lost(st: MasterState, agent: Agent, now: float) -> None:
    aid = agent.agent_id
    log_agents.warning("agent %d %r is LOST: unreachable for %g s; its %d tasks are LOST",
                       aid, agent_name(agent.info), now - agent.unreachable_since,
                       len(agent.tasks or ()),
                       extra={"event": "agent_lost", "agent_id": aid})
    set_state(agent, AGENT_LOST)
    st.record(rec.MarkAgentLost(aid))
    for task in list((agent.tasks or {}).values()):
        tasks.set_state(st, task, TS.LOST, R.AGENT_LOST,
                        f"the agent did not come back within {st.config.lost_after_s:g} s",
                        0, now, kind=rec.MarkTaskLost)
    commands.drop_all(st, agent)
    st.allocator.remove_agent(aid)
