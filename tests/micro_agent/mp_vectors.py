# Run under micropython: decode -> encode every vector of proto/vectors/vectors.json, and
# refuse every "cbor"-level negative. Prints one line per failure and a closing count line.
import sys
import json
from binascii import unhexlify, hexlify
import cbor

vec = json.load(open(sys.argv[1]))
buf = bytearray(4096)
ok = bad = 0
for v in vec["vectors"]:
    data = unhexlify(v["hex"])
    try:
        n = cbor.enc(buf, 0, cbor.decode(data))
        got = bytes(buf[:n])
    except Exception as e:
        got = repr(e)
    if got == data:
        ok += 1
    else:
        bad += 1
        print("FAIL", v["name"], v["hex"], got if type(got) is str else hexlify(got))
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
