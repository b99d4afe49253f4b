"""Failover time of the master on etcd (issue 12): from the SIGKILL of the leading master to the
first task launch the new leader accepts, with a 2-second lease.

    python bench/failover.py [--failovers 10] [--lease 2] [--masters 3]

Real parts on loopback: a three-member etcd cluster (testing_etcd.EtcdCluster), `--masters`
edgerm-master processes (a killed one is started again, as systemd's Restart=always would, and
comes back as a standby), one agent over CoAP and one framework over WebSocket that follow the
leader along their URL lists (testing_ha.HaAgent / HaFramework: scripted, like the scenario
tests). The framework keeps launching short tasks, one at a time; each round waits for a steady
state (a launch accepted after the previous failover, every master up), SIGKILLs the leader
and takes the time until the next `accepted` event. That includes the lease running out, the
campaign, the new leader's warm recovery, the agent and the framework finding it, the agent's
re-registration and an allocation round with its offer.

Prints JSON lines {"metric", "value", "unit", "goal"}: failover_s p50/p90/max over the rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import trio

from edgerm.transport.coap import open_coap_client
from edgerm_master.testing_etcd import EtcdCluster, unique_prefix
from edgerm_master.testing_ha import HaAgent, HaFramework, MasterSet


def emit(metric: str, value: float, unit: str, goal: str = "") -> None:
    print(json.dumps({"metric": metric, "value": round(value, 3), "unit": unit, "goal": goal}),
          flush=True)


async def measure(args: argparse.Namespace) -> list[float]:
    times: list[float] = []
    with EtcdCluster() as etcd, tempfile.TemporaryDirectory(prefix="edgerm-failover-") as d:
        ms = MasterSet(d, etcd.client_urls, unique_prefix("bench"), n=args.masters,
                       lease_ttl_s=args.lease)
        ms.start()
        try:
            async with open_coap_client() as coap, trio.open_nursery() as nursery:
                nursery.start_soon(ms.supervise)
                await ms.leader()
                agent = HaAgent(coap, ms.coap, "bench-agent")
                fw = HaFramework(ms.ws, "bench", [f"t{i}" for i in range(100_000)],
                                 per_accept=1, max_outstanding=1)
                nursery.start_soon(agent.run)
                nursery.start_soon(fw.run)
                for n in range(args.failovers):
                    # Steady: a launch accepted since the last failover, every master up.
                    with trio.fail_after(60):
                        mark = len(fw.accepted_at)
                        while len(fw.accepted_at) <= mark or not all(
                                ms.alive(i) for i in range(args.masters)):
                            await trio.sleep(0.05)
                    await trio.sleep(0.5)
                    leader = await ms.leader()
                    mark = len(fw.accepted_at)
                    t0 = time.monotonic()
                    ms.kill(leader)
                    with trio.fail_after(60):
                        while len(fw.accepted_at) <= mark or fw.accepted_at[-1] <= t0:
                            await trio.sleep(0.005)
                    took = next(t for t in fw.accepted_at[mark:] if t > t0) - t0
                    times.append(took)
                    print(json.dumps({"failover": n + 1, "killed": f"m{leader}",
                                      "seconds": round(took, 3)}), file=sys.stderr, flush=True)
                nursery.cancel_scope.cancel()
        finally:
            ms.close()
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--failovers", type=int, default=10)
    ap.add_argument("--lease", type=float, default=2.0, help="lease TTL in seconds")
    ap.add_argument("--masters", type=int, default=3)
    args = ap.parse_args()
    times = trio.run(measure, args)
    q = statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else times * 9
    emit("failover_s_p50", statistics.median(times), "s", "<= 3")
    emit("failover_s_p90", q[8], "s")
    emit("failover_s_max", max(times), "s")
    emit("failovers", len(times), "count", ">= 10")
    emit("lease_ttl_s", args.lease, "s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
