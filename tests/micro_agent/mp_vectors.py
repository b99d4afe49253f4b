# Run under micropython: decode -> encode every vector of proto/vectors/vectors.json, and
# refuse every "cbor"-level negative; then check the "auth" section (first registration) with
# the agent's own code. Prints one line per failure and a count line for each part.
import json
import sys
from binascii import hexlify, unhexlify

import cbor

vec = json.load(open(sys.argv[1]))
buf = bytearray(4096)
ok = bad = 0
for v in vec["vectors"]:
    data = unhexlify(v["hex"])
    try:
        n = cbor.enc(buf, 0, cbor.decode(data))
        why = "" if buf[:n] == data else str(hexlify(buf[:n]), "ascii")
    except Exception as e:
        why = repr(e)
    if not why:
        ok += 1
    else:
        bad += 1
        print("FAIL", v["name"], v["hex"], why)
for v in vec["negative"]:
    if v["level"] != "cbor":
        continue
    try:
        cbor.decode(unhexlify(v["hex"]))
        bad += 1
        print("ACCEPTED", v["name"], v["hex"])
    except ValueError:
        ok += 1
print("vectors:", ok, "passed,", bad, "failed")

# The first registration (vectors.json "auth"), with the agent's own code: its token key, the
# secret it derives from the two nonces, the register_first call signed with the token key as
# agent._call signs it (encode, mac over those bytes, encode again), and the registered reply
# verified with the derived secret as agent._call verifies it (agent._authentic); a wrong key
# must not verify.
import agent
import hashlib

import oscore

a = vec["auth"]
named = {}
for v in vec["vectors"]:
    named[v["name"]] = unhexlify(v["hex"])
def key(token):  # the token's key as agent._setup computes it
    return hashlib.sha256(token.encode()).digest()


def secret(k, an, mn):  # the secret as agent._call derives it
    return oscore.hmac(k, b"edgerm secret" + an + mn, 16)


tkey = key(a["token"])
an, mn = unhexlify(a["agent_nonce"]), unhexlify(a["master_nonce"])
sec = secret(tkey, an, mn)
reg = named[a["register_vector"]]
call = cbor.decode(reg)
given = call.pop(3)  # AgentCall.mac
n = cbor.enc(buf, 0, call)
call[3] = oscore.hmac(tkey, buf[:n])
n = cbor.enc(buf, 0, call)
rep = cbor.decode(named[a["registered_vector"]])
checks = (
    ("token_key", tkey == unhexlify(a["token_key"]) and len(tkey) == 32),
    ("secret", sec == unhexlify(a["secret"]) and len(sec) == 16),
    ("register_first nonce", call[4][6] == an and 1 not in call),  # no agent_id
    ("register_first signed", buf[:n] == reg and call[3] == given),
    ("registered nonce", rep[5][2] == mn),
    ("registered verifies", agent._authentic(dict(rep), sec)),
    ("registered refused with the token key", not agent._authentic(dict(rep), tkey)),
    ("registered refused with another token's secret",
     not agent._authentic(dict(rep), secret(key(a["token"] + "x"), an, mn))),
    ("nonces fresh", len(oscore.urandom(8)) == 8 and oscore.urandom(8) != oscore.urandom(8)),
)
auth_bad = 0
for name, good in checks:
    if not good:
        auth_bad += 1
        print("AUTH FAIL", name)
print("auth:", len(checks) - auth_bad, "passed,", auth_bad, "failed")
