"""What one Prometheus scrape of the master costs (edgerm_master/metrics.py): the collector
walks the master's tables on its event loop, so a scrape holds up every heartbeat meanwhile.
`--agents` agents registered in the core (no sockets), a framework with `--tasks` tasks; then
the text exposition rendered: the first scrape (every agent's kind decoded once) and the next
ones (median of 5).

    python bench/metrics_scrape.py [--agents 100000] [--tasks 1000]

Prints JSON lines {"metric", "value", "unit", "goal"}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from edgerm.wire import decode, pb, sign, token_key  # noqa: E402
from edgerm_master.config import MasterConfig  # noqa: E402
from edgerm_master.core import Master  # noqa: E402
from edgerm_master.metrics import MasterCollector, ShellMetrics, master_registry, render  # noqa: E402
from edgerm_master.testing import ScriptedFramework, task_info  # noqa: E402


def emit(metric: str, value: float, unit: str, goal: str = "") -> None:
    print(json.dumps({"metric": metric, "value": round(value, 3), "unit": unit, "goal": goal}),
          flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--agents", type=int, default=100_000)
    p.add_argument("--tasks", type=int, default=1000)
    args = p.parse_args()
    cfg = MasterConfig(agent_tokens=["a"], framework_tokens=["framework-token"],
                       heartbeat_ms=600_000)
    m = Master(cfg, random_bytes=random.Random(0).randbytes)
    kinds = ["linux-6.1", "micropython", "zephyr"]
    key = token_key("a")
    for i in range(args.agents):
        call = pb.AgentCall(seq=1, register=pb.Register(
            name=f"a{i}", protocol_version=1, nonce=i.to_bytes(8, "big"),
            attributes=[pb.Attribute(name="os", text=kinds[i % 3])],
            resources=pb.Resources(cpus=4, mem_mb=4096)))
        decode(pb.AgentReply, m.agent_call(sign(call, key), 0.0).data)
    m.take_records()
    fw = ScriptedFramework()
    m.framework_call(1, fw.subscribe(), 0.0)
    for item in m.take_outbox():
        if hasattr(item, "event"):
            fw.handle_event(item.event)
    launched = 0
    now = 1.0
    while launched < args.tasks:
        m.handle_timer(now)
        m.take_records()
        for item in m.take_outbox():
            if hasattr(item, "event"):
                fw.handle_event(item.event)
        offers = list(fw.offers.values())[:args.tasks - launched]
        if not offers:
            break
        for o in offers:
            m.framework_call(1, fw.accept([o.offer_id], [task_info(f"t{launched}")]), now)
            launched += 1
        m.take_records()
        for item in m.take_outbox():
            if hasattr(item, "event"):
                fw.handle_event(item.event)
        now += 1.0
    registry = master_registry(MasterCollector(m, ShellMetrics()))
    start = time.perf_counter()
    size = len(render(registry))
    first = time.perf_counter() - start
    times = []
    for _ in range(5):
        start = time.perf_counter()
        render(registry)
        times.append(time.perf_counter() - start)
    times.sort()
    emit("metrics_scrape_first_ms", first * 1000, "ms")
    emit("metrics_scrape_ms", times[2] * 1000, "ms", "<= 100 at 100,000 agents")
    emit("metrics_scrape_bytes", size, "B")
    emit("metrics_scrape_tasks", launched, "count")


if __name__ == "__main__":
    main()
