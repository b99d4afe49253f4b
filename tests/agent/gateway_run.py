"""Helpers of the gateway's shell tests: a gateway in this process (its own agent, whose OSCORE
context protects the uplink, next to the relay), devices as real agent processes talking CoAP
with OSCORE to it, and a relay in front of the master that records what the gateway forwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from edgerm_agent.checkpoint import Checkpoint
from edgerm_agent.config import AgentConfig, parse_config
from edgerm_agent.gateway_shell import Gateway
from edgerm_agent.shell import Agent
from edgerm_agent.testing import AgentProcess
from edgerm_master.testing_io import UdpRelay

TOKEN = "tok"


def gateway_config(tmp_path: Path, masters: list[tuple[str, int]],
                   uplink: tuple[str, int] | None = None, **gateway: Any) -> AgentConfig:
    """A gateway's config: its own agent talks to `masters` (CoAP), its relay to `uplink`
    (default: the same). The agent offers almost nothing, so tests launch on the devices."""
    urls = [f"coap://{h}:{p}" for h, p in masters]
    table = {"host": "127.0.0.1", "port": 0, "window_ms": 2, "uplink_timeout_s": 3,
             "reply_timeout_s": 5, **gateway}
    if uplink is not None:
        table["uplink"] = f"coap://{uplink[0]}:{uplink[1]}"
    return parse_config({
        "name": "gw", "work_dir": str(tmp_path / "gw"),
        "master": {"urls": urls, "token": TOKEN},
        "resources": {"cpus": 0.01, "mem_mb": 1},
        "executors": {"enabled": []},
        "timing": {"call_timeout_s": 2.0, "backoff_initial_s": 0.1, "backoff_max_s": 0.5},
        "gateway": table})


@asynccontextmanager
async def running_gateway(config: AgentConfig, cls: type[Gateway] = Gateway,
                          **kw: Any) -> AsyncIterator[Gateway]:
    """`cls(config, agent)` and its agent running (registered) until the block ends."""
    agent = Agent(config)
    gw = cls(config, agent, **kw)
    async with trio.open_nursery() as n:
        await n.start(gw.run)
        await n.start(agent.run)
        with trio.fail_after(20):
            await agent.registered.wait()
        yield gw
        n.cancel_scope.cancel()


def device(tmp_path: Path, gw: Gateway, name: str = "dev", extra: str = "") -> AgentProcess:
    """A Linux agent process (CoAP with OSCORE) whose master is the gateway."""
    host, port = gw.address[0], gw.address[1]
    return AgentProcess(tmp_path / name, f"coap://{host}:{port}", name=name, token=TOKEN,
                        extra=extra)


def device_secret(p: AgentProcess) -> bytes:
    snap = Checkpoint(p.work_dir).load() or {}
    return bytes.fromhex(snap.get("secret", ""))


class RecordingRelay(UdpRelay):
    """The gateway's uplink through a relay that keeps every datagram, both ways (what an
    observer of the uplink, or the gateway itself, gets to see)."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(target)
        self.seen: list[bytes] = []

    def passes(self, direction: str, data: bytes) -> bool:
        self.seen.append(data)
        return super().passes(direction, data)


async def wait_until(predicate: Callable[[], object], timeout: float, what: str | Callable[[], str]
                     ) -> None:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.05)
        return
    raise AssertionError(f"timed out waiting for {what if isinstance(what, str) else what()}")
