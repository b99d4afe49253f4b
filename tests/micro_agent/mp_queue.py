# Run under micropython with the agent's modules on the path, in a scratch directory holding
# config.json and state.cbor (argv[1]: the config's path). Loads the state as the agent does at
# boot, then prints its queue (updates are kept encoded, {call field: update}) and what
# update_ack 1 leaves of it.
import sys
from binascii import hexlify

import agent
import cbor

QUEUE = 4  # agent._S_QUEUE

agent._setup(sys.argv[1])
for e in agent._s[QUEUE]:
    print(type(e).__name__, str(hexlify(e), "ascii"))
agent._acked(1)
print("after ack 1:", len(agent._s[QUEUE]))
