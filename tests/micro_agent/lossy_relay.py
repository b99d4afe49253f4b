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
from typing import Any

import trio

from edgerm.coap.message import Message, decode_message_untrusted

Drop = Callable[[str, Message | None], bool]


class LossyRelay:
    def __init__(self, target: tuple[str, int], drop: Drop) -> None:
        self.target = target
        self.drop = drop
        self.port = 0
        self.client: Any = None  # the agent's address, once it has sent something
        self.forwarded = {"up": 0, "down": 0}
        self.lost = {"up": 0, "down": 0}
        self.front = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        self.back = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)

    async def bind(self) -> int:
        await self.front.bind(("127.0.0.1", 0))
        await self.back.bind(("127.0.0.1", 0))
        self.port = int(self.front.getsockname()[1])
        return self.port

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._up)
            nursery.start_soon(self._down)

    def _lose(self, direction: str, data: bytes) -> bool:
        try:
            msg: Message | None = decode_message_untrusted(data)
        except Exception:
            msg = None
        if self.drop(direction, msg):
            self.lost[direction] += 1
            return True
        self.forwarded[direction] += 1
        return False

    async def _up(self) -> None:
        while True:
            data, self.client = await self.front.recvfrom(65536)
            if not self._lose("up", data):
                await self.back.sendto(data, self.target)

    async def _down(self) -> None:
        while True:
            data, _ = await self.back.recvfrom(65536)
            if self.client is not None and not self._lose("down", data):
                await self.front.sendto(data, self.client)
