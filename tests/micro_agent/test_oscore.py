"""micro_agent/oscore.py under the real `micropython`: RFC 8613 Appendix C (C.1-C.8: key
derivation, protected requests, responses with the request's nonce and with the server's own
Partial IV) byte for byte, proto/vectors/oscore.json (the same RFC values, and its EdgeRM
section: whole datagrams through the agent's own coap code, the agent's must-refuse cases), and
random exchanges against an independent implementation (the scripted master's, on the
`cryptography` package's AES-CCM), including the cases that must be refused (a flipped bit, a
truncated tag, another request's Partial IV, another context)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from edgerm_master.testing_scripted_master import OscoreContext

from .conftest import ROOT, needs_micropython, run_mp

pytestmark = needs_micropython

HERE = ROOT / "tests" / "micro_agent"
SECRET = "0102030405060708090a0b0c0d0e0f10"
SALT = "9e7ca92223786340"
C1 = {"secret": SECRET, "salt": SALT, "sender_id": "", "recipient_id": "01"}
C2 = {"secret": SECRET, "sender_id": "00", "recipient_id": "01"}
C3 = {**C1, "id_context": "37cbf3210017a2d3"}
PT_REQ = "01b3747631"  # GET coap://localhost/tv1, as plaintext
PT_RESP = "45ff48656c6c6f20576f726c6421"  # 2.05 "Hello World!"
C7 = "dbaad1e9a7e7b2a813d3c31524378303cdafae119106"
C8 = "4d4c13669384b67354b2b6175ff4b8658c666a6cf88e"

RFC8613 = [
    {"name": "C.1.1", "kind": "context", **C1, "sender_key": "f0910ed7295e6ad4b54fc793154302ff",
     "recipient_key": "ffb14e093c94c9cac9471648b4f98710", "common_iv": "4622d4dd6d944168eefb54987c"},
    {"name": "C.1.2", "kind": "context", **C1, "sender_id": "01", "recipient_id": "",
     "sender_key": "ffb14e093c94c9cac9471648b4f98710",
     "recipient_key": "f0910ed7295e6ad4b54fc793154302ff", "common_iv": "4622d4dd6d944168eefb54987c"},
    {"name": "C.2.1", "kind": "context", **C2, "sender_key": "321b26943253c7ffb6003b0b64d74041",
     "recipient_key": "e57b5635815177cd679ab4bcec9d7dda", "common_iv": "be35ae297d2dace910c52e99f9"},
    {"name": "C.2.2", "kind": "context", **C2, "sender_id": "01", "recipient_id": "00",
     "sender_key": "e57b5635815177cd679ab4bcec9d7dda",
     "recipient_key": "321b26943253c7ffb6003b0b64d74041", "common_iv": "be35ae297d2dace910c52e99f9"},
    {"name": "C.3.1", "kind": "context", **C3, "sender_key": "af2a1300a5e95788b356336eeecd2b92",
     "recipient_key": "e39a0c7c77b43f03b4b39ab9a268699f", "common_iv": "2ca58fb85ff1b81c0b7181b85e"},
    {"name": "C.4", "kind": "request", **C1, "seq": 20, "plaintext": PT_REQ,
     "ciphertext": "612f1092f1776f1c1668b3825e"},
    {"name": "C.5", "kind": "request", **C2, "seq": 20, "plaintext": PT_REQ,
     "ciphertext": "4ed339a5a379b0b8bc731fffb0"},
    {"name": "C.6", "kind": "request", **C3, "seq": 20, "plaintext": PT_REQ,
     "ciphertext": "72cd7273fd331ac45cffbe55c3"},
    {"name": "C.7", "kind": "response", **C1, "request_piv": 20, "plaintext": PT_RESP,
     "ciphertext": C7},
    {"name": "C.8", "kind": "response", **C1, "request_piv": 20, "responder_piv": 0,
     "plaintext": PT_RESP, "ciphertext": C8},
    # must be refused, and leave the output buffer as it was
    {"name": "C.7 bit flip", "kind": "refuse", **C1, "request_piv": 20,
     "ciphertext": C7[:10] + "%02x" % (int(C7[10:12], 16) ^ 4) + C7[12:]},
    {"name": "C.7 tag flip", "kind": "refuse", **C1, "request_piv": 20,
     "ciphertext": C7[:-2] + "%02x" % (int(C7[-2:], 16) ^ 0x80)},
    {"name": "C.7 truncated tag", "kind": "refuse", **C1, "request_piv": 20, "ciphertext": C7[:-2]},
    {"name": "C.7 another request", "kind": "refuse", **C1, "request_piv": 21, "ciphertext": C7},
    {"name": "C.7 another context", "kind": "refuse", **C2, "request_piv": 20, "ciphertext": C7},
    {"name": "C.7 as a server nonce", "kind": "refuse", **C1, "request_piv": 20,
     "responder_piv": 20, "ciphertext": C7},
    {"name": "C.8 another server PIV", "kind": "refuse", **C1, "request_piv": 20,
     "responder_piv": 1, "ciphertext": C8},
    {"name": "tag only", "kind": "refuse", **C1, "request_piv": 20, "ciphertext": C7[-16:]},
]


def _edgerm_file_cases() -> list[dict]:  # type: ignore[type-arg]
    """proto/vectors/oscore.json in mp_oscore.py's form: its RFC 8613 section (the same values
    as RFC8613 above, read from the shared file), and its EdgeRM section: the agent's context
    (secret 00..0f, agent_id 5), each request's whole datagram built by coap.begin, each answer
    datagram taken by coap's own parse + _open, and every must-refuse case whose receiver is
    the agent (the master's are the master's: the agent never receives a request)."""
    v = json.loads((ROOT / "proto" / "vectors" / "oscore.json").read_text())
    rfc = v["rfc8613"]
    ctxs = {c["name"]: {"secret": c["master_secret"], "salt": c["master_salt"] or "",
                        "sender_id": c["sender_id"], "recipient_id": c["recipient_id"],
                        "id_context": c["id_context"]} for c in rfc["contexts"]}
    out: list[dict] = []  # type: ignore[type-arg]
    for c in rfc["contexts"]:
        out.append({"name": "file " + c["name"], "kind": "context", **ctxs[c["name"]],
                    "sender_key": c["sender_key"], "recipient_key": c["recipient_key"],
                    "common_iv": c["common_iv"]})
    for r in rfc["requests"]:
        out.append({"name": "file " + r["name"], "kind": "request", **ctxs[r["context"]],
                    "seq": r["seq"], "plaintext": r["plaintext"], "ciphertext": r["ciphertext"]})
    for r in rfc["responses"]:
        # the file's context is the server's (it protects); the agent is the client: swap
        srv = ctxs[r["context"]]
        cli = {**srv, "sender_id": srv["recipient_id"], "recipient_id": srv["sender_id"]}
        out.append({"name": "file " + r["name"], "kind": "response", **cli,
                    "request_piv": r["request_piv"],
                    "responder_piv": -1 if r["own_piv"] is None else r["own_piv"],
                    "plaintext": r["plaintext"], "ciphertext": r["ciphertext"]})
    e = v["edgerm"]
    agent = {"secret": e["secret"], "sender_id": e["kid"], "recipient_id": ""}
    out.append({"name": "edgerm agent context", "kind": "context", **agent,
                **{k: e["agent_context"][k] for k in ("sender_key", "recipient_key",
                                                        "common_iv")}})
    for r in e["requests"]:
        assert r["inner_options"] == [[11, "61"]]  # POST a, no inner Content-Format
        out.append({"name": "edgerm " + r["name"], "kind": "agent_request", **agent,
                    "seq": r["seq"], "code": r["inner_code"], "path": "a",
                    "payload": r["payload"], "datagram": r["datagram"]})
    # The default steady heartbeat: FETCH `c` with Observe 0 (inner and outer), no CF.
    obs = {q["name"]: q for q in e["extra_requests"]}["observe_c_seq4"]
    assert obs["inner_options"] == [[6, ""], [11, "63"]]
    out.append({"name": "edgerm " + obs["name"], "kind": "agent_request", **agent,
                "seq": obs["seq"], "code": obs["inner_code"], "path": "c", "observe": 0,
                "payload": obs["payload"], "datagram": obs["datagram"]})
    for r in e["responses"]:
        out.append({"name": "edgerm " + r["name"], "kind": "agent_response", **agent,
                    "request_piv": r["request_piv"], "highest": 0,
                    "datagram": r["datagram"], "plaintext": r["plaintext"]})
    refusals = [r for r in e["must_refuse"] if r["receiver"] == "agent"]
    assert len(refusals) >= 4
    for r in refusals:
        out.append({"name": "edgerm must refuse " + r["name"], "kind": "agent_response",
                    **agent, "request_piv": r["request_piv"], "highest": r["highest"],
                    "datagram": r["datagram"], "plaintext": None})
    return out


def _cross_cases(n: int = 40) -> list[dict]:  # type: ignore[type-arg]
    """Random exchanges of an agent context (kid = agent_id) with the master's side as the
    scripted master implements it (cryptography's AES-CCM): requests the master must open,
    responses with the request's nonce and with the master's Partial IV."""
    rnd = random.Random(16)
    out = []
    for i in range(n):
        secret = bytes(rnd.getrandbits(8) for _ in range(16))
        aid = rnd.choice([1, 5, 255, 256, 70_000, 2**40 + 3])
        kid = aid.to_bytes((aid.bit_length() + 7) // 8, "big")
        master = OscoreContext(secret, kid)
        seq = rnd.choice([1, 20, 255, 256, 70_000, 2**32 - 1, 2**40 - 1])
        piv = seq.to_bytes(max(1, (seq.bit_length() + 7) // 8), "big")
        ctx = {"secret": secret.hex(), "sender_id": kid.hex(), "recipient_id": ""}
        pt = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 90)))
        # the master opens the agent's request: the agent's ciphertext is cryptography's
        from cryptography.hazmat.primitives.ciphers.aead import AESCCM

        ct = AESCCM(master.recipient_key, tag_length=8).encrypt(
            master.nonce(kid, piv), pt, master.aad(piv))
        out.append({"name": f"cross request {i}", "kind": "request", **ctx, "seq": seq,
                    "plaintext": pt.hex(), "ciphertext": ct.hex()})
        own = rnd.choice([None, 0, 1, 65_536, 2**32 + 7])
        own_piv = None if own is None else own.to_bytes(max(1, (own.bit_length() + 7) // 8),
                                                         "big")
        rct = master.seal(piv, pt, own_piv)
        out.append({"name": f"cross response {i}", "kind": "response", **ctx,
                    "request_piv": seq, "responder_piv": -1 if own is None else own,
                    "plaintext": pt.hex(), "ciphertext": rct.hex()})
        out.append({"name": f"cross replayed onto another request {i}", "kind": "refuse",
                    **ctx, "request_piv": seq + 1, "responder_piv": -1 if own is None else own,
                    "ciphertext": rct.hex()})
    return out


def _run(cases: list[dict], tmp_path: Path) -> str:  # type: ignore[type-arg]
    f = tmp_path / "cases.json"
    f.write_text(json.dumps(cases))
    r = run_mp(HERE / "mp_oscore.py", str(f), heap="256k", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"^oscore: (\d+) passed, (\d+) failed$", r.stdout, re.M)
    assert m is not None, r.stdout
    assert int(m.group(2)) == 0 and int(m.group(1)) == len(cases), r.stdout
    return r.stdout


def test_rfc8613_appendix_c(tmp_path: Path) -> None:
    _run(RFC8613, tmp_path)


def test_against_an_independent_implementation(tmp_path: Path) -> None:
    _run(_cross_cases(), tmp_path)


def test_vectors_file(tmp_path: Path) -> None:
    # proto/vectors/oscore.json, shared with the Python and C implementations
    _run(_edgerm_file_cases(), tmp_path)
