"""Write proto/vectors/oscore.json: the OSCORE vectors every implementation passes byte for byte.

Python (edgerm/oscore), MicroPython (micro_agent/oscore.py) and C (firmware/zephyr/core) check
themselves against this file. Sections:

- `rfc8613`: RFC 8613 Appendix C, transcribed from the RFC (they are facts, not output of our
  code): C.1-C.3 key derivation (`contexts`: Master Secret/Salt, ID Context, Sender/Recipient ID
  -> Sender/Recipient Key, Common IV, and the nonces at Partial IV 0), C.4-C.6 requests and
  C.7-C.8 responses (`unprotected` and `protected` CoAP messages, `plaintext`, `aad`, `nonce`,
  `option_value`, `ciphertext`). The generator refuses to write the file unless edgerm.oscore
  reproduces every value.
- `edgerm`: the EdgeRM link (docs/protocol.md "OSCORE"): secret 00..0f, agent_id 5, the agent's
  context (sender kid 05, recipient empty) and the master's (reverse). `requests`: whole datagrams
  (CON, MID 0x1234, token 42) of protected agent calls, the payload being the `AgentCall` without
  agent_id/seq/mac as edgerm.wire encodes it (all POST `a`); `responses`: piggybacked ACKs (same
  MID and token), reusing the request nonce or with the master's own Partial IV;
  `extra_requests`/`extra_responses`: the same for an Observe registration on `c` (FETCH) with
  its answer and a notification, and a module block GET `m/<sha>` (Block2) with its answer.
  Every entry names its `mtype`, `mid`, `outer_code` and `outer_options` (besides OSCORE);
  `must_refuse`: datagrams a
  receiver refuses, with the error class and the CoAP code of the plain refusal. Computed by
  edgerm.oscore; the tests check them against aiocoap's independent OSCORE as well.

Run `python proto/vectors/make_oscore_vectors.py` after changing the EdgeRM cases; a test fails
while the file is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from google.protobuf import json_format  # noqa: E402

from edgerm import oscore  # noqa: E402
from edgerm.coap.message import decode_message_untrusted, encode_message  # noqa: E402
from edgerm.oscore.aad import aad  # noqa: E402
from edgerm.oscore.option import encode_option  # noqa: E402
from edgerm.wire import encode, pb  # noqa: E402

OUT = Path(__file__).resolve().parent / "oscore.json"
h = bytes.fromhex

# ---- RFC 8613 Appendix C (transcribed) -------------------------------------------------------
SECRET_C = "0102030405060708090a0b0c0d0e0f10"
SALT_C = "9e7ca92223786340"
ID_CTX_C3 = "37cbf3210017a2d3"

RFC_CONTEXTS: list[dict[str, Any]] = [
    {"name": "C.1.1", "role": "client", "master_secret": SECRET_C, "master_salt": SALT_C,
     "id_context": None, "sender_id": "", "recipient_id": "01",
     "sender_key": "f0910ed7295e6ad4b54fc793154302ff",
     "recipient_key": "ffb14e093c94c9cac9471648b4f98710",
     "common_iv": "4622d4dd6d944168eefb54987c",
     "sender_nonce_piv0": "4622d4dd6d944168eefb54987c",
     "recipient_nonce_piv0": "4722d4dd6d944169eefb54987c"},
    {"name": "C.1.2", "role": "server", "master_secret": SECRET_C, "master_salt": SALT_C,
     "id_context": None, "sender_id": "01", "recipient_id": "",
     "sender_key": "ffb14e093c94c9cac9471648b4f98710",
     "recipient_key": "f0910ed7295e6ad4b54fc793154302ff",
     "common_iv": "4622d4dd6d944168eefb54987c",
     "sender_nonce_piv0": "4722d4dd6d944169eefb54987c",
     "recipient_nonce_piv0": "4622d4dd6d944168eefb54987c"},
    {"name": "C.2.1", "role": "client", "master_secret": SECRET_C, "master_salt": "",
     "id_context": None, "sender_id": "00", "recipient_id": "01",
     "sender_key": "321b26943253c7ffb6003b0b64d74041",
     "recipient_key": "e57b5635815177cd679ab4bcec9d7dda",
     "common_iv": "be35ae297d2dace910c52e99f9",
     "sender_nonce_piv0": "bf35ae297d2dace910c52e99f9",
     "recipient_nonce_piv0": "bf35ae297d2dace810c52e99f9"},
    {"name": "C.2.2", "role": "server", "master_secret": SECRET_C, "master_salt": "",
     "id_context": None, "sender_id": "01", "recipient_id": "00",
     "sender_key": "e57b5635815177cd679ab4bcec9d7dda",
     "recipient_key": "321b26943253c7ffb6003b0b64d74041",
     "common_iv": "be35ae297d2dace910c52e99f9",
     "sender_nonce_piv0": "bf35ae297d2dace810c52e99f9",
     "recipient_nonce_piv0": "bf35ae297d2dace910c52e99f9"},
    {"name": "C.3.1", "role": "client", "master_secret": SECRET_C, "master_salt": SALT_C,
     "id_context": ID_CTX_C3, "sender_id": "", "recipient_id": "01",
     "sender_key": "af2a1300a5e95788b356336eeecd2b92",
     "recipient_key": "e39a0c7c77b43f03b4b39ab9a268699f",
     "common_iv": "2ca58fb85ff1b81c0b7181b85e",
     "sender_nonce_piv0": "2ca58fb85ff1b81c0b7181b85e",
     "recipient_nonce_piv0": "2da58fb85ff1b81d0b7181b85e"},
]

RFC_REQUESTS: list[dict[str, Any]] = [
    {"name": "C.4", "context": "C.1.1", "seq": 20, "kid_context": None,
     "unprotected": "44015d1f00003974396c6f63616c686f737483747631",
     "plaintext": "01b3747631",
     "aad": "8368456e63727970743040488501810a40411440",
     "nonce": "4622d4dd6d944168eefb549868",
     "option_value": "0914",
     "ciphertext": "612f1092f1776f1c1668b3825e",
     "protected": "44025d1f00003974396c6f63616c686f7374620914ff612f1092f1776f1c1668b3825e"},
    {"name": "C.5", "context": "C.2.1", "seq": 20, "kid_context": None,
     "unprotected": "440171c30000b932396c6f63616c686f737483747631",
     "plaintext": "01b3747631",
     "aad": "8368456e63727970743040498501810a4100411440",
     "nonce": "bf35ae297d2dace910c52e99ed",
     "option_value": "091400",
     "ciphertext": "4ed339a5a379b0b8bc731fffb0",
     "protected": "440271c30000b932396c6f63616c686f737463091400ff4ed339a5a379b0b8bc731fffb0"},
    {"name": "C.6", "context": "C.3.1", "seq": 20, "kid_context": ID_CTX_C3,
     "unprotected": "44012f8eef9bbf7a396c6f63616c686f737483747631",
     "plaintext": "01b3747631",
     "aad": "8368456e63727970743040488501810a40411440",
     "nonce": "2ca58fb85ff1b81c0b7181b84a",
     "option_value": "19140837cbf3210017a2d3",
     "ciphertext": "72cd7273fd331ac45cffbe55c3",
     "protected": "44022f8eef9bbf7a396c6f63616c686f73746b19140837cbf3210017a2d3ff72cd7273fd331a"
                  "c45cffbe55c3"},
]

RFC_RESPONSES: list[dict[str, Any]] = [
    {"name": "C.7", "context": "C.1.2", "request_kid": "", "request_piv": 20, "own_piv": None,
     "unprotected": "64455d1f00003974ff48656c6c6f20576f726c6421",
     "plaintext": "45ff48656c6c6f20576f726c6421",
     "aad": "8368456e63727970743040488501810a40411440",
     "nonce": "4622d4dd6d944168eefb549868",
     "option_value": "",
     "ciphertext": "dbaad1e9a7e7b2a813d3c31524378303cdafae119106",
     "protected": "64445d1f0000397490ffdbaad1e9a7e7b2a813d3c31524378303cdafae119106"},
    {"name": "C.8", "context": "C.1.2", "request_kid": "", "request_piv": 20, "own_piv": 0,
     "unprotected": "64455d1f00003974ff48656c6c6f20576f726c6421",
     "plaintext": "45ff48656c6c6f20576f726c6421",
     "aad": "8368456e63727970743040488501810a40411440",
     "nonce": "4722d4dd6d944169eefb54987c",
     "option_value": "0100",
     "ciphertext": "4d4c13669384b67354b2b6175ff4b8658c666a6cf88e",
     "protected": "64445d1f00003974920100ff4d4c13669384b67354b2b6175ff4b8658c666a6cf88e"},
]


def rfc_context(c: dict[str, Any]) -> oscore.SecurityContext:
    return oscore.SecurityContext.derive(
        h(c["master_secret"]), h(c["sender_id"]), h(c["recipient_id"]), h(c["master_salt"]),
        None if c["id_context"] is None else h(c["id_context"]))


def check_rfc() -> None:
    """Refuse to write vectors our implementation disagrees with (a transcription slip or a
    bug: either way a human must look)."""
    ctxs = {}
    for c in RFC_CONTEXTS:
        ctx = rfc_context(c)
        ctxs[c["name"]] = ctx
        got = {"sender_key": ctx.sender_key.hex(), "recipient_key": ctx.recipient_key.hex(),
               "common_iv": ctx.common_iv.hex(), "sender_nonce_piv0": ctx.sender_nonce(0).hex(),
               "recipient_nonce_piv0": ctx.recipient_nonce(0).hex()}
        for k, v in got.items():
            assert v == c[k], (c["name"], k, v)
    for r in RFC_REQUESTS:
        ctx = ctxs[r["context"]]
        msg = decode_message_untrusted(h(r["unprotected"]))
        pt = oscore.encode_plaintext(msg.code, [o for o in msg.options if o[0] != 3],
                                     msg.payload)
        assert pt.hex() == r["plaintext"], r["name"]
        piv = oscore.piv_bytes(r["seq"])
        assert aad(ctx.sender_id, piv).hex() == r["aad"], r["name"]
        assert ctx.sender_nonce(r["seq"]).hex() == r["nonce"], r["name"]
        _, ct = oscore.seal_request(ctx, r["seq"], pt)
        assert ct.hex() == r["ciphertext"], r["name"]
        kc = None if r["kid_context"] is None else h(r["kid_context"])
        assert encode_option(piv, ctx.sender_id, kc).hex() == r["option_value"], r["name"]
    for r in RFC_RESPONSES:
        ctx = ctxs[r["context"]]
        msg = decode_message_untrusted(h(r["unprotected"]))
        out = oscore.protect_response_message(ctx, h(r["request_kid"]), r["request_piv"], msg,
                                              r["own_piv"])
        assert out.encode().hex() == r["protected"], r["name"]
        assert out.payload.hex() == r["ciphertext"], r["name"]


# ---- EdgeRM ----------------------------------------------------------------------------------
SECRET = bytes(range(16))
AGENT_ID = 5
TOKEN = b"\x42"
MID = 0x1234
CON, ACK = 0, 2
GET, POST, FETCH, CHANGED, CONTENT = 0x01, 0x02, 0x05, 0x44, 0x45
OBSERVE, URI_PATH, CONTENT_FORMAT, BLOCK2 = 6, 11, 12, 23
CF_CBOR = b"\x3c"


def call_options(path: str) -> list[tuple[int, bytes]]:
    # No inner Content-Format: a protected request's resource implies a CBOR AgentCall (the
    # replies keep theirs). The master still accepts 60 from agents before that.
    return [(URI_PATH, path.encode())]


def as_json(msg: Any) -> Any:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def opts_json(options: list[tuple[int, bytes]]) -> list[list[Any]]:
    return [[n, v.hex()] for n, v in options]


def edgerm_section() -> dict[str, Any]:
    agent = oscore.agent_context(SECRET, AGENT_ID)
    master = oscore.master_context(SECRET, AGENT_ID)
    sha = bytes(range(32))
    heartbeat = pb.AgentCall(heartbeat=pb.Heartbeat())
    # (name, seq, inner code, inner options, payload message or None)
    calls: list[tuple[str, int, int, list[tuple[int, bytes]], Any]] = [
        ("heartbeat_seq1", 1, POST, call_options("a"), heartbeat),
        ("heartbeat_seq70000", 70000, POST, call_options("a"), heartbeat),
        ("status_update_seq2", 2, POST, call_options("a"), pb.AgentCall(
            status=pb.StatusUpdate(update_id=7, task=3, state=pb.FINISHED))),
        ("reregister_seq3", 3, POST, call_options("a"), pb.AgentCall(register=pb.Register(
            name="permamote-02", protocol_version=1, max_payload=256, update_next=8,
            resources=pb.Resources(cpus=1.0, mem_mb=0.0625, devices=[
                pb.Device(name="temp", kind=pb.SENSOR, shares=4)]),
            executors=[pb.WASM], tasks=[pb.TaskReport(task=3, state=pb.RUNNING)]))),
        # An Observe registration on `c`: inner FETCH with Observe 0, outer FETCH with its copy.
        ("observe_c_seq4", 4, FETCH, [(OBSERVE, b"")] + call_options("c"), heartbeat),
        # A module block: inner GET m/<sha256 hex> with Block2 (block 1, 64 bytes), no payload.
        ("module_get_seq5", 5, GET, [(URI_PATH, b"m"), (URI_PATH, sha.hex().encode()),
                                     (BLOCK2, b"\x12")], None),
    ]
    # The first four calls (POST a) and their five replies are `requests`/`responses`; the
    # Observe and module cases came later and live in `extra_requests`/`extra_responses`, so
    # that a consumer written for POST `a` reads the first lists unchanged.
    extra_calls = {"observe_c_seq4", "module_get_seq5"}
    requests = []
    extra_requests = []
    by_name = {}
    for name, seq, code, options, call in calls:
        payload = encode(call) if call is not None else b""
        pt = oscore.encode_plaintext(code, options, payload)
        value, ct = oscore.seal_request(agent, seq, pt)
        dgram = oscore.request_datagram(agent, seq, CON, MID, TOKEN, code, options, payload)
        outer = decode_message_untrusted(dgram)
        entry = {"name": name, "seq": seq, "mtype": CON, "mid": MID,
                 "outer_code": outer.code,
                 "outer_options": opts_json([o for o in outer.options if o[0] != 9]),
                 "inner_code": code, "inner_options": opts_json(options),
                 "payload_json": None if call is None else as_json(call),
                 "payload": payload.hex(), "plaintext": pt.hex(),
                 "aad": aad(agent.sender_id, oscore.piv_bytes(seq)).hex(),
                 "nonce": agent.sender_nonce(seq).hex(), "option_value": value.hex(),
                 "ciphertext": ct.hex(), "datagram": dgram.hex(), "datagram_len": len(dgram)}
        (extra_requests if name in extra_calls else requests).append(entry)
        by_name[name] = entry
    cf = [(CONTENT_FORMAT, CF_CBOR)]
    # (name, request, own PIV, mtype, mid, outer code, outer options besides OSCORE,
    #  inner code, inner options, payload message or raw bytes)
    replies: list[tuple[str, str, int | None, int, int, int, list[tuple[int, bytes]], int,
                        list[tuple[int, bytes]], Any]] = [
        ("heartbeat_seq1_reply", "heartbeat_seq1", None, ACK, MID, CHANGED, [], CHANGED, cf,
         pb.AgentReply()),
        ("heartbeat_seq70000_reply", "heartbeat_seq70000", None, ACK, MID, CHANGED, [], CHANGED,
         cf, pb.AgentReply()),
        ("status_update_seq2_reply", "status_update_seq2", None, ACK, MID, CHANGED, [], CHANGED,
         cf, pb.AgentReply(update_ack=7)),
        ("reregister_seq3_reply", "reregister_seq3", None, ACK, MID, CHANGED, [], CHANGED, cf,
         pb.AgentReply(update_ack=7)),
        # After a master restart the master cannot vouch for the request's freshness: it answers
        # with its own Partial IV (its master-wide counter, here 1), asking to re-register.
        ("heartbeat_seq70000_reregister_master_piv1", "heartbeat_seq70000", 1, ACK, MID,
         CHANGED, [], CHANGED, cf, pb.AgentReply(
             commands=[pb.Command(id=1, reregister=pb.ReRegister())])),
        # The registration's answer and a later notification (a CON of its own, MID 0x1235):
        # both with the master's Partial IV, outer 2.05 with the outer Observe the CoAP layer
        # sets, inner 2.05 without Observe.
        ("observe_c_seq4_reply_master_piv2", "observe_c_seq4", 2, ACK, MID, CONTENT,
         [(OBSERVE, b"")], CONTENT, cf, pb.AgentReply()),
        ("observe_c_seq4_notification_master_piv3", "observe_c_seq4", 3, CON, MID + 1, CONTENT,
         [(OBSERVE, b"\x01")], CONTENT, cf, pb.AgentReply(commands=[pb.Command(
             id=2, kill=pb.Kill(task=3))])),
        # A module block answer: inner 2.05 with Block2 (block 1, more, 64 bytes), raw bytes.
        ("module_get_seq5_reply", "module_get_seq5", None, ACK, MID, CHANGED, [], CONTENT,
         [(BLOCK2, b"\x1a")], bytes(range(64, 128))),
    ]
    responses = []
    extra_responses = []
    for (name, req_name, own_piv, mtype, mid, outer_code, outer_opts, code, options,
         reply) in replies:
        req = by_name[req_name]
        payload = reply if isinstance(reply, bytes) else encode(reply)
        pt = oscore.encode_plaintext(code, options, payload)
        value, ct = oscore.seal_response(master, agent.sender_id, req["seq"], pt, own_piv)
        dgram = encode_message(mtype, outer_code, mid, TOKEN, outer_opts + [(9, value)], ct)
        n = (master.sender_nonce(own_piv) if own_piv is not None
             else master.recipient_nonce(req["seq"]))
        (extra_responses if req_name in extra_calls else responses).append({
            "name": name, "request": req_name, "request_piv": req["seq"], "own_piv": own_piv,
            "mtype": mtype, "mid": mid, "outer_code": outer_code,
            "outer_options": opts_json(outer_opts), "inner_code": code,
            "inner_options": opts_json(options),
            "payload_json": None if isinstance(reply, bytes) else as_json(reply),
            "payload": payload.hex(), "plaintext": pt.hex(),
            "aad": aad(agent.sender_id, oscore.piv_bytes(req["seq"])).hex(), "nonce": n.hex(),
            "option_value": value.hex(), "ciphertext": ct.hex(), "datagram": dgram.hex(),
            "datagram_len": len(dgram)})
    return {
        "secret": SECRET.hex(), "agent_id": AGENT_ID, "kid": oscore.kid_of(AGENT_ID).hex(),
        "token": TOKEN.hex(), "mid": MID,
        "agent_context": {"sender_id": agent.sender_id.hex(), "recipient_id": "",
                          "sender_key": agent.sender_key.hex(),
                          "recipient_key": agent.recipient_key.hex(),
                          "common_iv": agent.common_iv.hex()},
        "master_context": {"sender_id": "", "recipient_id": master.recipient_id.hex(),
                           "sender_key": master.sender_key.hex(),
                           "recipient_key": master.recipient_key.hex(),
                           "common_iv": master.common_iv.hex()},
        "kid_of": [[i, oscore.kid_of(i).hex()] for i in (1, 5, 255, 256, 65535, 65536,
                                                          2**32 - 1)],
        "requests": requests,
        "responses": responses,
        "extra_requests": extra_requests,
        "extra_responses": extra_responses,
        "must_refuse": must_refuse(by_name, {r["name"]: r for r in responses}),
    }


def _flip(hexstr: str, index: int, mask: int = 0x01) -> str:
    b = bytearray(h(hexstr))
    b[index] ^= mask
    return b.hex()


def _request_with_option(value: bytes, ciphertext: str) -> str:
    """A CON POST datagram (MID 0x1234, token 42) with the given OSCORE option value."""
    return encode_message(CON, POST, MID, TOKEN, [(9, value)], h(ciphertext)).hex()


def must_refuse(reqs: dict[str, dict[str, Any]], resps: dict[str, dict[str, Any]]
                ) -> list[dict[str, Any]]:
    """Datagrams the receiver refuses. `receiver` "master" holds the master context for agent
    5 (and no other); `highest` is the highest Partial IV it already accepted from the agent.
    "agent" holds the agent context, waits for the response to `request_piv`, and has seen
    master Partial IVs up to `highest`."""
    hb = reqs["heartbeat_seq1"]
    hb7 = reqs["heartbeat_seq70000"]
    dg = hb["datagram"]
    n = len(h(dg))
    ct = hb["ciphertext"]
    opt_at = 6  # header 4, token 1, option header 1: the OSCORE option value starts here
    rep = resps["heartbeat_seq1_reply"]
    rep_piv = resps["heartbeat_seq70000_reregister_master_piv1"]
    out: list[dict[str, Any]] = []

    def add(name: str, receiver: str, datagram: str, error: str, code: str, highest: int = 0,
            request_piv: int | None = None, why: str = "") -> None:
        e: dict[str, Any] = {"name": name, "receiver": receiver, "datagram": datagram,
                             "highest": highest, "error": error, "code": code, "why": why}
        if request_piv is not None:
            e["request_piv"] = request_piv
        out.append(e)

    add("bit_flip_ciphertext", "master", _flip(dg, n - 12), "DecryptFailed", "4.01",
        why="one bit of the encrypted payload changed")
    add("bit_flip_tag", "master", _flip(dg, n - 1), "DecryptFailed", "4.01",
        why="one bit of the tag changed")
    add("bit_flip_piv", "master", _flip(dg, opt_at + 1, 0x02), "DecryptFailed", "4.01",
        why="Partial IV 1 -> 3: another nonce and AAD, the tag fails")
    add("truncated_tag", "master", dg[:-2], "DecryptFailed", "4.01",
        why="last tag byte missing")
    add("ciphertext_shorter_than_tag", "master", _request_with_option(h("090105"), ct[:14]),
        "DecryptFailed", "4.01", why="7 bytes: not even a tag")
    add("replay_same_seq", "master", dg, "Replay", "4.01", highest=1,
        why="seq 1 was accepted already (the recorded heartbeat sent again)")
    add("replay_older_seq", "master", dg, "Replay", "4.01", highest=70000,
        why="seq 1 after seq 70000 was accepted")
    add("wrong_kid", "master", _request_with_option(h("090106"), ct), "UnknownKid", "4.01",
        why="kid 06: no context")
    add("kid_5_as_2_bytes", "master", _request_with_option(h("09010005"), ct), "UnknownKid",
        "4.01", why="kid 0005 is another Sender ID than 05")
    add("empty_kid", "master", _request_with_option(h("0901"), ct), "UnknownKid", "4.01",
        why="kid empty is the master's own Sender ID, never a request's")
    add("kid_context_present", "master", _request_with_option(h("190101aa05"), ct),
        "UnknownKid", "4.01", why="EdgeRM contexts have no ID Context")
    add("reserved_flag_bit", "master", _request_with_option(h("890105"), ct), "BadOption",
        "4.02", why="flag bit 0 (0x80) is reserved")
    add("piv_length_6", "master", _request_with_option(h("0e01020304050605"), ct), "BadOption",
        "4.02", why="n = 6 is reserved")
    add("piv_not_minimal", "master", _request_with_option(h("0a000105"), ct), "BadOption", "4.02",
        why="Partial IV 0001: a second spelling of seq 1")
    add("no_kid_flag", "master", _request_with_option(h("0101"), ct), "BadOption", "4.02",
        why="a request must carry its kid")
    add("no_piv", "master", _request_with_option(h("0805"), ct), "BadOption", "4.02",
        why="a request must carry its Partial IV")
    add("empty_option", "master", _request_with_option(b"", ct), "BadOption", "4.02",
        why="empty OSCORE option on a request")
    add("lone_zero_flags", "master", _request_with_option(b"\x00", ct), "BadOption", "4.02",
        why="an all-zero flags byte must be sent as the empty value")
    add("truncated_piv", "master", _request_with_option(h("0b0101"), ct), "BadOption", "4.02",
        why="n = 3 but 2 bytes follow")
    add("wrong_secret", "master", _request_with_option(h("090105"), oscore.seal_request(
        oscore.agent_context(bytes(16), AGENT_ID), 1, h(hb["plaintext"]))[1].hex()),
        "DecryptFailed", "4.01", why="sealed with secret 00..00")
    add("reply_bit_flip", "agent", _flip(rep["datagram"], len(h(rep["datagram"])) - 3),
        "DecryptFailed", "4.01", request_piv=1, why="a bit of the reply's ciphertext")
    add("reply_to_other_request", "agent", rep["datagram"], "DecryptFailed", "4.01",
        request_piv=2, why="the reply to seq 1 offered as the reply to seq 2")
    add("reply_master_piv_replayed", "agent", rep_piv["datagram"], "Replay", "4.01", highest=1,
        request_piv=hb7["seq"], why="master Partial IV 1 was seen already")
    add("reply_master_piv_wrong_request", "agent", rep_piv["datagram"], "DecryptFailed", "4.01",
        request_piv=1, why="the AAD binds the reply to its request even with the master's PIV")
    return out


def build() -> dict[str, Any]:
    check_rfc()
    return {
        "description": "OSCORE (RFC 8613) vectors for EdgeRM; see proto/vectors/"
                       "make_oscore_vectors.py for the meaning of every field. Hex is lowercase; "
                       "Partial IVs and sequence numbers are integers.",
        "rfc8613": {"contexts": RFC_CONTEXTS, "requests": RFC_REQUESTS,
                    "responses": RFC_RESPONSES},
        "edgerm": edgerm_section(),
    }


def render() -> str:
    return json.dumps(build(), indent=1) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
