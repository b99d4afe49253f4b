# Run under micropython with the agent's modules on the path. Reads cases from stdin, one per
# line, each field prefixed with "x" so that empty values survive split(); prints one line per
# case for the CPython side to compare (HMAC against hmac, floats against cbor2).
import sys
from binascii import hexlify, unhexlify

import cbor
import oscore

for line in sys.stdin:
    kind, a, b = [f[1:] for f in line.split()]
    if kind == "hmac":
        print(str(hexlify(oscore.hmac(unhexlify(a), unhexlify(b))), "ascii"))
    elif kind == "float":
        buf = bytearray(16)
        n = cbor.enc(buf, 0, float(a))
        v = cbor.decode(unhexlify("a101") + buf[:n])[1]
        print(str(hexlify(buf[:n]), "ascii"), "same" if v == float(a) or v != v else "changed")
