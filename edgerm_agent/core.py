"""The agent's side of the agent link (docs/protocol.md) as a plain object: no I/O, no clock.

Theory of operation
-------------------
The agent speaks to the master in *calls*: one `AgentCall` out, one `AgentReply` back, one call
in flight at a time (CoAP's NSTART=1 and the master's "seq must grow" rule both want that order).
The shell asks `next_call(now)` for the next signed call, sends it, and feeds back either
`receive_reply(data, now)` or `call_failed(now)`. Pushed replies (seq 0: an Observe notification
or a WebSocket push) go to `receive_push(data, now)`. `get_timer()` is the one deadline at which
`handle_timer(now)` wants to run (the next heartbeat or the end of a back-off). Everything the
shell must *do* comes out of `next_event()` (`edgerm_agent.events`): launch or kill a task, fetch
a module, a module chunk that arrived, a refusal by the master to log (`Refused`). Executors
report back with `task_changed()` and `publish()`.

What goes out next, by priority:
 1. `register` when the session is not registered (boot, `ReRegister`, UNAUTHENTICATED, a move
    to another master: `master_changed`);
 2. module requests (WebSocket module transfer; the fetch waits on them);
 3. the oldest unacknowledged update (`StatusUpdate` or `Publish`), one per call — but a moved
    `command_ack` goes first once `_UPDATES_BEFORE_ACK` updates have gone out since it moved
    (a launch's STARTING and RUNNING reach the framework one round trip sooner; the master
    re-sends the unacknowledged launch at most every `command_resend_s`, which is harmless);
 4. a heartbeat carrying a moved `command_ack` (so the master stops re-sending commands);
 5. a heartbeat when the interval (± jitter) has passed.
After a failed call nothing is sent until the back-off ends (exponential, capped).

Rules this file keeps (and tests check):
- Commands are applied once each, in id order; `Launch` is idempotent by task number.
- Updates are numbered from one counter, kept until `update_ack` covers them, sent oldest first
  (`edgerm_agent.updates.UpdateQueue`).
- Every call after the first registration carries agent_id, seq (strictly growing) and mac;
  replies with a wrong mac or seq are dropped and count as a failed call. On an OSCORE link
  (`oscore` set by the shell: CoAP) those calls go out bare instead (`OutgoingCall.protected`):
  the link protects them with `oscore_context()` and `seq` as the Partial IV and hands back
  the verified replies (`receive_reply(..., protected=True)`); an unprotected reply to a
  protected call counts only as an error (a plain 4.01/5.03), like today's unsigned ones.
- seq never goes back, not even across a restart, so no recorded call becomes valid again (the
  master refuses a re-registration whose seq does not pass every seq it has seen). The
  snapshot holds `seq_bound`, a bound ahead of the seq (as OSCORE's sender sequence number,
  RFC 8613 §7.5.1): a restarted agent starts from it, and the next bound is set (`dirty`)
  `_SEQ_RESERVE // 2` calls before the seq reaches it, so it is on disk long before then.
- `dirty` is set whenever state that must survive a SIGKILL changed; the shell writes the
  checkpoint (`snapshot()`) before it sends the next call, so nothing leaves the agent that the
  agent could forget: a `command_ack` only goes out after the launched task is on disk, an
  update only after it is in the queue on disk.
- Dropping acknowledged updates does not set `dirty`: it rides along with the next write, or
  with the next steady heartbeat at the latest. After a crash the agent may resend an update
  the master already has; the master re-acknowledges it (updates are applied by id, once), so
  the launch path saves one checkpoint write per acknowledged update.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any, cast

from edgerm.oscore import SecurityContext, agent_context
from edgerm.wire import (
    NONCE_LEN,
    PROTOCOL_VERSION,
    DecodeError,
    Limits,
    decode,
    derive_secret,
    encode,
    pb,
    sign,
    token_key,
    verify,
)
from edgerm_agent.core_types import (
    EXECUTOR_OF_KIND,
    TERMINAL_STATES,
    CoreConfig,
    TaskRecord,
)
from edgerm_agent.core_types import InFlight as _InFlight
from edgerm_agent.events import (
    Event,
    FetchModule,
    KillTask,
    LaunchTask,
    ModuleChunk,
    ModuleFailed,
    OutgoingCall,
    Refused,
    Registered,
    SwitchMaster,
)
from edgerm_agent.updates import UpdateQueue

__all__ = ["AgentCore", "CoreConfig", "TaskRecord", "TERMINAL_STATES", "EXECUTOR_OF_KIND"]

# Replies may carry module chunks larger than control traffic; everything else keeps the
# codec's defaults.
_REPLY_LIMITS = Limits(max_bytes=1024 * 1024)

# Updates sent ahead of a moved command_ack (see the module docstring, priority 3).
_UPDATES_BEFORE_ACK = 2

# Terminal tasks whose final update is acknowledged are kept (for Launch idempotency and Kill
# re-reports) up to this many; the oldest are forgotten first.
_KEEP_TERMINAL = 256


# How far ahead of the seq the checkpoint's bound is: one checkpoint write per this many calls
# at most (a steady heartbeat writes nothing else), and a restart skips fewer than this many.
_SEQ_RESERVE = 1024
# A checkpoint from before `seq_bound` holds a seq written with the last change, not with each
# steady heartbeat since: start this far past it (~a week of 10 s heartbeats). If that is still
# not past what the master saw, its refusals send the agent to a fresh registration.
_LEGACY_SEQ_GAP = 1 << 16

# Unsigned UNAUTHENTICATED answers to our signed re-registration, in a row, after which the
# identity is taken as unknown to the master (the MicroPython agent uses the same number).
REFUSALS_TO_FORGET_IDENTITY = 3

# NOT_LEADER refusals in a row that name a leader and are followed without a back-off (masters
# in the middle of a failover may name each other for a moment: then back off as usual).
_FOLLOW_AT_ONCE = 3



# ---------------------------------------------------------------------------------------------

class AgentCore:
    """The agent link state machine. See the module docstring for the contract."""

    def __init__(self, config: CoreConfig, *, rng: random.Random | None = None,
                 snapshot: dict[str, Any] | None = None) -> None:
        self.config = config
        self._rng = rng or random.Random()
        self.agent_id = 0
        self.secret = b""
        self.seq = 0
        #: every seq below it may have been used (what the checkpoint holds): see the rules.
        self.seq_bound = 0
        self.command_ack = 0
        self.tasks: dict[int, TaskRecord] = {}
        self._updates = UpdateQueue()
        self._events: deque[Event] = deque()
        self._module_requests: deque[pb.ModuleRequest] = deque()
        self._want_observe = False
        self.registered = False
        self.heartbeat_s = config.heartbeat_s
        self.jitter_s = 0.0
        self._acked_command_ack = 0
        self._in_flight: _InFlight | None = None
        self._failures = 0
        self._refusals = 0  # unsigned refusals of our re-registration in a row
        self._retry_at: float | None = None
        self._next_heartbeat: float | None = None
        self._started = False
        #: set when snapshot() would return something new; the shell clears it after writing.
        self.dirty = False
        #: the snapshot is out of date in a way that may wait (acknowledged updates dropped).
        self._stale = False
        #: updates sent since command_ack last moved past what the master acknowledged.
        self._updates_ahead_of_ack = 0
        #: counters for logs and tests.
        self.stats: dict[str, int] = {"bad_replies": 0, "failed_calls": 0, "commands": 0}
        #: the link protects calls after the first registration with OSCORE (CoAP); set by
        #: the shell for its link.
        self.oscore = False
        self._oscore_ctx: tuple[int, bytes, SecurityContext] | None = None
        if snapshot is not None:
            self._restore(snapshot)

    # -- persistence ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state that must survive a SIGKILL."""
        self._stale = False
        return {
            "version": 1,
            "agent_id": self.agent_id,
            "secret": self.secret.hex(),
            "seq": self.seq,
            "seq_bound": self.seq_bound,
            "command_ack": self.command_ack,
            "update_next": self._updates.next_id,
            "updates": self._updates.to_json(),
            "tasks": [
                {"task": t.task, "spec": encode(t.spec).hex(), "state": t.state,
                 "reason": t.reason, "message": t.message, "exit_code": t.exit_code,
                 "update_id": t.update_id, "kill": t.kill_reason}
                for t in self.tasks.values()
            ],
        }

    def _restore(self, snap: dict[str, Any]) -> None:
        self.agent_id = int(snap.get("agent_id", 0))
        self.secret = bytes.fromhex(snap.get("secret", ""))
        seq = int(snap.get("seq", 0))
        bound = int(snap.get("seq_bound", seq + _LEGACY_SEQ_GAP))
        # Calls up to `bound - 1` may have left before the crash: go on from there, and have
        # the next bound written before the first call (the shell saves a dirty core first).
        self.seq = max(seq, bound - 1)
        self.seq_bound = self.seq + _SEQ_RESERVE
        self.dirty = True
        self.command_ack = int(snap.get("command_ack", 0))
        self._acked_command_ack = self.command_ack
        self._updates.load(snap.get("updates", []), int(snap.get("update_next", 1)))
        for raw in snap.get("tasks", []):
            rec = TaskRecord(
                task=int(raw["task"]), spec=decode(pb.TaskSpec, bytes.fromhex(raw["spec"])),
                state=int(raw["state"]), reason=int(raw.get("reason", 0)),
                message=str(raw.get("message", "")), exit_code=int(raw.get("exit_code", 0)),
                update_id=int(raw.get("update_id", 0)), kill_reason=int(raw.get("kill", 0)))
            self.tasks[rec.task] = rec

    # -- inputs --------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Begin the session: the first call is always a registration."""
        self._started = True
        self.registered = False
        self._retry_at = None
        self._next_heartbeat = now

    def task_changed(self, task: int, state: int, *, reason: int = pb.REASON_UNSPECIFIED,
                     message: str = "", exit_code: int = 0) -> bool:
        """An executor reports a new state for `task`; queues a StatusUpdate.

        Returns False (and changes nothing) when the task is unknown, already terminal (the
        first terminal state wins a race between exit and kill), or already in `state`.
        """
        rec = self.tasks.get(task)
        if rec is None or rec.terminal or rec.state == state:
            return False
        self._set_state(rec, state, reason, message, exit_code)
        return True

    def publish(self, task: int, data: bytes, topic: str = "") -> bool:
        """Queue data published by `task`. False when the queue is full (try later)."""
        rec = self.tasks.get(task)
        if rec is None:
            return False
        if self._updates.publishes() >= self.config.max_queued_publishes:
            return False
        self._updates.add_publish(task, data, topic)
        self.dirty = True
        return True

    def publish_room(self) -> int:
        return max(0, self.config.max_queued_publishes - self._updates.publishes())

    def request_module(self, sha256: bytes, offset: int, length: int = 0) -> None:
        """Ask the master for a piece of a module over the call channel (WebSocket)."""
        self._module_requests.append(pb.ModuleRequest(sha256=sha256, offset=offset,
                                                      length=length))

    def request_observe(self) -> None:
        """The shell wants a push channel (CoAP Observe on `c`): the next call is its signed
        registration heartbeat, kind "observe", answered like a heartbeat."""
        self._want_observe = True

    def observe_refused(self) -> None:
        """The master (a gateway) serves no Observe: the shell asks no more; heartbeats go."""
        self._want_observe = False

    def handle_timer(self, now: float) -> None:
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None

    def call_failed(self, now: float) -> None:
        """The call in flight got no usable reply (timeout, connection lost, bad reply)."""
        flight, self._in_flight = self._in_flight, None
        if flight is None:
            return
        self.stats["failed_calls"] += 1
        self._failures += 1
        if flight.kind == "module" and flight.module is not None:
            # Retried after the back-off, at the front of the queue.
            self._module_requests.appendleft(flight.module)
        elif flight.kind == "observe":
            self._want_observe = True
        self._back_off(now)

    def master_changed(self, now: float) -> None:
        """The shell moved to another master: re-register there (same identity, with every
        task and the next update id, so nothing is relaunched and no update is lost). The
        call in flight, if any, was to the old master and counts as failed."""
        if self._in_flight is not None:
            flight, self._in_flight = self._in_flight, None
            if flight.kind == "module" and flight.module is not None:
                self._module_requests.appendleft(flight.module)
        self.registered = False
        self._want_observe = False

    def oscore_context(self) -> SecurityContext:
        """This identity's OSCORE context (sender kid(agent_id), recipient the master's b""),
        derived once per identity."""
        cached = self._oscore_ctx
        if cached is None or cached[0] != self.agent_id or cached[1] != self.secret:
            cached = (self.agent_id, self.secret, agent_context(self.secret, self.agent_id))
            self._oscore_ctx = cached
        return cached[2]

    def receive_reply(self, data: bytes, now: float, protected: bool = False) -> None:
        """The reply to the call in flight; `protected`: OSCORE verified it (its inner
        payload, without seq or mac)."""
        flight = self._in_flight
        if flight is None:
            self.stats["bad_replies"] += 1
            return
        try:
            reply = decode(pb.AgentReply, data, _REPLY_LIMITS)
        except DecodeError:
            self.stats["bad_replies"] += 1
            self.call_failed(now)
            return
        if protected:
            self._accept_reply(flight, reply, self.secret, now)
            return
        # An error to a call the master could not authenticate cannot echo its seq (nor be
        # signed): seq 0 with an error is the answer to the call in flight.
        if reply.seq != flight.seq and not (reply.seq == 0 and reply.HasField("error")):
            self.stats["bad_replies"] += 1
            self.call_failed(now)
            return
        if reply.HasField("error"):
            self._refused(flight, reply, now)
            return
        key = self.secret
        if flight.kind == "register" and flight.fresh and reply.HasField("registered"):
            key = derive_secret(self.config.token, flight.nonce, reply.registered.nonce)
        # (On an OSCORE link only a first registration's reply may be signed: no downgrade.)
        if not (key and verify(reply, key)) or (self.oscore and not flight.fresh):
            self.stats["bad_replies"] += 1
            self.call_failed(now)
            return
        self._accept_reply(flight, reply, key, now)

    def _refused(self, flight: _InFlight, reply: pb.AgentReply, now: float) -> None:
        """The master refused the call in flight (`reply.error`)."""
        self._in_flight = None
        self._on_error(flight, reply, now)
        self._events.append(Refused(flight.kind, reply.error.code, reply.error.message,
                                    flight.fresh, self._retry_at))

    def _accept_reply(self, flight: _InFlight, reply: pb.AgentReply, key: bytes,
                      now: float) -> None:
        """An authentic reply to the call in flight (`key`: the secret it was verified with,
        or this identity's for an OSCORE reply)."""
        if reply.HasField("error"):
            self._refused(flight, reply, now)
            return
        self._in_flight = None
        self._failures = 0
        self._refusals = 0
        self._retry_at = None
        if flight.kind == "register":
            if not reply.HasField("registered"):
                self.stats["bad_replies"] += 1
                self._back_off(now)
                return
            self._on_registered(flight, reply.registered, key)
        elif flight.kind == "heartbeat":
            if flight.command_ack > self._acked_command_ack:
                self._acked_command_ack = flight.command_ack
        elif flight.kind == "module" and flight.module is not None:
            if reply.HasField("module") and reply.module.sha256 == flight.module.sha256:
                m = reply.module
                self._events.append(ModuleChunk(m.sha256, m.offset, m.total, m.data))
            else:
                self._events.append(ModuleFailed(flight.module.sha256, "no module in reply"))
        self._apply_reply(reply)
        self._schedule_heartbeat(now)

    def receive_push(self, data: bytes, now: float, seq: int = 0,
                     protected: bool = False) -> None:
        """A reply the master pushed: commands and update_ack, authenticated. Its seq is 0, or
        `seq` for CoAP notifications that echo the Observe registration's call; `protected`:
        an Observe notification OSCORE verified (no seq, no mac)."""
        try:
            reply = decode(pb.AgentReply, data, _REPLY_LIMITS)
        except DecodeError:
            self.stats["bad_replies"] += 1
            return
        if not self.registered or (not protected and (
                self.oscore or reply.seq not in (0, seq) or not verify(reply, self.secret))):
            self.stats["bad_replies"] += 1
            return
        if reply.HasField("error") or reply.HasField("registered"):
            self.stats["bad_replies"] += 1
            return
        self._apply_reply(reply)

    # -- outputs -------------------------------------------------------------------------------

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When `handle_timer`/`next_call` next has something to do; None: only on input."""
        if self._in_flight is not None or not self._started:
            return None
        if self._retry_at is not None:
            return self._retry_at
        if self._has_urgent():
            return float("-inf")
        return self._next_heartbeat

    def next_call(self, now: float) -> OutgoingCall | None:
        """The next call to send, signed; None when nothing is due or one is in flight."""
        if self._in_flight is not None or not self._started:
            return None
        if self._retry_at is not None:
            if now < self._retry_at:
                return None
            self._retry_at = None
        if not self.registered:
            return self._register_call()
        if self._want_observe:
            self._want_observe = False
            return self._send(pb.AgentCall(heartbeat=pb.Heartbeat()), _InFlight(0, "observe"))
        if self._module_requests:
            req = self._module_requests.popleft()
            call = pb.AgentCall(module=req)
            return self._send(call, _InFlight(0, "module", module=req))
        ack_due = self.command_ack > self._acked_command_ack
        if ack_due and (not self._updates or self._updates_ahead_of_ack >= _UPDATES_BEFORE_ACK):
            return self._heartbeat_call()
        head = self._updates.head()
        if head is not None:
            if ack_due:
                self._updates_ahead_of_ack += 1
            return self._send(head.call(), _InFlight(0, "update", update_id=head.update_id))
        if self._next_heartbeat is not None and now >= self._next_heartbeat:
            return self._heartbeat_call()
        return None

    @property
    def pending_updates(self) -> int:
        return len(self._updates)

    # -- internals -----------------------------------------------------------------------------

    def _has_urgent(self) -> bool:
        if not self.registered:
            return True
        return bool(self._want_observe or self._module_requests or self._updates
                    or self.command_ack > self._acked_command_ack)

    def take_seq(self) -> int:
        """The next sequence number (a call's seq, OSCORE's Partial IV), never used before.
        A gateway's POST `g` takes one too (it speaks as this agent, `Agent.uplink_call`)."""
        self.seq += 1
        if self.seq + _SEQ_RESERVE // 2 >= self.seq_bound:
            # Written before the next call (the shell saves a dirty core first), while this
            # seq is still far below the bound on disk.
            self.seq_bound = self.seq + _SEQ_RESERVE
            self.dirty = True
        return self.seq

    def _send(self, call: pb.AgentCall, flight: _InFlight) -> OutgoingCall:
        flight.seq = self.take_seq()
        if self.oscore and not flight.fresh:
            # Bare: OSCORE's kid and Partial IV are the agent_id and seq, its tag the mac.
            self._in_flight = flight
            return OutgoingCall(self.seq, flight.kind, encode(call), True)
        call.seq = self.seq
        if flight.fresh:
            data = sign(call, token_key(self.config.token))
        else:
            call.agent_id = self.agent_id
            data = sign(call, self.secret)
        self._in_flight = flight
        return OutgoingCall(self.seq, flight.kind, data)

    def _register_call(self) -> OutgoingCall:
        reg = pb.Register(name=self.config.name, protocol_version=PROTOCOL_VERSION,
                          max_payload=self.config.max_payload)
        reg.resources.CopyFrom(self.config.resources)
        reg.attributes.extend(self.config.attributes)
        reg.executors.extend(self.config.executors)
        fresh = not (self.agent_id and self.secret)
        if fresh:
            # The token never crosses the link: the call is signed with its key, and the secret
            # is derived from it and the two nonces (docs/protocol.md, "Authentication").
            reg.nonce = self._rng.randbytes(NONCE_LEN)
        else:
            # The id of our oldest unacknowledged update (or the next new one): the master
            # treats everything below it as delivered, so it must not skip queued updates.
            reg.update_next = self._updates.first_unacked()
            for rec in sorted(self.tasks.values(), key=lambda r: r.task):
                # Non-terminal tasks, and terminal ones whose final update the master may not
                # have yet: otherwise it would fail a finished task as AGENT_RESTARTED.
                if not rec.terminal or rec.update_id >= self._updates.first_unacked():
                    reg.tasks.append(pb.TaskReport(task=rec.task, state=cast(Any, rec.state)))
        return self._send(pb.AgentCall(register=reg),
                          _InFlight(0, "register", fresh=fresh, nonce=reg.nonce))

    def _heartbeat_call(self) -> OutgoingCall:
        if self._stale:
            self.dirty = True  # written after this call: the shell saves before the next one
        self._updates_ahead_of_ack = 0
        hb = pb.Heartbeat()
        if self.command_ack != self._acked_command_ack:
            hb.command_ack = self.command_ack
        return self._send(pb.AgentCall(heartbeat=hb),
                          _InFlight(0, "heartbeat", command_ack=self.command_ack))

    def _schedule_heartbeat(self, now: float) -> None:
        jitter = self._rng.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s else 0.0
        self._next_heartbeat = now + max(0.0, self.heartbeat_s + jitter)

    def _back_off(self, now: float) -> None:
        n = max(1, self._failures)
        delay = min(self.config.backoff_max_s,
                    self.config.backoff_initial_s * 2 ** min(n - 1, 30))
        # ±10 % so that agents cut off together do not come back in lockstep.
        delay *= self._rng.uniform(0.9, 1.1)
        self._retry_at = now + delay

    def _on_error(self, flight: _InFlight, reply: pb.AgentReply, now: float) -> None:
        code = reply.error.code
        if code == pb.NOT_LEADER:
            # A standby (unsigned, like every refusal): ask the shell to move; the call is
            # retried there, at once while a named leader is being followed.
            if flight.kind == "module" and flight.module is not None:
                self._module_requests.appendleft(flight.module)
            self._failures += 1
            self._back_off(now)
            if reply.error.leader and self._failures <= _FOLLOW_AT_ONCE:
                self._retry_at = now
            self._events.append(SwitchMaster(reply.error.leader))
            return
        if code == pb.UNAUTHENTICATED:
            if flight.kind == "register" and not flight.fresh:
                # The master does not know this identity: start afresh with the token. A refusal
                # cannot be signed, so one could be forged: only several in a row, spread by the
                # back-off, make the agent give up an identity and the tasks that go with it.
                self._refusals += 1
                if self._refusals >= REFUSALS_TO_FORGET_IDENTITY:
                    self._refusals = 0
                    self._forget_identity()
            self.registered = False
            self._failures += 1
            self._back_off(now)
            if self._failures == 1 and not flight.fresh:
                # Re-register at once the first time (the master restarted or forgot us). A
                # refused first registration (wrong token) will not pass by retrying: back off.
                self._retry_at = now
            return
        if flight.kind == "module" and flight.module is not None and code in (
                pb.NOT_FOUND, pb.BAD_REQUEST, pb.TOO_LARGE):
            self._events.append(ModuleFailed(flight.module.sha256, reply.error.message))
            return
        if flight.kind == "update" and code in (pb.BAD_REQUEST, pb.TOO_LARGE, pb.NOT_FOUND):
            # The master will never take this update; keeping it would block the queue.
            if self._updates.drop_refused(flight.update_id):
                self.dirty = True
            return
        # UNAVAILABLE, INTERNAL, UNSUPPORTED, anything else: try again later.
        self._failures += 1
        self._back_off(now)

    def _forget_identity(self) -> None:
        """Our identity is gone at the master: tasks it gave us belong to nobody now."""
        self.agent_id = 0
        self.secret = b""
        self.command_ack = 0
        self._acked_command_ack = 0
        self._updates.reset()
        for rec in self.tasks.values():
            if not rec.terminal:
                self._events.append(KillTask(rec.task, pb.AGENT_RESTARTED))
        self.tasks.clear()
        self.dirty = True

    def _on_registered(self, flight: _InFlight, reg: pb.Registered, secret: bytes) -> None:
        """`secret`: the key the reply was verified with (derived, for a first registration)."""
        fresh = flight.fresh or reg.agent_id != self.agent_id
        if fresh and self.agent_id and reg.agent_id != self.agent_id:
            self._forget_identity()
        self.agent_id = reg.agent_id
        self.secret = secret
        if reg.heartbeat_ms:
            self.heartbeat_s = reg.heartbeat_ms / 1000.0
        self.jitter_s = reg.jitter_ms / 1000.0
        self.registered = True
        # The master may never have got our last command_ack (it restarted, or the heartbeat
        # carrying it was lost just before a ReRegister): send it again with the next
        # heartbeat, or it re-sends those commands forever (we skip ids we applied).
        self._acked_command_ack = 0
        self._drop_acked(reg.update_ack)
        self._updates.next_id = max(self._updates.next_id, reg.update_ack + 1)
        head = self._updates.head()
        if head is not None and head.update_id != reg.update_ack + 1:
            self._renumber(reg.update_ack + 1)
        self._events.append(Registered(self.agent_id, fresh))
        self.dirty = True

    def _renumber(self, first: int) -> None:
        for status in self._updates.renumber(first):
            rec = self.tasks.get(status.task)
            if rec is not None and rec.state == status.state:
                rec.update_id = status.update_id

    def _apply_reply(self, reply: pb.AgentReply) -> None:
        self._drop_acked(reply.update_ack)
        for cmd in sorted(reply.commands, key=lambda c: c.id):
            if cmd.id <= self.command_ack:
                continue
            self._apply_command(cmd)
            self.command_ack = cmd.id
            self.stats["commands"] += 1
            self.dirty = True

    def _drop_acked(self, update_ack: int) -> None:
        if self._updates.drop_acked(update_ack):
            self._stale = True  # not urgent: see the module docstring
            self._prune_tasks()

    def _prune_tasks(self) -> None:
        first_unacked = self._updates.first_unacked()
        done = [r.task for r in self.tasks.values()
                if r.terminal and r.update_id < first_unacked]
        for task in done[: max(0, len(done) - _KEEP_TERMINAL)]:
            del self.tasks[task]

    def _apply_command(self, cmd: pb.Command) -> None:
        kind = cmd.WhichOneof("command")
        if kind == "launch":
            self._launch(cmd.launch)
        elif kind == "kill":
            self._kill(cmd.kill.task)
        elif kind == "fetch":
            self._events.append(FetchModule(bytes(cmd.fetch.sha256), cmd.fetch.size))
        elif kind == "reregister":
            self.registered = False

    def _launch(self, launch: pb.Launch) -> None:
        if launch.task in self.tasks:
            return  # idempotent: the task's state is already on its way
        spec = pb.TaskSpec()
        spec.CopyFrom(launch.spec)
        rec = TaskRecord(task=launch.task, spec=spec, state=pb.STAGING)
        self.tasks[launch.task] = rec
        problem = self._check_launch(rec)
        if problem is not None:
            reason, message = problem
            self._set_state(rec, pb.ERROR, reason, message, 0)
            return
        self._set_state(rec, pb.STARTING, pb.REASON_UNSPECIFIED, "", 0)
        self._events.append(LaunchTask(rec.task, spec))

    def _check_launch(self, rec: TaskRecord) -> tuple[int, str] | None:
        kind = rec.spec.WhichOneof("kind")
        if kind is None:
            return pb.INVALID_TASK, "the task names no executor (docker, wasm, micropython)"
        if rec.executor not in self.config.executors:
            return pb.UNSUPPORTED_EXECUTOR, f"this agent has no {kind} executor"
        want = rec.spec.resources
        used_cpus = used_mem = 0.0
        for other in self.tasks.values():
            if other.task != rec.task and not other.terminal:
                used_cpus += other.spec.resources.cpus
                used_mem += other.spec.resources.mem_mb
        have = self.config.resources
        eps = 1e-9
        if want.cpus > 0 and used_cpus + want.cpus > have.cpus + eps:
            return pb.RESOURCES_UNAVAILABLE, (
                f"cpus {want.cpus:g} asked, {max(0.0, have.cpus - used_cpus):g} free")
        if want.mem_mb > 0 and used_mem + want.mem_mb > have.mem_mb + eps:
            return pb.RESOURCES_UNAVAILABLE, (
                f"mem_mb {want.mem_mb:g} asked, {max(0.0, have.mem_mb - used_mem):g} free")
        known = {d.name for d in have.devices}
        for dev in want.devices:
            if dev.name not in known:
                return pb.RESOURCES_UNAVAILABLE, f"no device {dev.name!r} on this agent"
        return None

    def _kill(self, task: int) -> None:
        rec = self.tasks.get(task)
        if rec is None:
            # Remember it, so that a launch arriving late for this number stays dead.
            rec = TaskRecord(task=task, spec=pb.TaskSpec(), state=pb.STAGING)
            self.tasks[task] = rec
            self._set_state(rec, pb.KILLED, pb.KILLED_BEFORE_LAUNCH, "", 0)
            return
        if rec.terminal:
            self._queue_status(rec)  # report the terminal state again
            return
        rec.kill_reason = pb.KILL_REQUESTED
        self.dirty = True
        self._events.append(KillTask(task, pb.KILL_REQUESTED))

    def _set_state(self, rec: TaskRecord, state: int, reason: int, message: str,
                   exit_code: int) -> None:
        rec.state = state
        rec.reason = reason
        rec.message = message
        rec.exit_code = exit_code
        self._queue_status(rec)

    def _queue_status(self, rec: TaskRecord) -> None:
        rec.update_id = self._updates.add_status(rec.task, rec.state, rec.reason, rec.message,
                                                 rec.exit_code)
        self.dirty = True
