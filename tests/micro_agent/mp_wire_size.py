# Run under micropython with the agent's modules on the path. The datagram sizes the agent
# sends with OSCORE (agent id 255: a 1-byte kid; its 1-byte token), built as agent.py builds
# them (coap.begin, cbor.enc, the encryption coap.request does), one line each:
#   <name> <bytes> <the plaintext's option bytes: code, options up to the payload marker>
# and the plain first registration's header (it keeps its Content-Format 60).
import cbor
import coap
import oscore


def sealed(name, code, path, msg, seq, observe=-1):
    coap._c[13] = oscore.setup(b"k" * 16, 255)  # coap's _C_KEYS
    coap._c[14] = lambda: seq  # coap's _C_SEQ
    i = coap.begin(code, path, cbor=True, observe=observe)
    pt = bytes(coap.TX[coap._c[16]:i])  # coap's _C_PLAIN: the code byte, the inner options
    coap.TX[i] = 0xFF
    j = cbor.enc(coap.TX, i + 1, msg)
    n = oscore.ccm(coap._c[13], 0, coap._c[15], -1, coap.TX, coap._c[16], j, coap.TX,
                   coap._c[16])
    print(name, n, pt.hex())


HB_ACK = {5: {1: 23}}  # a heartbeat acknowledging command 23 (a one-byte CBOR uint)
STATUS = {6: {1: 65535, 2: 2, 3: 4}}  # StatusUpdate{update_id 65535, task 2, FINISHED}
WORST = 2**32 - 1
sealed("heartbeat_post_seq1", 2, "a", {5: {}}, 1)
sealed("heartbeat_post_worst", 2, "a", HB_ACK, WORST)
sealed("heartbeat_observe_seq1", 5, "c", {5: {}}, 1, 0)
sealed("heartbeat_observe_worst", 5, "c", HB_ACK, WORST, 0)
sealed("status_update_seq1", 2, "a", STATUS, 1)
sealed("status_update_worst", 2, "a", STATUS, WORST)
coap._c[13] = None  # no context: a first registration, plain
i = coap.begin(2, "a", cbor=True)
print("registration_header", i, bytes(coap.TX[5:i]).hex())
