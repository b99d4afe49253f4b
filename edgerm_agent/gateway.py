"""The gateway's sans-IO core: which device calls go upstream when, in which batch, and what each
device is answered (docs/gateway.md).

A gateway relays the agent calls of the constrained agents behind it (MicroPython, the C core) to
the master, several in one `GatewayBatch` over CoAP `g`, and hands each device the master's signed
reply. It never signs nor alters anything: a call's bytes are the device's, a reply's bytes the
master's, so the agent-link MAC keeps holding end to end and the gateway needs no device secret.

The core decides; the Trio shell (`gateway_shell.py`) does the I/O. Inputs: `device_call` (a
device's POST `a`), `row_durable` (a kept update reached the disk), `poll(now)` (the batch to send
now, if any), `batch_result` (the master's replies, or None when the uplink failed), `call_gone`
(a device stopped waiting). Outputs are effects: `Answer`, `Persist`, `Forget`, `Reading`,
`DeviceName`. Time comes in as `now`; `next_timer()` says when `poll` has something to do.

Rules, and why:
- **Order per device.** The master refuses a call whose `seq` is not above the device's last one,
  so a device's calls must reach it in the order they came. One batch is in flight at a time,
  kept updates go first in every batch (oldest first) and live calls after them.
- **Store and forward, no lying acks.** A status update or publish is written to the on-disk
  queue (`Persist`) before it goes upstream, once per (device, update_id), and forgotten only
  when the master answered it. While the uplink is down, a device is answered UNAVAILABLE
  (unsigned, seq 0: "try again"), never an ack: its update stays queued on the device too, and the
  device sees it acknowledged only by the master's signed `update_ack`. When the uplink returns
  the kept calls go first; the master applies each update exactly once (update ids), and a
  repeat of one it already has is answered without effect.
- **Aggregation.** A live call waits at most `window_s` for others to share its batch (or until
  `batch_max` calls wait); kept updates go at once.
- **A newer call supersedes a waiting one.** A device that sends a new call has given up on its
  earlier one (its CoAP exchange timed out, which can be sooner than the shell's reply timeout),
  so that device's live call still waiting here is dropped and answered "try again" instead of
  going upstream after all: a first registration retried with a fresh nonce would otherwise
  reach the master twice and leave it an abandoned second agent. A device is its agent id, or,
  for a first registration (no agent id yet), its source address and name. Kept rows are never
  dropped (the master applies each exactly once). A call already in flight cannot be called
  back; the newer one waits for the next batch, which leaves only after the in-flight one was
  answered, so a device never has two batches' calls upstream at once.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from edgerm.coap.codes import Code
from edgerm.wire import DecodeError, decode, encode, pb

__all__ = ["Answer", "Batch", "DeviceName", "Forget", "GatewayCore", "GatewaySettings",
           "Persist", "Reading", "Row", "coap_code", "unavailable"]

E = pb.ErrorCode
# The master's mapping of AgentReply errors to CoAP codes (edgerm_master.service.ERROR_TO_COAP),
# so a device behind a gateway sees the code it would see from the master.
_ERROR_TO_COAP = {
    0: Code.CHANGED, E.BAD_REQUEST: Code.BAD_REQUEST, E.UNAUTHENTICATED: Code.UNAUTHORIZED,
    E.FORBIDDEN: Code.FORBIDDEN, E.NOT_FOUND: Code.NOT_FOUND, E.CONFLICT: Code.CONFLICT,
    E.TOO_LARGE: Code.REQUEST_ENTITY_TOO_LARGE, E.INVALID_OFFER: Code.BAD_REQUEST,
    E.UNSUPPORTED: Code.NOT_IMPLEMENTED, E.UNAVAILABLE: Code.SERVICE_UNAVAILABLE,
    E.INTERNAL: Code.INTERNAL_SERVER_ERROR, E.NOT_LEADER: Code.SERVICE_UNAVAILABLE,
}


def coap_code(reply: bytes) -> int:
    """The CoAP code the master answered `reply` with (read from its error, untrusted)."""
    try:
        msg = decode(pb.AgentReply, reply)
    except DecodeError:
        return Code.BAD_GATEWAY
    if not msg.HasField("error"):
        return Code.CHANGED
    return _ERROR_TO_COAP.get(msg.error.code, Code.BAD_REQUEST)


def unavailable(message: str) -> bytes:
    """The unsigned "try again" a device gets while its call cannot reach the master: seq 0, as
    every unsigned refusal (docs/protocol.md), so the device backs off and retries."""
    return encode(pb.AgentReply(error=pb.Error(code=E.UNAVAILABLE, message=message)))


@dataclass(frozen=True, slots=True)
class Row:
    """A device's status update or publish, kept on disk until the master answered it."""
    row_id: int        # the queue's order: oldest first
    agent_id: int
    update_id: int
    data: bytes        # the AgentCall exactly as the device signed it


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer the device call `call_id` with this CoAP code and payload."""
    call_id: int
    code: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Persist:
    """Write `row` to the queue, then call `row_durable(row.row_id)`."""
    row: Row


@dataclass(frozen=True, slots=True)
class Forget:
    """The master answered these rows: delete them from the queue."""
    row_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Reading:
    """A device published `data` under `topic`: the device's latest reading, for local tasks."""
    device: str
    topic: str
    data: bytes


@dataclass(frozen=True, slots=True)
class DeviceName:
    """The master registered `agent_id` under `name` (kept so readings carry the name)."""
    agent_id: int
    name: str


@dataclass(frozen=True, slots=True)
class Batch:
    """Send these calls upstream as one `GatewayBatch`; report with `batch_result(batch_id)`."""
    batch_id: int
    calls: tuple[bytes, ...]


Effect = Answer | Persist | Forget | Reading | DeviceName


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    window_s: float = 0.002      # how long a live call waits for others to share its batch
    batch_max: int = 32          # calls in one batch (the master takes up to 64)
    queue_max: int = 10_000      # kept updates on disk; beyond it a device gets UNAVAILABLE
    retry_s: float = 0.5         # first pause before trying a failed uplink again
    retry_max_s: float = 10.0    # the pause doubles up to this


@dataclass(slots=True)
class _Entry:
    """One call in the next or current batch: a live call, a kept row, or a row with a waiter."""
    data: bytes
    call_id: int = 0                # 0: nobody waits for the answer (a row sent again)
    row_id: int = 0                 # 0: not kept
    register: str | None = None     # a registration's name
    agent_id: int = 0
    device: object = None           # who sent it (`_device_key`); None: not superseded


@dataclass(slots=True)
class _Row:
    row: Row
    durable: bool = False
    call_id: int = 0                # the device call waiting on this row's first delivery
    register: str | None = None


@dataclass(slots=True)
class _InFlight:
    batch_id: int
    entries: list[_Entry] = field(default_factory=list)


class GatewayCore:
    """The relay's decisions. `rows` and `names` come from the queue after a restart."""

    def __init__(self, settings: GatewaySettings, *, rows: tuple[Row, ...] = (),
                 names: dict[int, str] | None = None) -> None:
        self.settings = settings
        self.names: dict[int, str] = dict(names or {})
        self._rows: OrderedDict[int, _Row] = OrderedDict(
            (r.row_id, _Row(r, durable=True)) for r in sorted(rows, key=lambda r: r.row_id))
        self._row_keys = {(r.agent_id, r.update_id): r.row_id for r in rows}
        self._next_row = max((r.row_id for r in rows), default=0) + 1
        self._live: list[_Entry] = []
        self._window_start: float | None = None
        self._inflight: _InFlight | None = None
        self._next_batch = 1
        self.up = True
        self._retry_at = 0.0
        self._retry_s = settings.retry_s
        #: counters for logs, tests and the bench.
        self.stats = {"batches": 0, "calls": 0, "failed_batches": 0, "kept": 0,
                      "refused_full": 0, "superseded": 0, "unavailable": 0}

    # -- inputs -------------------------------------------------------------------------------

    def device_call(self, call_id: int, data: bytes, now: float, source: object = None
                    ) -> list[Effect]:
        """A device's AgentCall bytes (untrusted; relayed as they are). `source` is the device's
        address (hashable), which tells a first registration's retry from another device's."""
        try:
            call = decode(pb.AgentCall, data)
        except DecodeError as e:
            return [Answer(call_id, Code.BAD_REQUEST, encode(pb.AgentReply(error=pb.Error(
                code=E.BAD_REQUEST, message=f"not an AgentCall: {e}"))))]
        kind = call.WhichOneof("call")
        effects: list[Effect] = []
        register = call.register.name if kind == "register" else None
        device = _device_key(call.agent_id, register, source)
        if device is not None:
            effects.extend(self._supersede(device))
        kept: _Row | None = None
        if kind in ("status", "publish") and call.agent_id:
            update_id = call.status.update_id if kind == "status" else call.publish.update_id
            if kind == "publish":
                effects.append(Reading(self.device(call.agent_id), call.publish.topic,
                                       call.publish.data))
            key = (call.agent_id, update_id)
            if key not in self._row_keys:
                if len(self._rows) >= self.settings.queue_max:
                    self.stats["refused_full"] += 1
                    effects.append(Answer(call_id, Code.SERVICE_UNAVAILABLE, unavailable(
                        "the gateway's queue is full; try again later")))
                    return effects
                row = Row(self._next_row, call.agent_id, update_id, data)
                self._next_row += 1
                kept = _Row(row, call_id=call_id if self.up else 0)
                if self.up and self._window_start is None:
                    self._window_start = now
                self._rows[row.row_id] = kept
                self._row_keys[key] = row.row_id
                self.stats["kept"] += 1
                effects.append(Persist(row))
        if not self.up:
            self.stats["unavailable"] += 1
            effects.append(Answer(call_id, Code.SERVICE_UNAVAILABLE, unavailable(
                "the gateway's uplink to the master is down; updates are kept and delivered "
                "when it returns")))
            return effects
        if kept is None:
            self._live.append(_Entry(data, call_id=call_id, register=register,
                                     agent_id=call.agent_id, device=device))
            if self._window_start is None:
                self._window_start = now
        return effects

    def row_durable(self, row_id: int) -> None:
        row = self._rows.get(row_id)
        if row is not None:
            row.durable = True

    def call_gone(self, call_id: int) -> None:
        """The device stopped waiting (the shell's reply timeout): do not send a live call."""
        self._live = [e for e in self._live if e.call_id != call_id]
        if not self._live:
            self._window_start = None
        for row in self._rows.values():
            if row.call_id == call_id:
                row.call_id = 0

    # -- the uplink ---------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When `poll` will have a batch to send (absolute time), None: not until an input."""
        if self._inflight is not None or any(not r.durable for r in self._rows.values()):
            return None
        if not self.up:
            return self._retry_at
        if not self._rows and not self._live:
            return None
        if (self._window_start is None  # rows from the disk, or more than one batch held
                or len(self._rows) + len(self._live) >= self.settings.batch_max):
            return 0.0
        return self._window_start + self.settings.window_s

    def poll(self, now: float) -> Batch | None:
        """The batch to send now, or None. At most one is in flight."""
        due = self.next_timer()
        if due is None or now < due:
            return None
        entries: list[_Entry] = []
        for row in self._rows.values():
            if len(entries) >= self.settings.batch_max:
                break
            entries.append(_Entry(row.row.data, call_id=row.call_id, row_id=row.row.row_id,
                                  agent_id=row.row.agent_id))
            row.call_id = 0  # answered with this delivery; a re-send has nobody waiting
        if self.up and len(entries) == len(self._rows):
            # Every kept row goes before them, so live calls cannot overtake a device's row.
            room = self.settings.batch_max - len(entries)
            entries.extend(self._live[:room])
            self._live = self._live[room:]
        self._window_start = now if self._live else None
        # Down: only the kept rows go, as a probe (an empty batch when there are none).
        batch = _InFlight(self._next_batch, entries)
        self._next_batch += 1
        self._inflight = batch
        self.stats["batches"] += 1
        self.stats["calls"] += len(entries)
        return Batch(batch.batch_id, tuple(e.data for e in entries))

    def batch_result(self, batch_id: int, replies: list[bytes] | None, now: float
                     ) -> list[Effect]:
        """The master's replies to batch `batch_id` in order, or None: the uplink failed."""
        batch = self._inflight
        if batch is None or batch.batch_id != batch_id:
            return []
        self._inflight = None
        effects: list[Effect] = []
        if replies is None:
            self.stats["failed_batches"] += 1
            self.up = False
            self._retry_at = now + self._retry_s
            self._retry_s = min(self._retry_s * 2, self.settings.retry_max_s)
            for e in batch.entries:
                if e.call_id:
                    effects.append(Answer(e.call_id, Code.SERVICE_UNAVAILABLE, unavailable(
                        "the master did not answer the gateway; try again")))
            return effects
        self.up = True
        self._retry_s = self.settings.retry_s
        forgotten: list[int] = []
        for i, e in enumerate(batch.entries):
            if i >= len(replies):
                if e.call_id:  # a short answer: that call did not get through
                    effects.append(Answer(e.call_id, Code.SERVICE_UNAVAILABLE, unavailable(
                        "the master did not answer this call; try again")))
                continue
            reply = replies[i]
            code = coap_code(reply)
            if e.row_id:
                row = self._rows.pop(e.row_id, None)
                if row is not None:
                    self._row_keys.pop((row.row.agent_id, row.row.update_id), None)
                    forgotten.append(e.row_id)
            if e.call_id:
                effects.append(Answer(e.call_id, code, reply))
            if e.register is not None and code == Code.CHANGED:
                effects.extend(self._registered(e, reply))
        if forgotten:
            effects.append(Forget(tuple(forgotten)))
        return effects

    # -- helpers ------------------------------------------------------------------------------

    def _supersede(self, device: object) -> list[Effect]:
        """Drop `device`'s live calls still waiting here: it sent a newer one."""
        dropped = [e for e in self._live if e.device == device]
        if not dropped:
            return []
        self._live = [e for e in self._live if e.device != device]
        if not self._live:
            self._window_start = None
        self.stats["superseded"] += len(dropped)
        return [Answer(e.call_id, Code.SERVICE_UNAVAILABLE, unavailable(
            "a newer call from this device replaced this one; it was not sent")) for e in dropped
            if e.call_id]

    def device(self, agent_id: int) -> str:
        """A device's name for its readings: as registered, else its agent id."""
        return self.names.get(agent_id) or str(agent_id)

    def _registered(self, e: _Entry, reply: bytes) -> list[Effect]:
        try:
            msg = decode(pb.AgentReply, reply)
        except DecodeError:
            return []
        agent_id = msg.registered.agent_id or e.agent_id
        if not agent_id or not e.register or self.names.get(agent_id) == e.register:
            return []
        self.names[agent_id] = e.register
        return [DeviceName(agent_id, e.register)]

    @property
    def queued(self) -> int:
        """Kept updates not yet answered by the master."""
        return len(self._rows)


def _device_key(agent_id: int, register: str | None, source: object) -> object:
    """Which device a call is from, for superseding: its agent id; for a first registration its
    address and name (several simulated devices may share one address); None: unknown."""
    if agent_id:
        return ("agent", agent_id)
    if register is not None and source is not None:
        return ("register", source, register)
    return None
