"""The HTTP API's cost with a big fleet, without sockets: one dashboard page (50 agents) against
the whole operator view (`edgerm agents`), the filter box cold and warm (and how long its first
search holds up the master's event loop), the header's counts.

    python bench/http_api.py [--agents 10000]

Prints JSON lines {"metric", "value", "unit", "goal"}. The goal: the dashboard stays usable with
10,000 agents, i.e. what it asks for on each change (a page and the counts) takes well under
100 ms however big the fleet; the whole view is listed as the yardstick.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from typing import Any

import trio

from edgerm.wire import pb, sign, token_key
from edgerm_master.config import MasterConfig
from edgerm_master.core import Master
from edgerm_master.http_api import Query, SearchText, page, summary
from edgerm_master.state import MasterState
from edgerm_master.view import state_view


def emit(metric: str, value: float, unit: str, goal: str = "") -> None:
    print(json.dumps({"metric": metric, "value": round(value, 3), "unit": unit, "goal": goal}),
          flush=True)


def fleet(n: int) -> Master:
    m = Master(MasterConfig(agent_tokens=["a"]), random_bytes=random.Random(0).randbytes)
    key = token_key("a")
    for i in range(n):
        call = pb.AgentCall(seq=1, register=pb.Register(
            name=f"edge-{i:05d}", protocol_version=1, nonce=i.to_bytes(8, "big"),
            resources=pb.Resources(cpus=1, mem_mb=64, devices=[
                pb.Device(name="temp", kind=pb.SENSOR, shares=1, unit="Cel")]),
            attributes=[pb.Attribute(name="zone", text=f"z{i % 10}")], executors=[pb.WASM]))
        m.agent_call(sign(call, key), 1.0)
    return m


def best_ms(fn: Callable[[], Any], runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1000


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--agents", type=int, default=10_000)
    n = p.parse_args().agents
    st = fleet(n).state
    texts = SearchText()
    emit(f"whole operator view, {n} agents (edgerm agents; yardstick)",
         best_ms(lambda: state_view(st, 2.0, ("agents",)), 3), "ms")
    emit(f"one dashboard page of 50 agents of {n}",
         best_ms(lambda: page(st, Query("agents", 50), 2.0, texts)), "ms", "< 100")
    last = f"edge-{n - 1:05d}"
    cold = SearchText()
    emit(f"filter box, first search in {n} agents (builds the search text)",
         best_ms(lambda: page(st, Query("agents", 50, q=last), 2.0, cold), 1), "ms")
    emit(f"filter box, later searches in {n} agents",
         best_ms(lambda: page(st, Query("agents", 50, q=last), 2.0, cold)), "ms", "< 100")
    emit(f"header counts of {n} agents", best_ms(lambda: summary(st)), "ms", "< 100")
    emit(f"filter box, first search in {n} agents: longest pause of the event loop",
         trio.run(longest_pause, st), "ms", "< 100")


async def longest_pause(st: MasterState) -> float:
    """The API warms the filter box's search text in slices (`SearchText.warm`); the longest
    the master's other tasks wait meanwhile, seen by a task that ticks every 1 ms."""
    longest = 0.0
    async with trio.open_nursery() as nursery:

        async def ticker() -> None:
            nonlocal longest
            last = time.perf_counter()
            while True:
                await trio.sleep(0.001)
                now = time.perf_counter()
                longest = max(longest, now - last - 0.001)
                last = now

        nursery.start_soon(ticker)
        await trio.sleep(0.01)
        await SearchText().warm(st, "agents", 2.0)
        nursery.cancel_scope.cancel()
    return longest * 1000


if __name__ == "__main__":
    main()
