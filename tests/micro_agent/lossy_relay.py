"""A UDP relay on loopback between the MicroPython agent and a master that loses the datagrams
a test picks: `drop(direction, message)` is asked about each one ("up": agent to master, "down":
master to agent; `message` is the decoded CoAP message, or None when it does not decode) and a
True answer loses it. Counts what it forwarded and what it lost.

    relay = LossyRelay(("127.0.0.1", master.port), drop)
    await relay.bind()
    nursery.start_soon(relay.run)
    ... agent config "master": f"127.0.0.1:{relay.port}"
"""

from __future__ import annotations

from collections.abc import Callable

from edgerm.coap.message import Message, decode_message_untrusted
from edgerm_master.testing_io import UdpRelay

Drop = Callable[[str, Message | None], bool]


class LossyRelay(UdpRelay):
    def __init__(self, target: tuple[str, int], drop: Drop) -> None:
        super().__init__(target)
        self.drop = drop
        self.forwarded = {"up": 0, "down": 0}
        self.lost = {"up": 0, "down": 0}

    def passes(self, direction: str, data: bytes) -> bool:
        try:
            msg: Message | None = decode_message_untrusted(data)
        except Exception:
            msg = None
        if self.drop(direction, msg):
            self.lost[direction] += 1
            return False
        self.forwarded[direction] += 1
        return True
