"""The gateway's sans-IO core: which device requests go upstream when, in which batch, and what
each device is answered (docs/gateway.md).

A gateway is an OSCORE-aware forwarding proxy (RFC 8613 §4.1, made to pass proxies): the
constrained agents behind it (MicroPython, the C core) protect their requests end to end for the
master, and the gateway relays them, several in one `GatewayBatch` over CoAP `g`, as opaque entries
(`edgerm.oscore.pack_forwarded`: outer code, OSCORE option, ciphertext), and hands each device the
master's protected response. It can read no call and no reply, alter none undetected, and holds no
device secret. All it reads is what RFC 8613 leaves outside the encryption: the kid (the device's
agent id) and the Partial IV (its sequence number). A device's first registration is the one plain
call left (signed with the token's key) and passes through as it is.

The core decides; the Trio shell (`gateway_shell.py`) does the I/O. Inputs: `device_call` (a
device's request, as an entry), `row_durable` (a kept request reached the disk), `poll(now)` (the
batch to send now, if any), `batch_result` (the master's reply entries, or None when the uplink
failed), `call_gone` (a device stopped waiting). Outputs are effects: `Answer`, `Persist`,
`Forget`. Time comes in as `now`; `next_timer()` says when `poll` has something to do.

Rules, and why:
- **Order per device.** The master accepts a device's Partial IV only above the highest it
  accepted (its replay window), so a device's requests must reach it in the order they came.
  One batch is in flight at a time, kept requests go first in every batch (oldest first) and
  live requests after them.
- **Store and forward, blind, no lying acks.** While the uplink is down a device's protected
  request is answered UNAVAILABLE (plain, "try again") at once and kept on disk (`Persist`, at
  most `keep_per_device` per device), then delivered in order when the uplink returns. The
  gateway cannot tell a status update from a heartbeat any more, so it keeps whatever the device
  sent; the device keeps its own updates queued until the master's protected `update_ack`, so a
  kept request is a head start, never the only copy, and one the master already applied (its
  Partial IV is no longer fresh) is refused there and changes nothing.
- **Aggregation.** A live request waits at most `window_s` for others to share its batch (or
  until `batch_max` wait); kept requests go at once.
- **A newer request supersedes a waiting one.** A device that sends a new request has given up
  on its earlier one (its CoAP exchange timed out), so that device's live request still waiting
  here is dropped and answered "try again" instead of going upstream after all: a first
  registration retried with a fresh nonce would otherwise reach the master twice and leave it an
  abandoned second agent. A device is its kid (agent id), or, for a first registration, its
  source address and name. Kept requests are never dropped. A request already in flight cannot
  be called back; the newer one waits for the next batch, which leaves only after the in-flight
  one was answered.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from edgerm.coap.codes import Code
from edgerm.oscore import OscoreError, parse_request_option, unpack_forwarded
from edgerm.wire import DecodeError, decode, encode, pb

__all__ = ["Answer", "Batch", "Forget", "GatewayCore", "GatewaySettings", "Persist", "Row",
           "coap_code", "is_protected", "refusal", "unavailable"]

E = pb.ErrorCode
# The master's mapping of AgentReply errors to CoAP codes (edgerm_master.service.ERROR_TO_COAP),
# so a device behind a gateway sees the code it would see from the master for a plain reply.
_ERROR_TO_COAP = {
    0: Code.CHANGED, E.BAD_REQUEST: Code.BAD_REQUEST, E.UNAUTHENTICATED: Code.UNAUTHORIZED,
    E.FORBIDDEN: Code.FORBIDDEN, E.NOT_FOUND: Code.NOT_FOUND, E.CONFLICT: Code.CONFLICT,
    E.TOO_LARGE: Code.REQUEST_ENTITY_TOO_LARGE, E.INVALID_OFFER: Code.BAD_REQUEST,
    E.UNSUPPORTED: Code.NOT_IMPLEMENTED, E.UNAVAILABLE: Code.SERVICE_UNAVAILABLE,
    E.INTERNAL: Code.INTERNAL_SERVER_ERROR, E.NOT_LEADER: Code.SERVICE_UNAVAILABLE,
}
# An OSCORE Sender ID of an agent: 1..7 bytes (the contract: agent id, minimal big-endian).
_KID_MAX = 7
# A protected entry's first byte is its outer code: 0.02, 0.05, 2.04 or 2.05, all below the
# first byte of any CBOR map (0xA0..0xBF), which a plain AgentCall/AgentReply is.
_PLAIN_FIRST = 0x80


def is_protected(entry: bytes) -> bool:
    """Whether a batch entry is an OSCORE-protected message (`edgerm.oscore.pack_forwarded`:
    outer code, option length, option value, ciphertext), else a plain AgentCall/AgentReply."""
    return bool(entry) and entry[0] < _PLAIN_FIRST


def coap_code(reply: bytes) -> int:
    """The CoAP code the master answered a plain `reply` with (read from its error, untrusted)."""
    try:
        msg = decode(pb.AgentReply, reply)
    except DecodeError:
        return Code.BAD_GATEWAY
    if not msg.HasField("error"):
        return Code.CHANGED
    return _ERROR_TO_COAP.get(msg.error.code, Code.BAD_REQUEST)


def refusal(code: int, message: str) -> bytes:
    """A plain (unprotected, seq 0) `AgentReply{error}`, as every unprotected refusal."""
    return encode(pb.AgentReply(error=pb.Error(code=pb.ErrorCode.Name(code), message=message)))


def unavailable(message: str) -> bytes:
    """The plain "try again" a device gets while its call cannot reach the master, so the device
    backs off and retries."""
    return refusal(E.UNAVAILABLE, message)


@dataclass(frozen=True, slots=True)
class Row:
    """A device's protected request, kept on disk until the master answered it."""
    row_id: int        # the queue's order: oldest first
    agent_id: int      # the request's kid
    piv: int           # its Partial IV: (agent_id, piv) is unique
    data: bytes        # the entry exactly as the device protected it


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer the device call `call_id` with this CoAP code and payload; `oscore` is the OSCORE
    option value of a protected response (None: a plain one)."""
    call_id: int
    code: int
    payload: bytes
    oscore: bytes | None = None


@dataclass(frozen=True, slots=True)
class Persist:
    """Write `row` to the queue, then call `row_durable(row.row_id)`."""
    row: Row


@dataclass(frozen=True, slots=True)
class Forget:
    """The master answered these rows: delete them from the queue."""
    row_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Batch:
    """Send these entries upstream as one `GatewayBatch`; report with `batch_result(batch_id)`."""
    batch_id: int
    calls: tuple[bytes, ...]


Effect = Answer | Persist | Forget


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    window_s: float = 0.002      # how long a live call waits for others to share its batch
    batch_max: int = 32          # calls in one batch (the master takes up to 64)
    queue_max: int = 10_000      # kept requests on disk; beyond it nothing more is kept
    keep_per_device: int = 8     # kept requests of one device during a cut, the first ones
    retry_s: float = 0.5         # first pause before trying a failed uplink again
    retry_max_s: float = 10.0    # the pause doubles up to this


@dataclass(slots=True)
class _Entry:
    """One call in the next or current batch: a live call or a kept row."""
    data: bytes
    call_id: int = 0                # 0: nobody waits for the answer (a kept row)
    row_id: int = 0                 # 0: not kept
    device: object = None           # who sent it (`_device_key`); None: not superseded


@dataclass(slots=True)
class _Row:
    row: Row
    durable: bool = False


@dataclass(slots=True)
class _InFlight:
    batch_id: int
    entries: list[_Entry] = field(default_factory=list)


class _Refused(Exception):
    def __init__(self, code: int, error: int, message: str) -> None:
        super().__init__(message)
        self.code, self.error = code, error


class GatewayCore:
    """The relay's decisions. `rows` come from the queue after a restart."""

    def __init__(self, settings: GatewaySettings, *, rows: tuple[Row, ...] = ()) -> None:
        self.settings = settings
        self._rows: OrderedDict[int, _Row] = OrderedDict(
            (r.row_id, _Row(r, durable=True)) for r in sorted(rows, key=lambda r: r.row_id))
        self._row_keys = {(r.agent_id, r.piv): r.row_id for r in rows}
        self._kept_per_device: Counter[int] = Counter(r.agent_id for r in rows)
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
                      "refused_full": 0, "superseded": 0, "unavailable": 0, "plain": 0}

    # -- inputs -------------------------------------------------------------------------------

    def device_call(self, call_id: int, data: bytes, now: float, source: object = None
                    ) -> list[Effect]:
        """A device's request as an entry (untrusted; relayed as it is): a protected one
        (`edgerm.oscore.pack_forwarded`) or a plain AgentCall. `source` is the device's address
        (hashable), which tells a first registration's retry from another device's."""
        try:
            agent_id, piv, register = _identify(data)
        except _Refused as e:
            return [Answer(call_id, e.code, refusal(e.error, str(e)))]
        effects: list[Effect] = []
        device = _device_key(agent_id, register, source)
        if device is not None:
            effects.extend(self._supersede(device))
        if not self.up:
            if piv is not None:
                effects.extend(self._keep(agent_id, piv, data))
            self.stats["unavailable"] += 1
            effects.append(Answer(call_id, Code.SERVICE_UNAVAILABLE, unavailable(
                "the gateway's uplink to the master is down; try again")))
            return effects
        if piv is None:
            self.stats["plain"] += 1
        self._live.append(_Entry(data, call_id=call_id, device=device))
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
            entries.append(_Entry(row.row.data, row_id=row.row.row_id))
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
        """The master's reply entries to batch `batch_id` in order, or None: the uplink
        failed."""
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
            if e.row_id:
                row = self._rows.pop(e.row_id, None)
                if row is not None:
                    self._row_keys.pop((row.row.agent_id, row.row.piv), None)
                    self._kept_per_device[row.row.agent_id] -= 1
                    if self._kept_per_device[row.row.agent_id] <= 0:
                        del self._kept_per_device[row.row.agent_id]
                    forgotten.append(e.row_id)
            if not e.call_id:
                continue
            if i >= len(replies):  # a short answer: that call did not get through
                effects.append(Answer(e.call_id, Code.SERVICE_UNAVAILABLE, unavailable(
                    "the master did not answer this call; try again")))
            else:
                effects.append(_answer(e.call_id, replies[i]))
        if forgotten:
            effects.append(Forget(tuple(forgotten)))
        return effects

    # -- helpers ------------------------------------------------------------------------------

    def _keep(self, agent_id: int, piv: int, data: bytes) -> list[Effect]:
        """Keep a protected request that came during a cut, if there is room."""
        key = (agent_id, piv)
        if key in self._row_keys:
            return []
        if (len(self._rows) >= self.settings.queue_max
                or self._kept_per_device[agent_id] >= self.settings.keep_per_device):
            self.stats["refused_full"] += 1
            return []
        row = Row(self._next_row, agent_id, piv, data)
        self._next_row += 1
        self._rows[row.row_id] = _Row(row)
        self._row_keys[key] = row.row_id
        self._kept_per_device[agent_id] += 1
        self.stats["kept"] += 1
        return [Persist(row)]

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

    @property
    def queued(self) -> int:
        """Kept requests not yet answered by the master."""
        return len(self._rows)


def _identify(data: bytes) -> tuple[int, int | None, str | None]:
    """(agent id, Partial IV or None for a plain call, a first registration's name) of a
    device's entry; `_Refused` for what never goes upstream."""
    if is_protected(data):
        try:
            _, option, _ = unpack_forwarded(data)
            kid, piv = parse_request_option(option)
        except OscoreError as e:
            raise _Refused(e.code, E.BAD_REQUEST if e.code == Code.BAD_OPTION
                           else E.UNAUTHENTICATED, str(e)) from None
        if not 0 < len(kid) <= _KID_MAX or kid[0] == 0:
            raise _Refused(Code.UNAUTHORIZED, E.UNAUTHENTICATED,
                           "unknown kid: not an agent id; register again")
        return int.from_bytes(kid, "big"), piv, None
    try:
        call = decode(pb.AgentCall, data)
    except DecodeError as e:
        raise _Refused(Code.BAD_REQUEST, E.BAD_REQUEST, f"not an AgentCall: {e}") from None
    register = call.register.name if call.WhichOneof("call") == "register" else None
    return call.agent_id, None, register


def _answer(call_id: int, reply: bytes) -> Answer:
    """The device's answer from the master's reply entry: protected as it came, or plain with
    the code its error names."""
    if is_protected(reply):
        try:
            code, option, ciphertext = unpack_forwarded(reply)
        except OscoreError as e:
            return Answer(call_id, Code.BAD_GATEWAY, refusal(
                E.INTERNAL, f"the master's answer is malformed: {e}"))
        return Answer(call_id, code, ciphertext, option)
    return Answer(call_id, coap_code(reply), reply)


def _device_key(agent_id: int, register: str | None, source: object) -> object:
    """Which device a call is from, for superseding: its agent id (kid); for a first
    registration its address and name (several simulated devices may share one address);
    None: unknown."""
    if agent_id:
        return ("agent", agent_id)
    if register is not None and source is not None:
        return ("register", source, register)
    return None
