# Run under micropython with the agent's modules on the path, in a scratch directory (publish()
# saves the agent's state file). The largest publish the agent accepts must encode into the
# CoAP send buffer with the worst-case envelope (OSCORE with a 7-byte kid and a 5-byte Partial
# IV, 32-bit update id and task number); one byte more must be refused with -4, never queued.
import agent
import cbor
import coap

# agent._s is the agent's state list; the indices are its _S_NEXT and _S_QUEUE consts.
NEXT = 2
QUEUE = 4

BIG = 0xFFFFFFFF
topic = "t" * 11
agent._s[NEXT] = BIG
print("over", agent.publish(BIG, b"x" * (512 - len(topic) + 1), topic))
print("queued", len(agent._s[QUEUE]))
print("max", agent.publish(BIG, b"x" * (512 - len(topic)), topic))
field, body = cbor.decode(agent._s[QUEUE][-1]).popitem()  # kept encoded: {field: update}
# OSCORE-protected, the worst case: a 7-byte kid, a 5-byte Partial IV, the tag
import oscore

coap._c[13] = oscore.setup(b"k" * 16, 2**56 - 1)  # coap's _C_KEYS
coap._c[14] = lambda: 2**40 - 1  # coap's _C_SEQ
i = coap.begin(2, "a", cbor=True)                       # POST a (no Content-Format inside)
coap.TX[i] = 0xFF
j = cbor.enc(coap.TX, i + 1, {field: body})             # no agent_id, seq or mac inside
j = oscore.ccm(coap._c[13], 0, coap._c[15], -1, coap.TX, coap._c[16], j, coap.TX, coap._c[16])
print("fits", j, len(coap.TX))
