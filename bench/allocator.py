"""Benchmark of the DRF allocator (edgerm_master.allocator) with no master around it.

Prints JSON lines ``{"metric", "value", "unit", "goal"}``:

* ``round_all_free_ms``: one `offers(now)` round where every one of 100,000 agents has free
  resources and 100 frameworks (weights 1, 2, 3) compete; best of 3 (`--repeat`). Goal 200 ms.
* ``round_all_free_cpu_ms``: the same round in process CPU time (less noisy on a shared machine).
* ``round_steady_ms``: a round after 1% of the offers came back (declined or expired).
* ``add_agent_us``, ``release_us``: per-event costs paid outside the round.
* ``memory_per_agent_bytes``: allocator memory per agent (tracemalloc, totals parsed from pb
  per agent as the master does).
* ``naive_round_ms_per_1k_agents`` / ``naive_round_all_free_ms_extrapolated``: the naive
  approach measured side by side: for each agent, sort all frameworks by weighted DRF share
  computed from `Res` sums. Run on 1,000 agents and extrapolated linearly to 100,000.

Run: ``python bench/allocator.py [--agents N] [--frameworks F] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
import tracemalloc

from edgerm.resources import Res, dominant_share
from edgerm.wire import pb
from edgerm_master.allocator import Allocator


def emit(metric: str, value: float, unit: str, goal: str | None = None, **extra: object) -> None:
    line: dict[str, object] = {"metric": metric, "value": round(value, 3), "unit": unit,
                               "goal": goal}
    line.update(extra)
    print(json.dumps(line), flush=True)


def inventories() -> list[pb.Resources]:
    """A mixed edge fleet: gateways with ports, Pis with a camera, MCUs with shared sensors."""
    gateway = pb.Resources(cpus=4, mem_mb=8192, disk_mb=32000,
                           ports=[pb.Range(begin=31000, end=32000)])
    pi = pb.Resources(cpus=4, mem_mb=2048, disk_mb=16000, ports=[pb.Range(begin=8000, end=8099)],
                      devices=[pb.Device(name="cam", kind=pb.OTHER, shares=0)])
    mcu = pb.Resources(cpus=1, mem_mb=0.25, devices=[
        pb.Device(name="temp", kind=pb.SENSOR, shares=4, unit="Cel"),
        pb.Device(name="humidity", kind=pb.SENSOR, shares=4, unit="%RH")])
    return [gateway, gateway, pi, mcu]


def build(n_agents: int, n_frameworks: int) -> Allocator:
    a = Allocator()
    for i in range(n_frameworks):
        a.add_framework(f"fw{i:03d}", "*", float(1 + i % 3))
    kinds = inventories()
    for aid in range(n_agents):
        a.add_agent(aid, Res.from_pb(kinds[aid % len(kinds)]))
    return a


def timed_round(a: Allocator, now: float) -> tuple[float, float, list]:
    w0, c0 = time.perf_counter(), time.process_time()
    offers = a.offers(now)
    return (time.perf_counter() - w0) * 1e3, (time.process_time() - c0) * 1e3, offers


def naive_round(agents: dict[int, Res], weights: dict[str, float], total: dict[str, float],
                held: dict[str, dict[str, float]]) -> list[tuple[str, int, Res]]:
    """Every agent x sort all frameworks by weighted dominant share (recomputed each time)."""
    out = []
    for aid, free in agents.items():
        fid = sorted(weights, key=lambda f: (dominant_share(held[f], total) / weights[f], f))[0]
        for k, v in free.quantities().items():
            held[fid][k] = held[fid].get(k, 0.0) + v
        out.append((fid, aid, free))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=100_000)
    ap.add_argument("--frameworks", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--naive-agents", type=int, default=1_000)
    args = ap.parse_args()
    n, f = args.agents, args.frameworks
    size = {"agents": n, "frameworks": f}

    # -- memory: a fresh allocator under tracemalloc (slow, so not timed)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    a = build(n, f)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    emit("memory_per_agent_bytes", (after - before) / n, "B", None, **size)
    del a
    gc.collect()

    # -- event costs and rounds
    t0 = time.perf_counter()
    a = build(n, f)
    emit("add_agent_us", (time.perf_counter() - t0) / n * 1e6, "us",
         None, note="includes Res.from_pb of the agent's inventory", **size)

    walls, cpus = [], []
    for rep in range(args.repeat):
        wall, cpu, offers = timed_round(a, float(rep))
        assert len(offers) == n, (len(offers), n)
        walls.append(wall)
        cpus.append(cpu)
        if rep < args.repeat - 1:
            t0 = time.perf_counter()
            for fid, aid, res in offers:
                a.release(fid, aid, res)
            release_us = (time.perf_counter() - t0) / n * 1e6
    emit("round_all_free_ms", min(walls), "ms", "<= 200", median=round(statistics.median(walls), 1),
         **size)
    emit("round_all_free_cpu_ms", min(cpus), "ms", "<= 200", **size)
    if args.repeat > 1:
        emit("release_us", release_us, "us", None, **size)

    # steady state: 1% of the offers come back (declined without a filter, or expired)
    back = offers[:: 100]
    for fid, aid, res in back:
        a.release(fid, aid, res)
    wall, cpu, again = timed_round(a, 10.0)
    assert len(again) == len(back)
    emit("round_steady_ms", wall, "ms", None, free_agents=len(back), cpu_ms=round(cpu, 2),
         **size)
    del a, offers, again
    gc.collect()

    # -- the naive approach, side by side on a slice (it is ~100x slower per agent)
    m = args.naive_agents
    kinds = inventories()
    agents = {aid: Res.from_pb(kinds[aid % len(kinds)]) for aid in range(m)}
    total: dict[str, float] = {}
    for r in agents.values():
        for k, v in r.quantities().items():
            total[k] = total.get(k, 0.0) + v
    weights = {f"fw{i:03d}": float(1 + i % 3) for i in range(f)}
    held: dict[str, dict[str, float]] = {fid: {} for fid in weights}
    t0 = time.perf_counter()
    naive = naive_round(agents, weights, total, held)
    naive_ms = (time.perf_counter() - t0) * 1e3
    assert len(naive) == m
    emit("naive_round_ms_per_1k_agents", naive_ms * 1000 / m, "ms", None, frameworks=f)
    emit("naive_round_all_free_ms_extrapolated", naive_ms * n / m, "ms", None, **size)
    small = build(m, f)
    wall, _, _ = timed_round(small, 0.0)
    emit("heap_round_ms_per_1k_agents", wall * 1000 / m, "ms", None, frameworks=f)


if __name__ == "__main__":
    main()
