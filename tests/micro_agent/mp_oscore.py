# Run under micropython: the agent's own oscore.py against the OSCORE cases of a JSON file
# (argv[1]: a list of cases that tests/micro_agent/test_oscore.py writes from RFC 8613
# Appendix C and proto/vectors/oscore.json). Kinds: "context" (derivation), "request" (encrypt
# a plaintext in place: ciphertext with tag), "response" (decrypt: plaintext), "refuse"
# (decrypt must fail and write nothing), "agent_request" (coap.begin + the payload +
# encryption: the datagram), "agent_response" (coap.parse + coap._open of an answer datagram:
# its plaintext, or None for a must-refuse one). Prints one line per failure, then a count.
import json
import sys
from binascii import hexlify, unhexlify

import oscore


def h(s):
    return unhexlify(s) if s else b""


def ctx(c):
    return oscore.setup(h(c["secret"]), h(c["sender_id"]), h(c["recipient_id"]),
                        h(c.get("salt", "")),
                        h(c["id_context"]) if c.get("id_context") is not None else None)


def hx(b):
    return str(hexlify(b), "ascii")


def check(c):
    k = ctx(c)
    kind = c["kind"]
    if kind == "context":
        got = [hx(k[:16]), hx(k[16:32]), hx(k[32:45])]
        want = [c["sender_key"], c["recipient_key"], c["common_iv"]]
        return "" if got == want else "got %s" % got
    if kind == "request":
        p = h(c["plaintext"])
        buf = bytearray(len(p) + 8 + 3)
        buf[3:3 + len(p)] = p
        n = oscore.ccm(k, 0, c["seq"], -1, buf, 3, 3 + len(p), buf, 3)
        got = hx(buf[3:n])
        return "" if got == c["ciphertext"] and n == 3 + len(p) + 8 else "got %s" % got
    if kind in ("response", "refuse"):
        ct = h(c["ciphertext"])
        out = bytearray(b"\xee" * (len(ct) + 4))
        n = oscore.ccm(k, 1, c["request_piv"], c.get("responder_piv", -1), ct, 0, len(ct),
                       out, 2)
        if kind == "refuse":
            return "" if n == -1 and out == b"\xee" * len(out) else "accepted (%d)" % n
        if n < 0:
            return "refused"
        got = hx(out[2:2 + n])
        return "" if got == c["plaintext"] and out[:2] == b"\xee\xee" else "got %s" % got
    if kind == "agent_request":
        # coap.begin + the payload + the encryption request() does: the whole datagram, but for
        # the token's and the message id's values
        import coap

        coap._c[13] = k  # coap's _C_KEYS
        coap._c[14] = lambda: c["seq"]  # coap's _C_SEQ
        i = coap.begin(c["code"], c["path"], cbor=True, observe=c.get("observe", -1))
        p = h(c["payload"])
        coap.TX[i] = 0xFF
        coap.TX[i + 1:i + 1 + len(p)] = p
        n = oscore.ccm(k, 0, coap._c[15], -1, coap.TX, coap._c[16], i + 1 + len(p), coap.TX,
                       coap._c[16])
        got = bytes(coap.TX[:n])
        want = h(c["datagram"])
        ok = got[:2] == want[:2] and got[5:] == want[5:]
        return "" if ok else "got %s" % hx(got)
    if kind == "agent_response":
        # the answer datagram as coap.request takes it (parse, then _open), the master's
        # highest Partial IV seen so far set as the vector says
        import coap

        coap._c[13] = k
        coap._c[19] = c["highest"] if c["highest"] else -1  # coap's _C_NOTE_PIV
        coap.RX = h(c["datagram"])
        t, code, mid, tok, a, blk = coap.parse(len(coap.RX))
        r = coap._open(c["request_piv"], code, a, len(coap.RX))
        if c.get("plaintext") is None:
            return "" if r is None else "accepted"
        if r is None:
            return "refused"
        got = bytes(coap.TX[:r[2]])
        return "" if got == h(c["plaintext"]) and r[0] == got[0] else "got %s" % hx(got)
    return "unknown kind"


ok = bad = 0
for c in json.load(open(sys.argv[1])):
    try:
        why = check(c)
    except Exception as e:
        why = repr(e)
    if why:
        bad += 1
        print("FAIL", c["name"], why)
    else:
        ok += 1
print("oscore:", ok, "passed,", bad, "failed")
