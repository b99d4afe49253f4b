"""OSCORE on the master's CoAP agent link (sans-IO): a protected request in, its inner
request out; a reply in, its protected response out.

`unprotect_untrusted(st, option, ciphertext)` takes the OSCORE option value and the payload
of a CoAP request: kid -> agent id -> the agent's context (derived from its secret on first
use and kept on the `Agent`; a re-registration afresh makes a new Agent, so a new context),
the replay rule (Partial IV > the agent's last accepted `seq`: NSTART 1 makes a window
pointless), the tag check, the plaintext's inner code, options and payload. What it refuses
comes back as a `Refusal` (plain 4.01 with `AgentReply{error UNAUTHENTICATED}`, or 4.02 for
a malformed option) and changed nothing.

`protect(st, inner, code, payload)` protects the answer: reusing the request's nonce when
the master could verify the request was fresh (the agent was synced: its seq baseline is
known), else, and for Observe notifications, with the master's own Sender Sequence Number
(`next_master_seq`: one master-wide counter, persisted ahead as `SetOscoreSeqBound` like an
agent's seq, docs/protocol.md). The outer code is 2.04 (2.05 for notifications).
"""

from __future__ import annotations

from edgerm.coap.codes import Code
from edgerm.coap.message import Option
from edgerm.coap.options import encode_uint
from edgerm.oscore import (
    OscoreError,
    SecurityContext,
    decode_plaintext,
    kid_of,
    master_context,
    open_request,
    parse_request_option,
    protect_response,
)
from edgerm.wire import CONTENT_FORMAT_CBOR, encode, pb
from edgerm_master import records as rec
from edgerm_master.state import Agent, MasterState

__all__ = ["Inner", "Refusal", "unprotect_untrusted", "protect", "next_master_seq",
           "MASTER_SEQ_RESERVE", "UNAUTHENTICATED_REPLY"]

# The master's sequence numbers reserved per store write (a restart skips fewer than this).
MASTER_SEQ_RESERVE = 65_536
_CF_CBOR = bytes((CONTENT_FORMAT_CBOR,))
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
                 "content_format", "fresh")

    def __init__(self, agent: Agent, kid: bytes, seq: int, code: int,
                 options: list[Option], payload: bytes) -> None:
        self.agent = agent
        self.kid = kid
        self.seq = seq     # = the request's Partial IV
        self.code = code
        self.options = options
        self.payload = payload
        path: list[str] = []
        cf: int | None = None
        for num, val in options:
            if num == 11:
                path.append(val.decode("utf-8", "replace"))
            elif num == 12:
                cf = int.from_bytes(val, "big")
        self.path = tuple(path)
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


def unprotect_untrusted(st: MasterState, option: bytes, ciphertext: bytes) -> Inner | Refusal:
    """The inner request of a protected request, or why it is refused (see the module)."""
    try:
        kid, seq = parse_request_option(option)
    except OscoreError as e:
        if e.code == Code.BAD_OPTION:
            return Refusal(Code.BAD_OPTION, b"", str(e))
        return _unauthenticated(str(e))
    aid = int.from_bytes(kid, "big")
    agent = st.agents.get(aid) if aid and kid_of(aid) == kid else None
    if agent is None:
        return _unauthenticated("unknown kid")
    if seq <= agent.seq:
        return _unauthenticated(f"stale Partial IV {seq} (last accepted {agent.seq})")
    try:
        _, plaintext = open_request(context(agent), option, ciphertext)
    except OscoreError as e:
        return _unauthenticated(str(e))
    try:
        code, options, payload = decode_plaintext(plaintext)
    except ValueError as e:
        # The tag verified: the agent's own bug. Answered plain 4.00; its seq is not used up.
        return Refusal(Code.BAD_REQUEST, b"", f"OSCORE plaintext: {e}")
    return Inner(agent, kid, seq, code, options, payload)


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
        st.master_seq_bound = max(st.master_seq_bound, seq) + MASTER_SEQ_RESERVE
        st.record(rec.SetOscoreSeqBound(st.master_seq_bound))
    return seq


def protect(st: MasterState, inner: Inner, code: int, payload: bytes,
            content_format: int | None = CONTENT_FORMAT_CBOR, options: list[Option] | None = None,
            notification: bool = False) -> tuple[int, list[Option], bytes]:
    """(outer code, outer options, ciphertext) of the answer `code`/`payload` (an encoded
    AgentReply, or module bytes with a Block2 in `options`) to `inner`; `notification`: an
    Observe response, which carries the master's own Partial IV (as every answer the master
    could not prove fresh)."""
    inner_options = list(options or ())
    if payload and content_format is not None:
        inner_options.append((12, _CF_CBOR if content_format == CONTENT_FORMAT_CBOR
                              else encode_uint(content_format)))
    own = next_master_seq(st) if notification or not inner.fresh else None
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
