# Run under micropython with the agent's modules on the path, in a scratch directory (publish()
# saves the agent's state file). The largest publish the agent accepts must encode into the
# CoAP send buffer with the worst-case envelope (32-bit agent id, seq, update id and task
# number); one byte more must be refused with -4, never queued.
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
msg = {2: BIG, field: body, 1: BIG}                     # AgentCall seq, publish, agent_id
i = coap.begin(2, "a", cbor=True)                       # POST a, Content-Format 60
coap.TX[i] = 0xFF
msg[3] = b"12345678"                                    # the mac
j = cbor.enc(coap.TX, i + 1, msg)
print("fits", j, len(coap.TX))
