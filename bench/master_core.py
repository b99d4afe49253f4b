"""Master core without sockets: memory per registered agent at 100,000 agents, heartbeats and
task launches per second through the core (decode, MAC, state, records, signed replies).

    python bench/master_core.py [--agents 100000] [--launches 20000]

Prints JSON lines {"metric", "value", "unit", "goal"}. Records are taken from the core and
dropped (the store is measured by the end-to-end benchmarks), as the shell would after a commit.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
import tracemalloc
from typing import Any

from edgerm.wire import decode, derive_secret, encode, pb, sign, token_key
from edgerm_master.config import MasterConfig
from edgerm_master.core import Master

TOKEN_KEY = token_key("a")


def emit(metric: str, value: float, unit: str, goal: str = "") -> None:
    print(json.dumps({"metric": metric, "value": round(value, 3), "unit": unit, "goal": goal}),
          flush=True)


def config() -> MasterConfig:
    return MasterConfig(agent_tokens=["a"], framework_tokens=["f"], operator_tokens=["o"],
                        heartbeat_ms=3_600_000, offer_timeout_s=3600.0,
                        allocation_interval_s=3600.0)


def register_call(i: int) -> bytes:
    # A Linux-agent-sized registration: cpus, mem, disk, ports, a sensor, two attributes.
    # 128 distinct inventories (a fleet of a few board kinds with different caps).
    reg = pb.Register(
        name=f"agent-{i}", protocol_version=1, nonce=nonce(i),
        resources=pb.Resources(cpus=1 + i % 16, mem_mb=512 * (1 + (i // 16) % 8),
                               disk_mb=32000,
                               ports=[pb.Range(begin=31000, end=32000)],
                               devices=[pb.Device(name="temp", kind=pb.SENSOR, unit="Cel")]),
        attributes=[pb.Attribute(name="os", text="linux"),
                    pb.Attribute(name="arch", text="aarch64")],
        executors=[pb.DOCKER, pb.WASM])
    return sign(pb.AgentCall(seq=1, register=reg), TOKEN_KEY)


def nonce(i: int) -> bytes:
    return i.to_bytes(8, "big")


def secret_of(i: int, registered: pb.Registered) -> bytes:
    return derive_secret("a", nonce(i), registered.nonce)


def bench_memory(n: int) -> tuple[Master, list[tuple[int, bytes]]]:
    rng = random.Random(1)
    m = Master(config(), random_bytes=rng.randbytes)
    calls = [register_call(i) for i in range(n)]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    now = 1000.0
    agents: list[tuple[int, bytes]] = []
    t0 = time.perf_counter()
    for i, data in enumerate(calls):
        result = m.agent_call(data, now)
        m.take_records()
        m.take_outbox()
        reply = decode(pb.AgentReply, result.data)
        agents.append((reply.registered.agent_id, secret_of(i, reply.registered)))
    elapsed = time.perf_counter() - t0
    del calls
    gc.collect()
    # The agents list and its secrets belong to the benchmark, not the master: subtract them.
    own = sum(len(s) + 33 for _, s in agents) + 56 * len(agents) + 8 * len(agents)
    used = tracemalloc.get_traced_memory()[0] - base - own
    tracemalloc.stop()
    emit("registrations_per_s_core", n / elapsed, "1/s (tracemalloc on)")
    emit(f"memory_per_agent_at_{n}", used / n, "B", "<= 2048")
    return m, agents


def bench_heartbeats(m: Master, agents: list[tuple[int, bytes]], count: int) -> None:
    now = 1001.0
    calls = []
    for i in range(count):
        aid, secret = agents[i % len(agents)]
        calls.append(sign(pb.AgentCall(agent_id=aid, seq=2 + i // len(agents),
                                       heartbeat=pb.Heartbeat()), secret))
    t0 = time.perf_counter()
    for data in calls:
        m.agent_call(data, now)
    elapsed = time.perf_counter() - t0
    m.take_records()
    emit("heartbeats_per_s_core", count / elapsed, "1/s")


def bench_launches(n_tasks: int) -> None:
    """A framework accepts offers on 1,000 agents with 10 tasks each; each agent gets its
    launches in a heartbeat reply, acknowledges them and reports RUNNING: the full path. Only
    the time spent inside the core counts (the simulated agents' and framework's encoding and
    signing are outside it), so this is the core's capacity."""
    rng = random.Random(2)
    cfg = config()
    cfg.allocation_interval_s = 0.5
    m = Master(cfg, random_bytes=rng.randbytes)
    now = 1000.0
    agents: list[list[Any]] = []
    for i in range(1000):
        r = decode(pb.AgentReply, m.agent_call(register_call(i), now).data).registered
        agents.append([r.agent_id, secret_of(i, r), 1, 0, 0])  # id, secret, seq, applied, update
    m.framework_call(1, encode(pb.FrameworkCall(call_id=1, subscribe=pb.Subscribe(
        name="bench", token="f"))), now)
    fid = next(iter(m.frameworks))
    m.take_records()
    m.take_outbox()
    launched = 0
    call_id = 1
    inside = 0.0
    clock = time.perf_counter
    while launched < n_tasks:
        now += 1.0
        t = clock()
        m.handle_timer(now)  # an allocation round
        out = m.take_outbox()
        inside += clock() - t
        batch = [o for item in out if hasattr(item, "event")
                 and item.event.WhichOneof("event") == "offers" for o in item.event.offers.offers]
        if not batch:
            raise RuntimeError("no offers")
        for o in batch:
            tasks = [pb.TaskInfo(task_id=f"t{launched + k}", spec=pb.TaskSpec(
                name="x", resources=pb.Resources(cpus=0.01, mem_mb=1),
                docker=pb.DockerTask(image="busybox"))) for k in range(10)]
            launched += 10
            call_id += 1
            data = encode(pb.FrameworkCall(framework_id=fid, call_id=call_id,
                                           accept=pb.Accept(offer_ids=[o.offer_id],
                                                            launch=tasks)))
            t = clock()
            m.framework_call(1, data, now)
            inside += clock() - t
        t = clock()
        m.take_outbox()
        inside += clock() - t
        for ag in agents:
            aid, secret = ag[0], ag[1]
            ag[2] += 1
            data = sign(pb.AgentCall(agent_id=aid, seq=ag[2],
                                     heartbeat=pb.Heartbeat(command_ack=ag[3])), secret)
            t = clock()
            result = m.agent_call(data, now)
            inside += clock() - t
            reply = decode(pb.AgentReply, result.data)
            for cmd in reply.commands:
                ag[3] = cmd.id
                ag[4] += 1
                ag[2] += 1
                data = sign(pb.AgentCall(agent_id=aid, seq=ag[2], status=pb.StatusUpdate(
                    update_id=ag[4], task=cmd.launch.task, state=pb.RUNNING)), secret)
                t = clock()
                m.agent_call(data, now)
                inside += clock() - t
        t = clock()
        m.take_records()
        m.take_outbox()
        inside += clock() - t
    running = sum(1 for t in m.frameworks[fid].tasks.values() if t.state == pb.RUNNING)
    assert running == launched, (running, launched)
    emit("task_launches_per_s_core", launched / inside, "1/s", ">= 2000")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--agents", type=int, default=100_000)
    p.add_argument("--launches", type=int, default=20_000)
    args = p.parse_args()
    m, agents = bench_memory(args.agents)
    bench_heartbeats(m, agents, min(200_000, 2 * args.agents))
    del m, agents
    gc.collect()
    bench_launches(args.launches)


if __name__ == "__main__":
    main()
