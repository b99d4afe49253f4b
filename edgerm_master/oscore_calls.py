"""OSCORE on the master's CoAP agent link (sans-IO): a protected request in, its inner
request out; a reply in, its protected response out.

`unprotect_untrusted(st, option, ciphertext)` takes the OSCORE option value and the payload
of a CoAP request: kid -> agent id -> the agent's context (derived from its secret on first
use and kept on the `Agent`; a re-registration afresh makes a new Agent, so a new context),
the replay rule (Partial IV > the agent's last accepted `seq`: NSTART 1 makes a window
pointless), the tag check, the plaintext's inner code, options and payload. What it refuses
comes back as a `Refusal` (plain 4.01 with `AgentReply{error UNAUTHENTICATED}`, 4.02 for
a malformed option, 4.00 for a plaintext that verified but does not parse: the agent's own
bug) and changed nothing. A kid may also name a pending first registration (agents.py): its
first valid request confirms it.

`protect(st, inner, code, payload)` protects the answer: reusing the request's nonce when
the master could verify the request was fresh (the agent was synced: its seq baseline is
known), else, and for Observe notifications, with the master's own Sender Sequence Number
(`next_master_seq`: one master-wide counter, persisted ahead as `SetOscoreSeqBound` like an
agent's seq, docs/protocol.md). The outer code is 2.04 (2.05 for notifications).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag

from edgerm.coap.codes import Code
from edgerm.coap.message import Option
from edgerm.coap.options import encode_uint
from edgerm.oscore import (
    OscoreError,
    SecurityContext,
    decode_plaintext,
    kid_of,
    master_context,
    parse_request_option,
    protect_response,
    seal_response,
)
from edgerm.oscore.aad import aad_from_bstr
from edgerm.oscore.context import NONCE_LEN, TAG_LEN
from edgerm.wire import CONTENT_FORMAT_CBOR, encode, pb
from edgerm_master import records as rec
from edgerm_master.agents import pending_agent
from edgerm_master.state import Agent, MasterState

__all__ = ["Inner", "Refusal", "unprotect_untrusted", "protect", "next_master_seq",
           "MASTER_SEQ_RESERVE", "UNAUTHENTICATED_REPLY"]

# The master's sequence numbers reserved per store write (a restart skips fewer than this).
MASTER_SEQ_RESERVE = 65_536
_CF_CBOR = bytes((CONTENT_FORMAT_CBOR,))
# A steady heartbeat's plaintext: POST, Uri-Path "a", AgentCall{heartbeat{}}. A protected
# request carries no inner Content-Format (the resource implies a CBOR AgentCall: 2 bytes less
# on every call); agents before that sent Content-Format 60, still accepted (`_STEADY_CF`).
_STEADY_PAYLOAD = b"\xa1\x05\xa0"
_STEADY_OPTIONS: list[Option] = [(11, b"a")]
_STEADY_OPTIONS_CF: list[Option] = [(11, b"a"), (12, _CF_CBOR)]
_STEADY_PATH = ("a",)
# The outer options of a reply that reuses the request's nonce (never mutated by the shell).
_REUSED_NONCE: list[Option] = [(9, b"")]
_STEADY_PLAINTEXT = bytes((Code.POST,)) + b"\xb1a\xff" + _STEADY_PAYLOAD
_STEADY_PLAINTEXT_CF = bytes((Code.POST,)) + b"\xb1a\x11\x3c\xff" + _STEADY_PAYLOAD
UNAUTHENTICATED_REPLY = encode(pb.AgentReply(error=pb.Error(
    code=pb.ErrorCode.UNAUTHENTICATED, message="the OSCORE request did not verify: "
    "unknown kid, stale Partial IV or bad tag; register again if this persists")))


class Refusal:
    """A protected request refused before the core saw it: answer `code` with `payload`
    unprotected; nothing changed."""

    __slots__ = ("code", "payload", "reason")

    def __init__(self, code: int, payload: bytes, reason: str) -> None:
        self.code = code
        self.payload = payload
        self.reason = reason


class Inner:
    """A verified protected request: who sent it, its seq, and the inner request."""

    __slots__ = ("agent", "kid", "seq", "code", "path", "options", "payload",
                 "content_format", "fresh", "nonce", "aad")

    def __init__(self, agent: Agent, kid: bytes, seq: int, code: int,
                 options: list[Option], payload: bytes, nonce: bytes, aad_: bytes,
                 path: tuple[str, ...] | None = None, cf: int | None = None) -> None:
        self.agent = agent
        self.kid = kid
        self.seq = seq     # = the request's Partial IV
        self.code = code
        self.options = options
        self.payload = payload
        # The request's nonce and AAD: a reply that reuses the nonce has the same AAD too.
        self.nonce = nonce
        self.aad = aad_
        # The inner Content-Format: None when absent (the current form of a protected
        # request: the resource implies CBOR); the handlers refuse anything but None or 60.
        if path is None:
            segments: list[str] = []
            for num, val in options:
                if num == 11:
                    segments.append(val.decode("utf-8", "replace"))
                elif num == 12:
                    cf = int.from_bytes(val, "big")
            path = tuple(segments)
        self.path = path
        self.content_format = cf
        # Whether the answer may reuse the request's nonce: the master knew the agent's seq
        # baseline (synced), so the Partial IV was checked against every seq it answered.
        self.fresh = agent.synced

    def option(self, number: int) -> bytes | None:
        for num, val in self.options:
            if num == number:
                return val
        return None


def context(agent: Agent) -> SecurityContext:
    """The master's OSCORE context for `agent`, derived on first use."""
    ctx = agent.oscore
    if ctx is None:
        ctx = agent.oscore = master_context(agent.secret, agent.agent_id)
    return ctx


def _unauthenticated(reason: str) -> Refusal:
    return Refusal(Code.UNAUTHORIZED, UNAUTHENTICATED_REPLY, reason)


def unprotect_untrusted(st: MasterState, option: bytes, ciphertext: bytes, now: float
                        ) -> Inner | Refusal:
    """The inner request of a protected request, or why it is refused (see the module). The
    kid may name a pending first registration (not expired at `now`): its first valid request
    confirms it (agents.agent_call_protected admits it)."""
    try:
        kid, seq = parse_request_option(option)
    except OscoreError as e:
        if e.code == Code.BAD_OPTION:
            return Refusal(Code.BAD_OPTION, b"", str(e))
        return _unauthenticated(str(e))
    aid = int.from_bytes(kid, "big")
    # (A kid is the agent id in minimal bytes: no leading zero, at most 7 bytes.)
    agent = st.agents.get(aid) if aid and kid[0] and len(kid) <= 7 else None
    if agent is None and aid and st.pending:
        agent = pending_agent(st, aid, now)
    if agent is None:
        return _unauthenticated("unknown kid")
    if seq <= agent.seq:
        return _unauthenticated(f"stale Partial IV {seq} (last accepted {agent.seq})")
    # (The option parsed: its flags byte is 0x08 | the Partial IV's length.)
    ctx = context(agent)
    nonce = (ctx.recipient_base ^ seq).to_bytes(NONCE_LEN, "big")
    request_aad = aad_from_bstr(bytes((0x40 | len(kid),)) + kid, option[1:1 + (option[0] & 7)])
    if len(ciphertext) <= TAG_LEN:
        return _unauthenticated("OSCORE ciphertext shorter than a code byte and its tag")
    try:
        plaintext = ctx.recipient_aead.decrypt(nonce, ciphertext, request_aad)
    except InvalidTag:
        return _unauthenticated("OSCORE tag does not verify")
    if plaintext == _STEADY_PLAINTEXT:   # most of the traffic: no option parsing
        return Inner(agent, kid, seq, Code.POST, _STEADY_OPTIONS, _STEADY_PAYLOAD, nonce,
                     request_aad, _STEADY_PATH)
    if plaintext == _STEADY_PLAINTEXT_CF:   # the same from an agent not yet updated
        return Inner(agent, kid, seq, Code.POST, _STEADY_OPTIONS_CF, _STEADY_PAYLOAD, nonce,
                     request_aad, _STEADY_PATH, CONTENT_FORMAT_CBOR)
    try:
        code, options, payload = decode_plaintext(plaintext)
    except ValueError as e:
        # The tag verified: the agent's own bug. Answered plain 4.00; its seq is not used up.
        return Refusal(Code.BAD_REQUEST, b"", f"OSCORE plaintext: {e}")
    return Inner(agent, kid, seq, code, options, payload, nonce, request_aad)


def accept_seq(inner: Inner) -> None:
    """A protected request the core does not see (a module GET): its seq is used up."""
    agent = inner.agent
    if agent.synced and inner.seq > agent.seq:
        agent.seq = inner.seq


def next_master_seq(st: MasterState) -> int:
    """The master's next Sender Sequence Number. Half-way to the stored bound the next bound
    is recorded (committed long before the numbers below it run out); the store's bound is
    where a restarted or new leader starts (recovery)."""
    seq = st.master_seq
    if seq <= 0:
        seq = 1   # never led from a store (sans-IO tests): start at 1
    st.master_seq = seq + 1
    if seq + MASTER_SEQ_RESERVE // 2 >= st.master_seq_bound:
        st.master_seq_bound = seq + MASTER_SEQ_RESERVE
        st.record(rec.SetOscoreSeqBound(st.master_seq_bound))
    return seq


def protect(st: MasterState, inner: Inner, code: int, payload: bytes,
            content_format: int | None = CONTENT_FORMAT_CBOR, options: list[Option] | None = None,
            notification: bool = False) -> tuple[int, list[Option], bytes]:
    """(outer code, outer options, ciphertext) of the answer `code`/`payload` (an encoded
    AgentReply, or module bytes with a Block2 in `options`) to `inner`; `notification`: an
    Observe response, which carries the master's own Partial IV (as every answer the master
    could not prove fresh)."""
    own = next_master_seq(st) if notification or not inner.fresh else None
    if not options and (not payload or content_format == CONTENT_FORMAT_CBOR):
        # An AgentReply (the common case): the plaintext without an option encoder.
        plaintext = bytes((code,)) + (b"\xc1\x3c\xff" + payload if payload else b"")
        if own is None:   # the request's nonce and AAD, as seal_response would compute them
            ciphertext = context(inner.agent).sender_aead.encrypt(inner.nonce, plaintext,
                                                                   inner.aad)
            return Code.CHANGED, _REUSED_NONCE, ciphertext
        value, ciphertext = seal_response(context(inner.agent), inner.kid, inner.seq,
                                          plaintext, own)
        return (Code.CONTENT if notification else Code.CHANGED), [(9, value)], ciphertext
    inner_options = list(options or ())
    if payload and content_format is not None:
        inner_options.append((12, encode_uint(content_format)))
    value, ciphertext = protect_response(context(inner.agent), inner.kid, inner.seq, code,
                                         inner_options, payload, own)
    outer = Code.CONTENT if notification else Code.CHANGED
    return outer, [(9, value)], ciphertext


def protect_push(st: MasterState, agent: Agent, request_piv: int, payload: bytes
                 ) -> tuple[list[Option], bytes]:
    """(outer options, ciphertext) of an Observe notification carrying `payload` (an
    AgentReply) to `agent`, whose registration had Partial IV `request_piv`."""
    value, ciphertext = protect_response(context(agent), kid_of(agent.agent_id), request_piv,
                                         Code.CONTENT, [(12, _CF_CBOR)], payload,
                                         next_master_seq(st))
    return [(9, value)], ciphertext
