"""An on-path attacker for CoAP tests: a UDP relay on loopback (Trio, real sockets, port 0)
between an agent and the master that records every datagram both ways and, on command, drops,
delays, holds back and reorders, duplicates, alters, injects and replays them.

    relay = OnPathRelay(master.coap)
    await nursery.start(relay.run)          # binds port 0; the agent talks to relay.port
    ... agent config: coap://127.0.0.1:{relay.port}
    relay.plan("down", flip(5))             # the master's next datagram arrives with bit 0 of
                                            # byte 5 flipped
    answer = await relay.replay(relay.requests()[3], via="attacker")

Directions: "up" is agent to master, "down" master to agent. Every datagram the relay receives
or sends on its own is kept in `relay.recorded` as a `Datagram` (index, direction, time, bytes,
source): "agent" and "master" for the genuine ones, "inject" for what the relay sent on command,
"answer" for the master's answers to those (which never reach the agent: the attacker keeps them).

What happens to a genuine datagram is decided by, in order:
1. `plan(direction, action, match=...)`: one-shot actions for the next datagrams that `match`
   (a predicate on the decoded CoAP `Message`, None when it does not decode), in the order
   they were planned;
2. `rule[direction]`: a standing action (e.g. `drop` cuts that direction), or None;
3. otherwise it is forwarded at once.
An action maps the datagram's bytes to what to send instead: a list of (delay s, bytes) pairs
(`forward`, `drop`, `delay(s)`, `duplicate(n)`, `flip(offset, bit)`, `replace(data)`), or
`HOLD`, which keeps it in `held[direction]` until `release(direction, reverse=...)` sends the
held ones on (reversed: a reordering).

Injections: `inject_up(data, via)` sends to the master either from the relay's own upstream
socket ("agent": the address the master knows the agent by, so the CoAP deduplication and the
replay window are both in play) or from a fresh socket ("attacker": another address);
`exchange(...)` does the same and waits for the master's answer; `inject_down(data)` sends to
the agent as if from the master. Helpers rewrite what lies outside OSCORE's protection
(`with_mid`, `with_token`) and name the byte regions of a datagram (`regions`).

Resource handling: `run` owns the sockets and every delayed send (one nursery); cancelling it
closes everything. Error handling: the relay never awaits a peer: a datagram that does not
decode is still recorded and handled by the rule (its `Message` is None).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import trio

from edgerm.coap.codes import ACK, RST
from edgerm.coap.errors import CoapWireError
from edgerm.coap.message import Message, decode_message_untrusted
from edgerm.coap.options import OSCORE

__all__ = [
    "OnPathRelay", "Datagram", "Action", "HOLD", "forward", "drop", "delay", "duplicate", "flip",
    "replace", "with_mid", "with_token", "regions", "flip_bit", "decoded", "payloads",
]

UP: Final = "up"
DOWN: Final = "down"
_MAX_DATAGRAM = 65536

Sends = list[tuple[float, bytes]]
Action = Callable[[bytes], Sends]
Match = Callable[["Message | None"], bool]


def _hold(data: bytes) -> Sends:  # a marker; the relay keeps the datagram instead
    raise AssertionError("HOLD is handled by the relay")


HOLD: Final[Action] = _hold


def forward(data: bytes) -> Sends:
    return [(0.0, data)]


def drop(data: bytes) -> Sends:
    return []


def delay(seconds: float) -> Action:
    return lambda data: [(seconds, data)]


def duplicate(copies: int = 2, gap_s: float = 0.0) -> Action:
    return lambda data: [(i * gap_s, data) for i in range(copies)]


def flip_bit(data: bytes, offset: int, bit: int = 0) -> bytes:
    """`data` with bit `bit` (0 = least significant) of byte `offset` inverted; a negative
    offset counts from the end."""
    out = bytearray(data)
    out[offset] ^= 1 << bit
    return bytes(out)


def flip(offset: int, bit: int = 0) -> Action:
    return lambda data: [(0.0, flip_bit(data, offset, bit))]


def replace(new: bytes | Callable[[bytes], bytes]) -> Action:
    """Send `new` (or `new(data)`) instead of the datagram."""
    return lambda data: [(0.0, new(data) if callable(new) else new)]


def with_mid(data: bytes, mid: int) -> bytes:
    """The datagram with another Message ID (header bytes 2-3, outside any protection)."""
    return data[:2] + (mid & 0xFFFF).to_bytes(2, "big") + data[4:]


def with_token(data: bytes, token: bytes) -> bytes:
    """The datagram with another token of the same length."""
    tkl = data[0] & 0x0F
    if len(token) != tkl:
        raise ValueError(f"token must be {tkl} bytes like the datagram's, not {len(token)}")
    return data[:4] + token + data[4 + tkl:]


def decoded(data: bytes) -> Message | None:
    try:
        return decode_message_untrusted(data)
    except CoapWireError:
        return None


def regions(data: bytes, tag_len: int = 8) -> dict[str, range]:
    """The byte ranges of a CoAP datagram: "header" (4 bytes), "token", "options" (all of them,
    option headers included), "oscore" (the OSCORE option's value, when present and not
    empty), "ciphertext" (the payload without its last `tag_len` bytes) and "tag" (those).
    Empty regions are left out. Raises CoapWireError for a datagram that does not decode."""
    msg = decode_message_untrusted(data)
    tkl = data[0] & 0x0F
    out = {"header": range(0, 4), "token": range(4, 4 + tkl)}
    end = len(data) - len(msg.payload) - (1 if msg.payload else 0)
    out["options"] = range(4 + tkl, end)
    at = _option_value_at(data, 4 + tkl, end, OSCORE)
    if at is not None:
        out["oscore"] = at
    if msg.payload:
        start = len(data) - len(msg.payload)
        cut = max(start, len(data) - tag_len)
        out["ciphertext"] = range(start, cut)
        out["tag"] = range(cut, len(data))
    return {k: r for k, r in out.items() if len(r)}


def _option_value_at(data: bytes, pos: int, end: int, wanted: int) -> range | None:
    """Where the value of option `wanted` lies in `data` (options from `pos` to `end`, already
    checked by the decoder)."""
    number = 0
    while pos < end:
        b = data[pos]
        pos += 1
        delta, length = b >> 4, b & 0x0F
        if delta == 13:
            delta, pos = data[pos] + 13, pos + 1
        elif delta == 14:
            delta, pos = int.from_bytes(data[pos:pos + 2], "big") + 269, pos + 2
        if length == 13:
            length, pos = data[pos] + 13, pos + 1
        elif length == 14:
            length, pos = int.from_bytes(data[pos:pos + 2], "big") + 269, pos + 2
        number += delta
        if number == wanted:
            return range(pos, pos + length)
        pos += length
    return None


@dataclass(frozen=True)
class Datagram:
    """One datagram the relay saw or sent on its own."""

    index: int       # its position in `recorded`
    direction: str   # "up" (towards the master) or "down" (towards the agent)
    at: float        # trio.current_time() when it arrived (or was injected)
    data: bytes
    source: str      # "agent", "master", "inject" (sent on command), "answer" (to an injection)

    @property
    def message(self) -> Message | None:
        return decoded(self.data)


class OnPathRelay:
    """See the module docstring. `target` (the master's CoAP address) may be changed while it
    runs (a failover to another master)."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self.host = host
        self.port = 0
        self.client: tuple[str, int] | None = None   # the agent's address, as last seen
        self.recorded: list[Datagram] = []
        self.rule: dict[str, Action | None] = {UP: None, DOWN: None}
        self.held: dict[str, list[Datagram]] = {UP: [], DOWN: []}
        self._plans: dict[str, deque[tuple[Match, Action]]] = {UP: deque(), DOWN: deque()}
        # Answers the master sends to injections made from the agent's address: by MID (a
        # piggybacked answer, ACK, RST) or token (a separate one), so the agent never sees them.
        self._injected_mids: set[int] = set()
        self._injected_tokens: set[bytes] = set()
        self._waiters: list[tuple[Callable[[Message], bool], trio.MemorySendChannel[Datagram]]]
        self._waiters = []
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._front = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        self._back = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)

    # ---------------------------------------------------------------------------------------
    # Running

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Bind (port 0), report the agent-side port, relay until cancelled."""
        await self._front.bind((self.host, 0))
        await self._back.bind((self.host, 0))
        self.port = int(self._front.getsockname()[1])
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._up)
                nursery.start_soon(self._down)
                task_status.started(self.port)
                await trio.sleep(math.inf)
        finally:
            self._nursery = None
            self._front.close()
            self._back.close()

    async def _up(self) -> None:
        while True:
            data, self.client = await self._front.recvfrom(_MAX_DATAGRAM)
            msg = decoded(data)
            if msg is not None:   # the agent's own exchange: its answers are the agent's
                self._injected_mids.discard(msg.mid)
                self._injected_tokens.discard(msg.token)
            await self._handle(self._record(UP, data, "agent"))

    async def _down(self) -> None:
        while True:
            data, _ = await self._back.recvfrom(_MAX_DATAGRAM)
            msg = decoded(data)
            if msg is not None and self._answers_injection(msg):
                if msg.mtype in (ACK, RST):   # one answer per injected CON
                    self._injected_mids.discard(msg.mid)
                    self._injected_tokens.discard(msg.token)
                self._deliver(self._record(DOWN, data, "answer"), msg)
                continue
            await self._handle(self._record(DOWN, data, "master"))

    def _answers_injection(self, msg: Message) -> bool:
        if msg.mtype in (ACK, RST):   # a piggybacked answer or a reset: by MID alone
            return msg.mid in self._injected_mids
        return bool(msg.token) and msg.token in self._injected_tokens

    def _record(self, direction: str, data: bytes, source: str) -> Datagram:
        d = Datagram(len(self.recorded), direction, trio.current_time(), data, source)
        self.recorded.append(d)
        self._changed.set()
        self._changed = trio.Event()
        return d

    async def _handle(self, d: Datagram) -> None:
        action = self._action(d)
        if action is HOLD:
            self.held[d.direction].append(d)
            return
        for after, data in action(d.data):
            await self._send_later(d.direction, data, after)

    def _action(self, d: Datagram) -> Action:
        plans = self._plans[d.direction]
        if plans:
            msg = d.message
            for i, (match, action) in enumerate(plans):
                if match(msg):
                    del plans[i]
                    return action
        return self.rule[d.direction] or forward

    async def _send_later(self, direction: str, data: bytes, after: float) -> None:
        if after <= 0:
            await self._send(direction, data)
            return
        assert self._nursery is not None, "the relay is not running"

        async def later() -> None:
            await trio.sleep(after)
            await self._send(direction, data)
        self._nursery.start_soon(later)

    async def _send(self, direction: str, data: bytes) -> None:
        if direction == UP:
            await self._back.sendto(data, self.target)
        elif self.client is not None:
            await self._front.sendto(data, self.client)

    # ---------------------------------------------------------------------------------------
    # Commands

    def plan(self, direction: str, *actions: Action, match: Match | None = None) -> None:
        """Apply `actions`, one each, to the next datagrams going `direction` that `match`
        (every datagram when no `match` is given)."""
        self._check(direction)
        for action in actions:
            self._plans[direction].append((match or (lambda m: True), action))

    def planned(self, direction: str) -> int:
        """How many planned actions still wait for their datagram."""
        return len(self._plans[direction])

    async def release(self, direction: str, reverse: bool = False,
                      which: Callable[[Datagram], bool] | None = None) -> list[Datagram]:
        """Send the datagrams held back in `direction` (in arrival order, or reversed); with
        `which`, only those it selects (the others stay held)."""
        self._check(direction)
        held = [d for d in self.held[direction] if which is None or which(d)]
        self.held[direction] = [d for d in self.held[direction] if d not in held]
        for d in reversed(held) if reverse else held:
            await self._send(direction, d.data)
        return held

    async def inject_up(self, data: bytes, via: str = "agent",
                        answers: trio.MemorySendChannel[Datagram] | None = None) -> Datagram:
        """Send `data` to the master from the agent's relayed address ("agent") or from a
        fresh socket of the attacker's ("attacker": everything that comes back to it is
        recorded as an answer, and sent to `answers` when given)."""
        if via not in ("agent", "attacker"):
            raise ValueError(f"via must be 'agent' or 'attacker', not {via!r}")
        d = self._record(UP, data, "inject")
        msg = decoded(data)
        if via == "agent":
            if msg is not None:
                self._injected_mids.add(msg.mid)
                if msg.token:
                    self._injected_tokens.add(msg.token)
            await self._back.sendto(data, self.target)
        else:
            assert self._nursery is not None, "the relay is not running"
            sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            await sock.bind((self.host, 0))
            await sock.sendto(data, self.target)
            self._nursery.start_soon(self._attacker_answers, sock, answers)
        return d

    async def _attacker_answers(self, sock: trio.socket.SocketType,
                                answers: trio.MemorySendChannel[Datagram] | None) -> None:
        with sock, trio.move_on_after(30):   # long enough for any test's answer
            while True:
                try:
                    data, _ = await sock.recvfrom(_MAX_DATAGRAM)
                except OSError:   # an ICMP error reported on the socket: no answer
                    return
                d = self._record(DOWN, data, "answer")
                if answers is not None:
                    try:
                        answers.send_nowait(d)
                    except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                        pass   # nobody waits any more

    def _deliver(self, d: Datagram, msg: Message) -> None:
        for match, send in list(self._waiters):
            if match(msg):
                send.send_nowait(d)

    async def exchange(self, data: bytes, via: str = "attacker", timeout: float = 3.0
                       ) -> Datagram | None:
        """Inject `data` towards the master (as `inject_up`) and return the master's answer,
        or None when none came in `timeout` s. From the attacker's socket the answer is the
        first datagram that comes back to it (so `data` may be anything); from the agent's
        address, the first with `data`'s MID (ACK, RST) or token, so `data` must decode."""
        send, receive = trio.open_memory_channel[Datagram](16)
        entry = None
        if via == "agent":
            msg = decoded(data)
            if msg is None:
                raise ValueError("an exchange from the agent's address needs a datagram that "
                                 "decodes (to tell its answer from the agent's)")
            mid, token = msg.mid, msg.token

            def match(m: Message) -> bool:
                return m.mid == mid if m.mtype in (ACK, RST) else \
                    (bool(token) and m.token == token)
            entry = (match, send)
            self._waiters.append(entry)
        try:
            await self.inject_up(data, via, send if via == "attacker" else None)
            with trio.move_on_after(timeout):
                return await receive.receive()
            return None
        finally:
            if entry is not None:
                self._waiters.remove(entry)
            send.close()

    async def replay(self, d: Datagram, via: str = "attacker", mid: int | None = None,
                     timeout: float = 3.0) -> Datagram | None:
        """Send a recorded datagram again (with another MID when given) and return the
        master's answer, or None."""
        data = d.data if mid is None else with_mid(d.data, mid)
        return await self.exchange(data, via, timeout)

    async def inject_down(self, data: bytes) -> Datagram:
        """Send `data` to the agent as if the master had sent it."""
        if self.client is None:
            raise RuntimeError("the agent has sent nothing yet: its address is unknown")
        d = self._record(DOWN, data, "inject")
        await self._front.sendto(data, self.client)
        return d

    # ---------------------------------------------------------------------------------------
    # Looking at the recording

    def select(self, direction: str | None = None, source: str | None = None,
               since: int = 0) -> list[Datagram]:
        return [d for d in self.recorded[since:]
                if (direction is None or d.direction == direction)
                and (source is None or d.source == source)]

    def requests(self, since: int = 0) -> list[Datagram]:
        """The agent's genuine requests (CON/NON with a method code), retransmissions
        included."""
        return [d for d in self.select(UP, "agent", since)
                if (m := d.message) is not None and 1 <= m.code < 32]

    def answer_to(self, request: Datagram) -> Datagram | None:
        """The first datagram of the master after the agent's `request` that answers it
        (same MID in an ACK/RST, or same token); answers to injections do not count."""
        req = request.message
        if req is None:
            return None
        for d in self.recorded[request.index + 1:]:
            m = d.message
            if d.direction != DOWN or d.source != "master" or m is None:
                continue
            if (m.mtype in (ACK, RST) and m.mid == req.mid and m.code) or \
                    (m.mtype not in (ACK, RST) and req.token and m.token == req.token):
                return d
        return None

    async def wait_for(self, predicate: Callable[[], object], timeout: float = 10.0) -> object:
        """Wait until `predicate()` is true (checked after each datagram recorded)."""
        with trio.fail_after(timeout):
            while not (result := predicate()):
                await self._changed.wait()
            return result

    @staticmethod
    def _check(direction: str) -> None:
        if direction not in (UP, DOWN):
            raise ValueError(f"direction must be 'up' or 'down', not {direction!r}")


def payloads(datagrams: Sequence[Datagram]) -> list[bytes]:
    """The CoAP payloads (or whole datagrams, when one does not decode)."""
    out = []
    for d in datagrams:
        m = d.message
        out.append(m.payload if m is not None else d.data)
    return out
