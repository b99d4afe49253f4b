"""proto/vectors/oscore.json against edgerm.oscore, and its EdgeRM section against aiocoap.

The RFC 8613 section is transcribed from the RFC; the EdgeRM section is made by our code, so
it is also checked here against aiocoap's independent OSCORE implementation (same secret and
ids, its own HKDF, nonce, AAD and option code): a bug of ours cannot hide in our own vectors.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from edgerm import oscore
from edgerm.coap.message import decode_message_untrusted
from edgerm.oscore.aad import aad
from edgerm.oscore.option import decode_option, encode_option

ROOT = Path(__file__).resolve().parents[2]
DATA = json.loads((ROOT / "proto/vectors/oscore.json").read_text())
RFC = DATA["rfc8613"]
EDGERM = DATA["edgerm"]
h = bytes.fromhex
CONTEXTS = {c["name"]: c for c in RFC["contexts"]}


def _ctx(c: dict[str, Any]) -> oscore.SecurityContext:
    return oscore.SecurityContext.derive(
        h(c["master_secret"]), h(c["sender_id"]), h(c["recipient_id"]), h(c["master_salt"]),
        None if c["id_context"] is None else h(c["id_context"]))


def _peer(name: str) -> oscore.SecurityContext:
    """The other side of an RFC context (C.1.1 <-> C.1.2): same inputs, ids swapped."""
    c = dict(CONTEXTS[name])
    c["sender_id"], c["recipient_id"] = c["recipient_id"], c["sender_id"]
    return _ctx(c)


@pytest.mark.parametrize("c", RFC["contexts"], ids=lambda c: c["name"])
def test_rfc_key_derivation(c: dict[str, Any]) -> None:
    ctx = _ctx(c)
    assert ctx.sender_key.hex() == c["sender_key"]
    assert ctx.recipient_key.hex() == c["recipient_key"]
    assert ctx.common_iv.hex() == c["common_iv"]
    assert ctx.sender_nonce(0).hex() == c["sender_nonce_piv0"]
    assert ctx.recipient_nonce(0).hex() == c["recipient_nonce_piv0"]
    assert oscore.nonce(ctx.common_iv, ctx.sender_id, 0).hex() == c["sender_nonce_piv0"]


@pytest.mark.parametrize("r", RFC["requests"], ids=lambda r: r["name"])
def test_rfc_request_protect(r: dict[str, Any]) -> None:
    ctx = _ctx(CONTEXTS[r["context"]])
    plain = decode_message_untrusted(h(r["unprotected"]))
    piv = oscore.piv_bytes(r["seq"])
    assert aad(ctx.sender_id, piv).hex() == r["aad"]
    assert ctx.sender_nonce(r["seq"]).hex() == r["nonce"]
    if r["kid_context"] is None:
        out = oscore.protect_request_message(ctx, r["seq"], plain)
        assert out.encode().hex() == r["protected"]
        assert out.opt(9) is not None and out.opt(9).hex() == r["option_value"]
    else:  # C.6: EdgeRM never sends a kid context; the parts still must agree
        _, ct = oscore.protect_request(ctx, r["seq"], plain.code,
                                       [o for o in plain.options if o[0] != 3], plain.payload)
        assert ct.hex() == r["ciphertext"]
        assert encode_option(piv, ctx.sender_id, h(r["kid_context"])).hex() == r["option_value"]
    assert oscore.encode_plaintext(plain.code, [o for o in plain.options if o[0] != 3],
                                   plain.payload).hex() == r["plaintext"]


@pytest.mark.parametrize("r", RFC["requests"], ids=lambda r: r["name"])
def test_rfc_request_unprotect(r: dict[str, Any]) -> None:
    server = _peer(r["context"])
    value = h(r["option_value"])
    piv, kid, kid_context = decode_option(value)
    assert kid == b"" or kid == h(CONTEXTS[r["context"]]["sender_id"])
    if kid_context is not None:  # C.6: the server picks its context by kid context + kid
        assert kid_context == server.id_context
        assert oscore.open_response(server, r["seq"], b"", h(r["ciphertext"]),
                                    request_kid=server.recipient_id)[1].hex() == r["plaintext"]
        return
    kid, seq, inner = oscore.unprotect_request_datagram(
        {server.recipient_id: server}.get, h(r["protected"]))
    assert seq == r["seq"]
    plain = decode_message_untrusted(h(r["unprotected"]))
    assert (inner.code, inner.options, inner.payload) == (plain.code, plain.options,
                                                          plain.payload)


@pytest.mark.parametrize("r", RFC["responses"], ids=lambda r: r["name"])
def test_rfc_response(r: dict[str, Any]) -> None:
    server = _ctx(CONTEXTS[r["context"]])
    plain = decode_message_untrusted(h(r["unprotected"]))
    out = oscore.protect_response_message(server, h(r["request_kid"]), r["request_piv"], plain,
                                          r["own_piv"])
    assert out.encode().hex() == r["protected"]
    assert oscore.encode_plaintext(plain.code, plain.options, plain.payload).hex() == \
        r["plaintext"]
    client = _peer(r["context"])
    piv, inner = oscore.unprotect_response_datagram(client, r["request_piv"], h(r["protected"]))
    assert piv == r["own_piv"]
    assert (inner.code, inner.options, inner.payload) == (plain.code, plain.options,
                                                          plain.payload)


# --- EdgeRM -------------------------------------------------------------------------------

AGENT = oscore.agent_context(h(EDGERM["secret"]), EDGERM["agent_id"])
MASTER = oscore.master_context(h(EDGERM["secret"]), EDGERM["agent_id"])
TOKEN = h(EDGERM["token"])
MID = EDGERM["mid"]
REQUESTS = {r["name"]: r for r in EDGERM["requests"]}


def _opts(j: list[list[Any]]) -> list[tuple[int, bytes]]:
    return [(n, h(v)) for n, v in j]


def test_edgerm_contexts() -> None:
    for ctx, want in ((AGENT, EDGERM["agent_context"]), (MASTER, EDGERM["master_context"])):
        assert ctx.sender_id.hex() == want["sender_id"]
        assert ctx.recipient_id.hex() == want["recipient_id"]
        assert ctx.sender_key.hex() == want["sender_key"]
        assert ctx.recipient_key.hex() == want["recipient_key"]
        assert ctx.common_iv.hex() == want["common_iv"]
    for agent_id, kid in EDGERM["kid_of"]:
        assert oscore.kid_of(agent_id).hex() == kid


@pytest.mark.parametrize("r", EDGERM["requests"], ids=lambda r: r["name"])
def test_edgerm_request(r: dict[str, Any]) -> None:
    from google.protobuf import json_format

    from edgerm.wire import encode, pb
    payload = encode(json_format.ParseDict(r["payload_json"], pb.AgentCall()))
    assert payload.hex() == r["payload"]
    dgram = oscore.request_datagram(AGENT, r["seq"], 0, MID, TOKEN, r["inner_code"],
                                    _opts(r["inner_options"]), payload)
    assert dgram.hex() == r["datagram"]
    assert len(dgram) == r["datagram_len"]
    value, ct = oscore.seal_request(AGENT, r["seq"], h(r["plaintext"]))
    assert (value.hex(), ct.hex()) == (r["option_value"], r["ciphertext"])
    assert AGENT.sender_nonce(r["seq"]).hex() == r["nonce"]
    assert aad(AGENT.sender_id, oscore.piv_bytes(r["seq"])).hex() == r["aad"]
    # The master's side: the hot path and the full path agree.
    piv, pt = oscore.open_request(MASTER, value, ct)
    assert (piv, pt.hex()) == (r["seq"], r["plaintext"])
    kid, piv, inner = oscore.unprotect_request_datagram({MASTER.recipient_id: MASTER}.get, dgram)
    assert (kid, piv) == (h(EDGERM["kid"]), r["seq"])
    assert (inner.code, inner.options, inner.payload) == (
        r["inner_code"], _opts(r["inner_options"]), payload)


@pytest.mark.parametrize("r", EDGERM["responses"], ids=lambda r: r["name"])
def test_edgerm_response(r: dict[str, Any]) -> None:
    dgram = oscore.response_datagram(MASTER, AGENT.sender_id, r["request_piv"], 2, MID, TOKEN,
                                     r["inner_code"], _opts(r["inner_options"]), h(r["payload"]),
                                     r["own_piv"])
    assert dgram.hex() == r["datagram"]
    value, ct = oscore.seal_response(MASTER, AGENT.sender_id, r["request_piv"],
                                     h(r["plaintext"]), r["own_piv"])
    assert (value.hex(), ct.hex()) == (r["option_value"], r["ciphertext"])
    piv, inner = oscore.unprotect_response_datagram(AGENT, r["request_piv"], dgram)
    assert piv == r["own_piv"]
    assert (inner.code, inner.options, inner.payload.hex()) == (
        r["inner_code"], _opts(r["inner_options"]), r["payload"])


def receive(case: dict[str, Any]) -> None:
    """What a receiver of the vectors does: unprotect, then the replay rule."""
    data = h(case["datagram"])
    if case["receiver"] == "master":
        _, piv, _ = oscore.unprotect_request_datagram({MASTER.recipient_id: MASTER}.get, data)
    else:
        piv, _ = oscore.unprotect_response_datagram(AGENT, case["request_piv"], data)
        if piv is None:
            return
    oscore.check_fresh(piv, case["highest"])


@pytest.mark.parametrize("case", EDGERM["must_refuse"], ids=lambda c: c["name"])
def test_edgerm_must_refuse(case: dict[str, Any]) -> None:
    with pytest.raises(oscore.OscoreError) as info:
        receive(case)
    assert type(info.value).__name__ == case["error"]
    code = info.value.code
    assert f"{code >> 5}.{code & 31:02d}" == case["code"]


def test_edgerm_budgets() -> None:
    # docs/protocol.md budgets: steady heartbeat <= 32 B, status update <= 40 B on the wire.
    assert REQUESTS["heartbeat_seq1"]["datagram_len"] <= 32
    assert REQUESTS["heartbeat_seq70000"]["datagram_len"] <= 32
    assert REQUESTS["status_update_seq2"]["datagram_len"] <= 40


def test_oscore_vectors_file_is_current() -> None:
    path = ROOT / "proto/vectors/make_oscore_vectors.py"
    spec = importlib.util.spec_from_file_location("make_oscore_vectors", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.build() == DATA, "oscore.json is stale: run python proto/vectors/" \
                                "make_oscore_vectors.py"


# --- the EdgeRM section against aiocoap's OSCORE ------------------------------------------

def _aiocoap_context(sender_id: bytes, recipient_id: bytes) -> Any:
    import aiocoap.oscore as ao

    class Ctx(ao.CanProtect, ao.CanUnprotect, ao.SecurityContextUtils):
        def post_seqnoincrease(self) -> None:  # nothing to persist in a test
            pass

    c = Ctx()
    c.alg_aead = ao.AES_CCM_16_64_128()
    c.hashfun = ao.hashfunctions["sha256"]
    c.sender_id = sender_id
    c.recipient_id = recipient_id
    c.id_context = None
    c.derive_keys(b"", h(EDGERM["secret"]))
    c.recipient_replay_window = ao.ReplayWindow(32, lambda: None)
    c.recipient_replay_window.initialize_empty()
    return c


@pytest.mark.parametrize("r", EDGERM["requests"], ids=lambda r: r["name"])
def test_edgerm_request_equals_aiocoap(r: dict[str, Any]) -> None:
    import aiocoap
    from aiocoap.message import Direction
    client = _aiocoap_context(AGENT.sender_id, b"")
    client.sender_sequence_number = r["seq"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # explicit mid/token
        msg = aiocoap.Message(code=aiocoap.POST, uri_path=["a"], content_format=60,
                              payload=h(r["payload"]))
        msg.direction = Direction.OUTGOING
        outer, _ = client.protect(msg)
        outer.mid, outer.token, outer.mtype = MID, TOKEN, aiocoap.CON
    assert outer.encode().hex() == r["datagram"]
    # ... and aiocoap's server side reads our bytes.
    server = _aiocoap_context(b"", AGENT.sender_id)
    incoming = aiocoap.Message.decode(h(r["datagram"]))
    incoming.direction = Direction.INCOMING
    inner, ids = server.unprotect(incoming)
    assert inner.payload.hex() == r["payload"]
    assert list(inner.opt.uri_path) == ["a"]


@pytest.mark.parametrize("r", EDGERM["responses"], ids=lambda r: r["name"])
def test_edgerm_response_read_by_aiocoap(r: dict[str, Any]) -> None:
    import aiocoap
    from aiocoap.message import Direction
    client = _aiocoap_context(AGENT.sender_id, b"")
    client.sender_sequence_number = r["request_piv"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        msg = aiocoap.Message(code=aiocoap.POST, uri_path=["a"], content_format=60,
                              payload=h(REQUESTS[r["request"]]["payload"]))
        msg.direction = Direction.OUTGOING
        _, request_id = client.protect(msg)
    reply = aiocoap.Message.decode(h(r["datagram"]))
    reply.direction = Direction.INCOMING
    inner, _ = client.unprotect(reply, request_id)
    assert inner.code == r["inner_code"]
    assert inner.payload.hex() == r["payload"]
