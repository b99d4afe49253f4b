# Run under micropython: decode -> encode every vector of proto/vectors/vectors.json, and
# refuse every "cbor"-level negative. Prints one line per failure and a closing count line.
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
