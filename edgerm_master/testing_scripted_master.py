"""A small scripted CoAP master for the MicroPython agent's tests and benchmark (does I/O: real
UDP on loopback, Trio). Not the real master (`edgerm_master.core`, run as a process by
`edgerm_master.testing_io.MasterProcess`): a stand-in whose every step a test can script.

It speaks the agent half of docs/protocol.md over real UDP on loopback, with the real wire codec
(`edgerm.wire`) and the real CoAP message codec (`edgerm.coap.message`): first registration
signed with the token's key and a nonce, the secret derived from both nonces (docs/protocol.md,
"Authentication"); after it every call OSCORE-protected (RFC 8613, the issue 16 contract: the
secret as Master Secret, kid = agent_id, the master's Sender ID empty; the AEAD is the
`cryptography` package's AES-CCM, an implementation independent of the agents'), the Partial IV
as seq (a stale one, an unknown kid or a wrong tag: an unprotected 4.01), heartbeats with
command_ack, commands re-sent until acknowledged, status/publish applied exactly once in
update_id order, modules by GET m/<hex> with Block2, heartbeats as FETCH `c` with Observe 0 and
commands pushed at once as CON notifications protected with the master's own Partial IV.
Tests queue commands, read what was applied, make it deaf for a while (a master outage), refuse
chosen updates with an error (`refuse`), inject datagrams at the agent from the master's own
address, and glue a notification to an answer (`glue`: both sent while the agent is stopped, so
they wait in its socket together).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from edgerm.coap.message import decode_message_untrusted, encode_message, encode_options
from edgerm.wire import (
    NONCE_LEN,
    DecodeError,
    decode,
    derive_secret,
    encode,
    pb,
    sign,
    token_key,
    verify,
)

_ACK = 2
_CON = 0
_OBSERVE = 6
_URI_PATH = 11
_BLOCK2 = 23
_CF = 12
_OSCORE = 9


def _minimal(v: int) -> bytes:
    return v.to_bytes(max(1, (v.bit_length() + 7) // 8), "big")


def _bstr(b: bytes) -> bytes:
    assert len(b) < 24
    return bytes((0x40 | len(b),)) + b


class OscoreContext:
    """The master's side of one agent's OSCORE context (RFC 8613 3.2): Sender ID b"",
    Recipient ID the agent's kid, Master Secret its secret, no salt, no ID context."""

    def __init__(self, secret: bytes, kid: bytes) -> None:
        self.kid = kid
        prk = hmac.new(b"", secret, hashlib.sha256).digest()

        def expand(id_: bytes, kind: bytes, n: int) -> bytes:
            info = b"\x85" + _bstr(id_) + b"\xf6\x0a" + bytes((0x60 | len(kind),)) + kind \
                + bytes((n,))
            return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:n]

        self.sender_key = expand(b"", b"Key", 16)
        self.recipient_key = expand(kid, b"Key", 16)
        self.common_iv = expand(b"", b"IV", 13)

    def nonce(self, id_: bytes, piv: bytes) -> bytes:
        n = bytes((len(id_),)) + bytes(7 - len(id_)) + id_ + bytes(5 - len(piv)) + piv
        return bytes(a ^ b for a, b in zip(n, self.common_iv, strict=True))

    def aad(self, piv: bytes) -> bytes:
        arr = b"\x85\x01\x81\x0a" + _bstr(self.kid) + _bstr(piv) + b"\x40"
        return b"\x83\x68Encrypt0\x40" + _bstr(arr)

    def open(self, piv: bytes, ciphertext: bytes) -> bytes | None:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESCCM

        try:
            return AESCCM(self.recipient_key, tag_length=8).decrypt(
                self.nonce(self.kid, piv), ciphertext, self.aad(piv))
        except InvalidTag:
            return None

    def seal(self, request_piv: bytes, plaintext: bytes, own_piv: bytes | None = None) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESCCM

        nonce = self.nonce(self.kid, request_piv) if own_piv is None else self.nonce(b"", own_piv)
        return AESCCM(self.sender_key, tag_length=8).encrypt(nonce, plaintext,
                                                             self.aad(request_piv))


@dataclass
class AgentRecord:
    agent_id: int
    secret: bytes
    name: str = ""
    last_seq: int = 0
    update_ack: int = 0
    command_ack: int = 0
    commands: list[pb.Command] = field(default_factory=list)
    next_command: int = 1
    statuses: list[pb.StatusUpdate] = field(default_factory=list)
    publishes: list[pb.Publish] = field(default_factory=list)
    registrations: list[pb.Register] = field(default_factory=list)
    reg_seqs: list[int] = field(default_factory=list)  # the seq of each registration taken
    calls: list[bytes] = field(default_factory=list)  # every authentic call, the datagram
    heartbeats: int = 0
    # (address, token, Partial IV of the request) of the observation on c
    observer: tuple[object, bytes, bytes] | None = None
    oscore: OscoreContext | None = None
    pushes: int = 0
    refused: list[int] = field(default_factory=list)  # update ids answered with an error


class ScriptedMaster:
    def __init__(self, token: str = "tok", heartbeat_ms: int = 300,
                 observable: bool = True) -> None:
        self.token = token
        self.nonces: set[bytes] = set()  # agent nonces of first registrations seen
        self.refused_registrations = 0  # first registrations refused (unsigned, bad mac, replay)
        self.heartbeat_ms = heartbeat_ms
        self.observable = observable
        # update_id -> (ErrorCode, times): answer that update with a signed error, not applied
        self.refuse: dict[int, tuple[int, int]] = {}
        self._pending_push: set[int] = set()
        self._push_event = trio.Event()
        self._push_mid = 0x8000
        self._observe_seq = 1
        self.master_piv = 0  # the master's own sender sequence number (notifications)
        self.unprotected_refused = 0  # calls after the first registration without OSCORE
        self.agents: dict[int, AgentRecord] = {}
        self.modules: dict[bytes, bytes] = {}
        self.sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        self.port = 0
        self.deaf = False
        self.peer: tuple[str, int] | None = None
        self.malformed_calls = 0
        self.changed = trio.Event()
        self._cache: dict[tuple[object, int], bytes] = {}
        self.retransmissions = 0  # requests answered again from the deduplication cache
        # glue(path, answer) is asked about each answer sent; when it returns True, the
        # observer's notification (agent 1) goes right behind that answer, both sent between
        # `hold(True)` and `hold(False)` (which stop and continue the agent), so the agent's
        # socket holds both when it reads again. One shot: glue is cleared when it fires.
        self.glue: Callable[[list[str], bytes], bool] | None = None
        self.hold: Callable[[bool], Awaitable[None]] | None = None
        self._last_path: list[str] = []
        self.last_block2 = -1  # the Block2 value of the last module block served
        # message id of each module block's answer -> its block number (the Block2 option is
        # inside OSCORE: a relay cannot read it)
        self.block_answers: dict[int, int] = {}
        # module block requests still to be answered with a plain 5.03, as a gateway answers
        # while its uplink is being retried
        self.unavailable_blocks = 0
        # The inner Content-Format of each protected call to `a`/`c` (None: absent, the
        # agents' form; 60 from older agents; anything else is refused 4.15, not applied)
        self.inner_formats: list[int | None] = []

    async def bind(self, port: int = 0) -> None:
        await self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]

    # -- what tests use ------------------------------------------------------------------------

    def add_module(self, data: bytes) -> bytes:
        sha = hashlib.sha256(data).digest()
        self.modules[sha] = data
        return sha

    def command(self, agent_id: int, push: bool = True, **kind: object) -> pb.Command:
        """Queue a command; with an observer, also push it at once (unless `push` is False:
        then only replies, and a glued notification, carry it)."""
        rec = self.agents[agent_id]
        cmd = pb.Command(id=rec.next_command, **kind)  # type: ignore[arg-type]
        rec.next_command += 1
        rec.commands.append(cmd)
        if rec.observer is not None and push:
            self._pending_push.add(agent_id)
            self._push_event.set()
        return cmd

    def states(self, agent_id: int, task: int) -> list[int]:
        return [s.state for s in self.agents[agent_id].statuses if s.task == task]

    async def wait_for(self, predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        with trio.fail_after(timeout):
            while not predicate():
                self.changed = trio.Event()
                await self.changed.wait()

    async def inject(self, data: bytes) -> None:
        assert self.peer is not None
        await self.sock.sendto(data, self.peer)

    # -- the server ----------------------------------------------------------------------------

    async def serve(self) -> None:
        async with trio.open_nursery() as n:
            n.start_soon(self._pusher)
            await self._serve()

    async def _pusher(self) -> None:
        while True:
            await self._push_event.wait()
            self._push_event = trio.Event()
            for aid in sorted(self._pending_push):
                rec = self.agents.get(aid)
                if rec is None or rec.observer is None or self.deaf:
                    continue
                await self.sock.sendto(*self._notification(rec))
            self._pending_push.clear()

    def _notification(self, rec: AgentRecord) -> tuple[bytes, Any]:
        """A CON notification to rec's observer with the commands it has not acknowledged."""
        assert rec.observer is not None and rec.oscore is not None
        addr, token, piv = rec.observer
        reply = pb.AgentReply(update_ack=rec.update_ack)
        reply.commands.extend(c for c in rec.commands if c.id > rec.command_ack)
        self._push_mid += 1
        self._observe_seq += 1
        self.master_piv += 1
        own = _minimal(self.master_piv)
        plain = bytes((0x45,)) + bytes(encode_options([(_CF, b"\x3c")])) + b"\xff" + encode(reply)
        out = encode_message(_CON, 0x45, self._push_mid & 0xFFFF, token,
                             [(_OBSERVE, self._observe_seq.to_bytes(3, "big")),
                              (_OSCORE, bytes((len(own),)) + own)],
                             rec.oscore.seal(piv, plain, own))
        rec.pushes += 1
        return out, addr

    async def _serve(self) -> None:
        while True:
            data, addr = await self.sock.recvfrom(2048)
            if self.deaf:
                continue
            self.peer = addr
            out = self._datagram(data, addr)
            if out is not None:
                glue = self.glue
                rec = self.agents.get(1)
                if glue is not None and rec is not None and rec.observer is not None \
                        and glue(self._last_path, out):
                    assert self.hold is not None
                    self.glue = None
                    await self.hold(True)
                    await self.sock.sendto(out, addr)
                    await self.sock.sendto(*self._notification(rec))
                    await self.hold(False)
                else:
                    await self.sock.sendto(out, addr)
            self.changed.set()

    def _datagram(self, data: bytes, addr: object) -> bytes | None:
        try:
            req = decode_message_untrusted(data)
        except Exception:
            return None
        if req.mtype != _CON or req.code == 0:
            return None
        key = (addr, req.mid)
        if key in self._cache:  # a retransmission: the same answer, not a second execution
            self.retransmissions += 1
            return self._cache[key]
        osc = req.opt(_OSCORE)
        if osc is None:
            # Only a first registration goes in clear (POST a, no agent_id, the token's mac).
            path = [v.decode() for n, v in req.options if n == _URI_PATH]
            self._last_path = path
            if path == ["a"] and req.code == 2:
                code, payload = self._agent_call(req.payload)
            else:
                code, payload = self._error(0x81, pb.UNAUTHENTICATED, "not protected")
            if code == 0x81:
                self.unprotected_refused += 1
            out = encode_message(_ACK, code, req.mid, req.token, [(_CF, b"\x3c")], payload)
        else:
            out = self._protected(req, osc, addr, data)
        self._cache[key] = out
        return out

    def _protected(self, req: Any, osc: bytes, addr: object, data: bytes) -> bytes:
        """An OSCORE request (RFC 8613 8.2): the kid names the agent, the Partial IV is its seq.
        A malformed option: an unprotected 4.02; an unknown kid, a wrong tag or a stale Partial
        IV: an unprotected 4.01 (changing nothing)."""
        flags = osc[0] if osc else 0
        n = flags & 7
        if not osc or flags & 0xF0 or not flags & 8 or not 0 < n < 6 or len(osc) < 1 + n:
            return encode_message(_ACK, 0x82, req.mid, req.token)
        piv, kid = osc[1:1 + n], osc[1 + n:]
        rec = self.agents.get(int.from_bytes(kid, "big")) if kid else None
        plain = rec.oscore.open(piv, req.payload) if rec is not None and rec.oscore else None
        seq = int.from_bytes(piv, "big")
        if rec is None or plain is None or seq <= rec.last_seq or not plain:
            code, payload = self._error(0x81, pb.UNAUTHENTICATED,
                                        "unknown kid, wrong tag or stale Partial IV")
            return encode_message(_ACK, code, req.mid, req.token, [(_CF, b"\x3c")], payload)
        assert rec.oscore is not None
        inner = decode_message_untrusted(bytes((0x40, plain[0], 0, 0)) + plain[1:])
        path = [v.decode() for n, v in inner.options if n == _URI_PATH]
        self._last_path = path
        if path in (["a"], ["c"]):
            cf = inner.opt(_CF)
            fmt = None if cf is None else int.from_bytes(cf, "big")
            self.inner_formats.append(fmt)
            if fmt not in (None, 60):
                # As the real master: a protected 4.15, nothing applied (the seq not used up).
                code, payload = self._error(0x8F, pb.UNSUPPORTED,
                                            "Content-Format must be 60 (CBOR) or absent")
                return encode_message(_ACK, 0x44, req.mid, req.token, [(_OSCORE, b"")],
                                      rec.oscore.seal(piv, bytes((code, 0xC1, 0x3C, 0xFF))
                                                      + payload))
        rec.calls.append(data)
        outer = 0x44
        outer_opts: list[tuple[int, bytes]] = []
        if path == ["a"] and inner.code == 2:
            code, payload = self._agent_call(inner.payload, protected=(rec, seq))
            opts = [(_CF, b"\x3c")]
        elif path == ["c"] and inner.code == 5 and self.observable:
            code, payload = self._agent_call(
                inner.payload, observer=(addr, req.token, piv)
                if req.opt(_OBSERVE) == b"" else None, protected=(rec, seq))
            opts = [(_CF, b"\x3c")]
            if code == 0x44:
                code = outer = 0x45
                self._observe_seq += 1
                outer_opts.append((_OBSERVE, self._observe_seq.to_bytes(3, "big")))
        elif len(path) == 2 and path[0] == "m" and inner.code == 1:
            rec.last_seq = seq
            if self.unavailable_blocks > 0:
                self.unavailable_blocks -= 1
                code, payload = self._error(0xA3, pb.UNAVAILABLE, "uplink down; try again")
                return encode_message(_ACK, code, req.mid, req.token, [(_CF, b"\x3c")],
                                      payload)
            code, payload, opts = self._module(path[1], inner.opt(_BLOCK2))
            self.block_answers[req.mid] = self.last_block2 >> 4
        else:
            rec.last_seq = seq
            code, payload, opts = 0x84, b"", []
        plaintext = bytes((code,)) + bytes(encode_options(opts)) \
            + (b"\xff" + payload if payload else b"")
        return encode_message(_ACK, outer, req.mid, req.token, [*outer_opts, (_OSCORE, b"")],
                              rec.oscore.seal(piv, plaintext))

    def _module(self, hexname: str, block: bytes | None) -> tuple[int, bytes, list]:  # type: ignore[type-arg]
        data = self.modules.get(bytes.fromhex(hexname)) if len(hexname) == 64 else None
        if data is None:
            return 0x84, b"", []
        v = int.from_bytes(block or b"", "big")
        num, szx = v >> 4, v & 7
        size = 16 << szx
        chunk = data[num * size:(num + 1) * size]
        more = (num + 1) * size < len(data)
        b2 = (num << 4 | (8 if more else 0) | szx)
        b2b = b2.to_bytes((b2.bit_length() + 7) // 8, "big") if b2 else b""
        self.last_block2 = b2  # inside OSCORE: a glue() cannot read it from the answer
        return 0x45, chunk, [(_BLOCK2, b2b)]

    def _error(self, code: int, err: int, text: str) -> tuple[int, bytes]:
        error = pb.Error(code=pb.ErrorCode.Name(err), message=text)
        return code, encode(pb.AgentReply(error=error))

    def _agent_call(self, payload: bytes, observer: tuple[object, bytes, bytes] | None = None,
                    protected: tuple[AgentRecord, int] | None = None) -> tuple[int, bytes]:
        """AgentCall `payload`: in clear (only a first registration is taken), or `protected`
        (the agent and seq OSCORE gave: no agent_id, seq or mac in the call, none in the
        reply)."""
        try:
            call = decode(pb.AgentCall, payload)
        except DecodeError as e:
            self.malformed_calls += 1
            return self._error(0x80, pb.BAD_REQUEST, str(e))
        which = call.WhichOneof("call")
        if protected is None and (which != "register" or call.agent_id):
            return self._error(0x81, pb.UNAUTHENTICATED, "only a first registration in clear")
        if protected is None:
            # Signed with the key of our token, with a nonce never seen before; the token is
            # not on the wire (and must not be: the field that held it is the nonce now).
            nonce = call.register.nonce
            if not verify(call, token_key(self.token)) or len(nonce) != NONCE_LEN \
                    or nonce in self.nonces:
                self.refused_registrations += 1
                return self._error(0x81, pb.UNAUTHENTICATED, "first registration not signed "
                                   "with the token's key, or a nonce seen before")
            self.nonces.add(nonce)
            ours = os.urandom(NONCE_LEN)
            aid = max(self.agents, default=0) + 1
            rec = self.agents[aid] = AgentRecord(aid, derive_secret(self.token, nonce, ours),
                                                 call.register.name)
            rec.oscore = OscoreContext(rec.secret, _minimal(aid))
            rec.last_seq = call.seq
            rec.registrations.append(call.register)
            rec.reg_seqs.append(call.seq)
            reply = pb.AgentReply(seq=call.seq, registered=pb.Registered(
                agent_id=aid, nonce=ours, heartbeat_ms=self.heartbeat_ms))
            return 0x44, sign(reply, rec.secret)
        rec, seq = protected
        if call.agent_id or call.seq or call.mac:
            return 0x80, encode(pb.AgentReply(error=pb.Error(
                code=pb.BAD_REQUEST, message="agent_id, seq or mac inside OSCORE")))
        call.agent_id, call.seq = rec.agent_id, seq
        # A re-registration too (docs/protocol.md): a recorded one must not be taken again
        # (_protected refused a Partial IV not past the last one).
        rec.last_seq = call.seq
        reply = pb.AgentReply()
        upd = getattr(call, which) if which in ("status", "publish") else None
        if upd is not None and upd.update_id in self.refuse:
            err, times = self.refuse[upd.update_id]
            if times > 0:
                self.refuse[upd.update_id] = (err, times - 1)
                rec.refused.append(upd.update_id)
                reply.update_ack = rec.update_ack
                reply.error.CopyFrom(pb.Error(code=pb.ErrorCode.Name(err), message="refused"))
                codes: dict[int, int] = {pb.BAD_REQUEST: 0x80, pb.NOT_FOUND: 0x84}
                return codes.get(err, 0xA3), encode(reply)
        if which == "register":
            rec.registrations.append(call.register)
            rec.reg_seqs.append(call.seq)
            reply.registered.CopyFrom(pb.Registered(
                agent_id=rec.agent_id, heartbeat_ms=self.heartbeat_ms,
                update_ack=rec.update_ack))
        elif which == "heartbeat":
            rec.heartbeats += 1
            rec.command_ack = max(rec.command_ack, call.heartbeat.command_ack)
            rec.observer = observer
        elif upd is not None:
            if upd.update_id == rec.update_ack + 1:
                rec.update_ack += 1
                (rec.statuses if which == "status" else rec.publishes).append(upd)
        reply.update_ack = rec.update_ack
        reply.commands.extend(c for c in rec.commands if c.id > rec.command_ack)
        return 0x44, encode(reply)
