# Freeze or install the EdgeRM MicroPython agent (`mpremote mip install`, or `freeze` in a board
# manifest). executor.py is optional: leave it out and the agent offers no executor.
metadata(version="0.1.0", description="EdgeRM agent for MicroPython boards")

module("cbor.py")
module("coap.py")
module("oscore.py")
module("sensors.py")
module("executor.py")
module("agent.py")
