"""Task launches per second with each store backend, side by side: the embedded SQLite store
(synchronous=FULL) and the etcd store on a real three-member etcd cluster on loopback (issue 12:
goal >= 1,000 launches/s with etcd).

    python bench/master_store.py [--launches 5000] [--agents 50] [--backends sqlite,etcd]

Two measurements per backend:

*store*: the records one launch makes (AddTask, its command and the command's ack, STARTING and
RUNNING with their updates and acks: 10 records) applied in batches of `--batch` launches, as
the flusher applies what accumulated during the previous commit: the store's own capacity.

*service*: one process runs a `MasterService` (its core, flusher and store, as `edgerm-master`
does) and drives it the way its CoAP and WebSocket handlers do, minus the sockets: scripted
agents call
`core.agent_call` and wait for durability (`_agent_result`, as `_coap_agent`), one framework's
calls go to `core.framework_call` and its events come from its connection queue. The framework
accepts every offer with up to 20 tasks; agents heartbeat, acknowledge launches and report
STARTING and RUNNING; the framework acknowledges each update. A launch counts when its RUNNING
update reached the framework (so its AddTask, command, acks and updates were all committed).
With etcd the master holds a real lease and election key (election.py), and every transaction
is fenced on it.

The scripted agents skip checking the MAC of the master's replies (client CPU, not the
master's; the master still checks every call). Both sides share the process and its CPU, so
the service figure is a floor, sensitive to other load on the machine (it reports the process's
CPU seconds per launch too).

Prints JSON lines {"metric", "value", "unit", "goal"}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edgerm_master.testing  # noqa: E402
from edgerm.wire import pb  # noqa: E402
from edgerm_master import records as R  # noqa: E402
from edgerm_master.config import MasterConfig  # noqa: E402
from edgerm_master.election import Election  # noqa: E402
from edgerm_master.etcd_client import EtcdClient  # noqa: E402
from edgerm_master.etcd_store import EtcdStore  # noqa: E402
from edgerm_master.members import MemberInfo  # noqa: E402
from edgerm_master.service import MasterService  # noqa: E402
from edgerm_master.store_api import MasterStore, SqliteStore  # noqa: E402
from edgerm_master.testing import ScriptedAgent, ScriptedFramework  # noqa: E402
from edgerm_master.testing_etcd import EtcdCluster, take_lead  # noqa: E402

TASKS_PER_ACCEPT = 20
# The scripted agents trust the master's replies (see the docstring).
edgerm_master.testing.verify = lambda reply, secret: True  # type: ignore[assignment]


def emit(metric: str, value: float, unit: str, goal: str = "") -> None:
    print(json.dumps({"metric": metric, "value": round(value, 3), "unit": unit, "goal": goal}),
          flush=True)


def launch_records(i: int, agents: int) -> list[R.Record]:
    """What the master records for launch `i`, from accept to the RUNNING update's ack."""
    fw, task, agent = "fw-1", f"t{i}", 1 + i % agents
    return [R.AddTask(fw, task, agent, i, b"s" * 60, b"r" * 20, 1),
            R.EnqueueCommand(agent, i, b"c" * 90), R.AckCommands(agent, i),
            R.AddStatusUpdate(fw, task, b"u%d" % i, b"b" * 30),
            R.UpdateTaskState(fw, task, 2, 0, 0, "", 0), R.AckAgentUpdates(agent, 2 * i),
            R.AckStatusUpdate(fw, task, b"u%d" % i),
            R.AddStatusUpdate(fw, task, b"v%d" % i, b"b" * 30),
            R.UpdateTaskState(fw, task, 3, 0, 0, "", 0), R.AckStatusUpdate(fw, task, b"v%d" % i)]


async def store_rate(store: MasterStore, launches: int, agents: int, batch: int) -> float:
    """Launches per second of the store alone (batches of `batch` launches' records)."""
    await store.recover()
    await store.apply([R.AdmitAgent(a, b"s" * 32, b"i" * 120, 0.0) for a in range(1, agents + 1)]
                      + [R.AddFramework("fw-1", "bench", "*", 60.0, b"d" * 32)])
    t0 = time.perf_counter()
    for b in range(launches // batch):
        await store.apply([r for i in range(b * batch, (b + 1) * batch)
                           for r in launch_records(i, agents)])
    return (launches // batch * batch) / (time.perf_counter() - t0)


def config() -> MasterConfig:
    return MasterConfig(agent_tokens=["agent-token"], framework_tokens=["framework-token"],
                        operator_tokens=["o"], coap_port=0, ws_port=0, heartbeat_ms=600_000,
                        offer_timeout_s=3600.0, status_retry_s=3600.0, command_resend_s=3600.0,
                        allocation_interval_s=0.05, refuse_default_s=0.001)


async def drive(store: MasterStore, launches: int, n_agents: int) -> dict[str, float]:
    svc = MasterService(config(), store=store)
    done = trio.Event()
    stats: dict[str, float] = {}
    cpu0 = 0.0
    # CPU of the scripted peers (this thread's time around their own work, once the first
    # launch was accepted): the rest of the process's CPU is the master's (core, flusher,
    # store, and SQLite's worker thread).
    peers = [0.0]
    clock = time.thread_time

    def peer(fn: Any, *args: Any) -> Any:
        t = clock()
        try:
            return fn(*args)
        finally:
            if cpu0:
                peers[0] += clock() - t

    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run)
        core = svc.core

        async def agent_call(data: bytes) -> bytes:
            result = core.agent_call(data, time.time(), "coap", "bench")
            return await svc._agent_result(result)

        agents = [ScriptedAgent(f"a{i}", resources=pb.Resources(cpus=8, mem_mb=65536),
                                max_payload=16384) for i in range(n_agents)]
        for a in agents:
            a.handle_reply(await agent_call(a.next_call()))

        async def run_agent(a: ScriptedAgent) -> None:
            while not done.is_set():
                busy = bool(a.queue) or a.applied != a.acked_applied
                # Launches are acknowledged first (as the real agents' next call does), so
                # the master does not repeat them in the replies to the status updates.
                call = peer(a.heartbeat_call if a.applied != a.acked_applied else a.next_call)
                reply = peer(a.handle_reply, await agent_call(call))
                if not busy and not reply.commands:
                    await trio.sleep(0.005)

        send, receive = trio.open_memory_channel[Any](float("inf"))
        svc.push.fw_queues[1] = send
        fw = ScriptedFramework()
        core.framework_call(1, fw.subscribe(), time.time(), "bench")
        svc._after_core()
        accepted = running = 0
        start = 0.0

        def accept(offer_id: str, first: int, n: int) -> bytes:
            return fw.accept([offer_id], [pb.TaskInfo(task_id=f"t{first + k}", spec=pb.TaskSpec(
                name="x", resources=pb.Resources(cpus=0.01, mem_mb=1),
                docker=pb.DockerTask(image="busybox"))) for k in range(n)])

        async def run_framework() -> None:
            nonlocal accepted, running, start, cpu0
            async for data in receive:
                ev = peer(fw.handle_event, data)
                kind = ev.WhichOneof("event")
                if kind == "offers":
                    for offer in list(fw.offers.values()):
                        n = min(TASKS_PER_ACCEPT, launches - accepted)
                        if n <= 0:
                            break
                        if not start:
                            start = time.perf_counter()
                            cpu0 = time.process_time()
                        call = peer(accept, offer.offer_id, accepted, n)
                        accepted += n
                        core.framework_call(1, call, time.time(), "bench")
                elif kind == "update":
                    if ev.update.uuid:
                        core.framework_call(1, peer(fw.acknowledge, ev.update), time.time(),
                                            "bench")
                    if ev.update.state == pb.RUNNING:
                        running += 1
                        if running == launches:
                            stats["elapsed"] = time.perf_counter() - start
                            stats["cpu"] = time.process_time() - cpu0
                            stats["master_cpu"] = stats["cpu"] - peers[0]
                            done.set()
                            return
                svc._after_core()

        commits0 = svc.commits
        nursery.start_soon(run_framework)
        for a in agents:
            nursery.start_soon(run_agent, a)
        with trio.fail_after(600):
            await done.wait()
        stats["commits"] = svc.commits - commits0
        nursery.cancel_scope.cancel()
    return stats


async def bench_sqlite(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="edgerm-bench-") as tmp:
        store = await SqliteStore.open(tmp, "FULL")
        rate = await store_rate(store, args.launches, args.agents, args.batch)
        await store.aclose()
    emit("store_launches_per_s_sqlite", rate, f"1/s (batches of {args.batch}, FULL)")
    with tempfile.TemporaryDirectory(prefix="edgerm-bench-") as tmp:
        store = await SqliteStore.open(tmp, "FULL")
        stats = await drive(store, args.launches, args.agents)
    emit("service_launches_per_s_sqlite", args.launches / stats["elapsed"],
         "1/s (synchronous=FULL)")
    emit("service_cpu_ms_per_launch_sqlite", 1000 * stats["cpu"] / args.launches,
         "ms (agents, framework and master)")
    emit("service_master_cpu_ms_per_launch_sqlite", 1000 * stats["master_cpu"] / args.launches,
         "ms (the master alone: core, flusher, store)")
    emit("service_master_capacity_sqlite", args.launches / stats["master_cpu"],
         "launches per CPU-second of the master")
    emit("service_commits_sqlite", stats["commits"], "transactions")


async def bench_etcd(cluster: EtcdCluster, args: argparse.Namespace) -> None:
    client = EtcdClient(cluster.client_urls)
    try:
        store = EtcdStore(client, "/bench-store/")
        store.set_fence(await take_lead(client, "/bench-store/"))
        rate = await store_rate(store, args.launches, args.agents, args.batch)
        emit("store_launches_per_s_etcd", rate, f"1/s (batches of {args.batch}, 3 members)",
             ">= 1000")
        emit("store_etcd_transactions_per_batch", store.transactions / max(1, store.commits),
             "txns")
        election = Election(client, "/bench/", 5, MemberInfo("bench", {}))
        async with trio.open_nursery() as nursery:
            await nursery.start(election.run)
            await election.campaign()
            store = EtcdStore(client, "/bench/")
            store.set_fence(election.fence)
            stats = await drive(store, args.launches, args.agents)
            nursery.cancel_scope.cancel()
    finally:
        await client.aclose()
    emit("service_launches_per_s_etcd", args.launches / stats["elapsed"],
         "1/s (3 members, fenced)", ">= 1000")
    emit("service_cpu_ms_per_launch_etcd", 1000 * stats["cpu"] / args.launches,
         "ms (agents, framework and master)")
    emit("service_master_cpu_ms_per_launch_etcd", 1000 * stats["master_cpu"] / args.launches,
         "ms (the master alone: core, flusher, store)")
    emit("service_master_capacity_etcd", args.launches / stats["master_cpu"],
         "launches per CPU-second of the master", ">= 1000")
    emit("service_commits_etcd", stats["commits"], "batches")
    emit("service_etcd_transactions_per_batch", store.transactions / max(1, store.commits),
         "txns")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--launches", type=int, default=5000)
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--batch", type=int, default=50, help="launches per batch (store mode)")
    p.add_argument("--backends", default="sqlite,etcd")
    args = p.parse_args()
    backends = args.backends.split(",")
    if "sqlite" in backends:
        trio.run(bench_sqlite, args)
    if "etcd" in backends:
        with EtcdCluster() as cluster:
            trio.run(bench_etcd, cluster, args)


if __name__ == "__main__":
    main()
