"""Task launches per second with each store backend, side by side: the embedded SQLite store
(synchronous=FULL) and the etcd store on a real three-member etcd cluster on loopback (issue 12:
goal >= 1,000 launches/s with etcd).

    python bench/master_store.py [--launches 5000] [--agents 50] [--generators 2]
                                 [--backends sqlite,etcd]

Two measurements per backend:

*store*: the records one launch makes (AddTask, its command and the command's ack, STARTING and
RUNNING with their updates and acks: 10 records) applied in batches of `--batch` launches, as
the flusher applies what accumulated during the previous commit: the store's own capacity.

*service*: the master in a process of its own (this file with `--role master`: a real
`MasterService` with its CoAP and WebSocket servers, core, flusher and store; with etcd a real
lease and election key, every transaction fenced on it), and the load in other processes:
`--generators` processes of scripted agents over real CoAP (`--role agents`) and one framework
over a real WebSocket (`--role framework`). The framework accepts every offer with up to 20
tasks and acknowledges each update; agents heartbeat, acknowledge launches and report STARTING
and RUNNING. A launch counts when its RUNNING update reached the framework (so its AddTask,
command, acks and updates were all committed). The master's CPU (all its threads, SQLite's
worker included) is read from the master process itself at the first accept and at the last
RUNNING: `service_master_cpu_ms_per_launch`, and its inverse `service_master_capacity` (what
one core would give the master alone when the load generators do not compete with it).

The scripted agents skip checking the MAC of the master's replies (load-generator CPU, not the
master's; the master still checks every call).

Prints JSON lines {"metric", "value", "unit", "goal"}.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edgerm_master.testing  # noqa: E402
from edgerm.transport.coap import open_coap_client  # noqa: E402
from edgerm.wire import CONTENT_FORMAT_CBOR, decode, pb  # noqa: E402
from edgerm_master import records as R  # noqa: E402
from edgerm_master.config import MasterConfig  # noqa: E402
from edgerm_master.election import Election  # noqa: E402
from edgerm_master.etcd_client import EtcdClient, op_put  # noqa: E402
from edgerm_master.etcd_store import EtcdStore  # noqa: E402
from edgerm_master.members import MemberInfo  # noqa: E402
from edgerm_master.service import MasterService  # noqa: E402
from edgerm_master.store_api import MasterStore, SqliteStore  # noqa: E402
from edgerm_master.testing import ScriptedAgent, ScriptedFramework  # noqa: E402
from edgerm_master.testing_etcd import EtcdCluster, take_lead  # noqa: E402
from edgerm_master.testing_io import end_process  # noqa: E402

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
                        operator_tokens=["o"], host="127.0.0.1", coap_port=0, ws_port=0,
                        heartbeat_ms=600_000, offer_timeout_s=3600.0, status_retry_s=3600.0,
                        command_resend_s=3600.0, allocation_interval_s=0.05,
                        refuse_default_s=0.001)


# --- the master process ----------------------------------------------------------------------

async def serve_master(args: argparse.Namespace) -> None:
    """Run a MasterService on the backend `args.backend`; print its addresses, then answer each
    line on stdin with the process's CPU seconds and the store's counters."""
    async with trio.open_nursery() as nursery:
        store: MasterStore
        if args.backend == "etcd":
            client = EtcdClient(args.endpoints.split(","))
            election = Election(client, "/bench/", 5, MemberInfo("bench", {}))
            await nursery.start(election.run)
            await election.campaign()
            store = EtcdStore(client, "/bench/")
            store.set_fence(election.fence)
        else:
            store = await SqliteStore.open(args.data_dir, "FULL")
        svc = MasterService(config(), store=store)
        coap, ws = await nursery.start(svc.run)
        print(json.dumps({"coap": list(coap), "ws": list(ws)}), flush=True)
        while await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True):
            print(json.dumps({"cpu": time.process_time(), "commits": svc.commits,
                              "transactions": getattr(store, "transactions", 0)}), flush=True)
        nursery.cancel_scope.cancel()


# --- the load generators ---------------------------------------------------------------------

async def run_agents(args: argparse.Namespace) -> None:
    """`args.agents` scripted agents: register, say "ready", then acknowledge launches and
    report updates until killed. Over WebSocket (`--agent-transport ws`) the master pushes
    each launch as it is durable, as to a real agent's WebSocket or CoAP Observe; over CoAP
    (`coap`) the agents poll with heartbeats (every 5 ms when idle), which adds heartbeats
    to the master's work per launch."""
    agents = [ScriptedAgent(f"{args.name}-{i}", resources=pb.Resources(cpus=8, mem_mb=65536))
              for i in range(args.agents)]
    registered = [0]
    all_registered = trio.Event()

    def count_registered() -> None:
        registered[0] += 1
        if registered[0] == len(agents):
            print("ready", flush=True)
            all_registered.set()

    async def over_ws(a: ScriptedAgent) -> None:
        async with open_websocket_url(f"ws://{args.ws}/agent") as ws:
            async def call(data: bytes) -> None:
                seq = decode(pb.AgentCall, data).seq
                await ws.send_message(data)
                while a.handle_reply(await receive(ws)).seq != seq:
                    pass  # a push (seq 0) came first: applied by handle_reply

            await call(a.next_call())
            count_registered()
            while True:
                if a.applied != a.acked_applied:
                    # Launches are acknowledged first (as the real agents' next call does),
                    # so the master does not repeat them in the replies to the updates.
                    await call(a.heartbeat_call())
                elif a.queue:
                    await call(a.next_call())
                else:
                    a.handle_reply(await receive(ws))  # wait for a push

    async def over_coap(a: ScriptedAgent) -> None:
        host, port = args.coap.rsplit(":", 1)
        remote = (host, int(port))

        async def call(data: bytes) -> pb.AgentReply:
            resp = await coap.post(remote, "a", data, content_format=CONTENT_FORMAT_CBOR,
                                   token_length=2)
            return a.handle_reply(resp.payload)

        await call(a.next_call())
        count_registered()
        while True:
            busy = bool(a.queue) or a.applied != a.acked_applied
            reply = await call(a.heartbeat_call() if a.applied != a.acked_applied
                               else a.next_call())
            if not busy and not reply.commands:
                await trio.sleep(0.005)

    async with open_coap_client() as coap, trio.open_nursery() as nursery:
        for a in agents:
            nursery.start_soon(over_ws if args.agent_transport == "ws" else over_coap, a)


async def receive(ws: WebSocketConnection) -> bytes:
    message = await ws.get_message()
    assert isinstance(message, bytes)
    return message


async def run_framework(args: argparse.Namespace) -> None:
    """One framework over WebSocket: accept offers with up to 20 tasks until `args.launches`
    were accepted, acknowledge every update; print "start" at the first accept and the
    elapsed seconds when the last task is RUNNING."""
    fw = ScriptedFramework()
    accepted = running = 0
    start = 0.0
    async with open_websocket_url(f"ws://{args.ws}/framework") as ws:
        await ws.send_message(fw.subscribe())
        while running < args.launches:
            ev = fw.handle_event(await receive(ws))
            kind = ev.WhichOneof("event")
            if kind == "offers":
                for offer in list(fw.offers.values()):
                    n = min(TASKS_PER_ACCEPT, args.launches - accepted)
                    if n <= 0:
                        break
                    if not start:
                        start = time.perf_counter()
                        print("start", flush=True)
                    await ws.send_message(fw.accept([offer.offer_id], [pb.TaskInfo(
                        task_id=f"t{accepted + k}", spec=pb.TaskSpec(
                            name="x", resources=pb.Resources(cpus=0.01, mem_mb=1),
                            docker=pb.DockerTask(image="busybox"))) for k in range(n)]))
                    accepted += n
            elif kind == "update":
                if ev.update.uuid:
                    await ws.send_message(fw.acknowledge(ev.update))
                if ev.update.state == pb.RUNNING:
                    running += 1
        print(json.dumps({"elapsed": time.perf_counter() - start}), flush=True)


# --- the conductor ---------------------------------------------------------------------------

def spawn(*role_args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, *role_args], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def expect(proc: subprocess.Popen[str], what: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"a load process exited (code {proc.wait()}) before {what}")
    return line


def service_run(args: argparse.Namespace, backend: str, endpoints: list[str]) -> dict[str, float]:
    """One service measurement: master, agent generators and framework as processes."""
    procs: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory(prefix="edgerm-bench-") as tmp:
        try:
            master = spawn("--role", "master", "--backend", backend, "--data-dir", tmp,
                           "--endpoints", ",".join(endpoints),
                           "--profile", args.profile and f"{args.profile}.{backend}")
            procs.append(master)
            ready = json.loads(expect(master, "the master was ready"))
            coap = "{}:{}".format(*ready["coap"])
            ws = "{}:{}".format(*ready["ws"])

            def stats() -> dict[str, float]:
                assert master.stdin is not None
                master.stdin.write("stats\n")
                master.stdin.flush()
                return dict(json.loads(expect(master, "its stats")))

            per = -(-args.agents // args.generators)
            for g in range(args.generators):
                n = min(per, args.agents - g * per)
                if n > 0:
                    procs.append(spawn("--role", "agents", "--coap", coap, "--ws", ws,
                                       "--agents", str(n), "--name", f"g{g}",
                                       "--agent-transport", args.agent_transport))
            for p in procs[1:]:
                expect(p, "its agents registered")
            fw = spawn("--role", "framework", "--ws", ws,
                       "--launches", str(args.launches))
            procs.append(fw)
            expect(fw, "the first accept")
            s0 = stats()
            elapsed = json.loads(expect(fw, "the last RUNNING"))["elapsed"]
            s1 = stats()
        finally:
            # The load first; then the master, which ends cleanly when its stdin closes (a
            # profile is written then).
            for p in reversed(procs[1:]):
                end_process(p, timeout=5.0)
            if procs and procs[0].stdin is not None:
                procs[0].stdin.close()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    procs[0].wait(10)
                end_process(procs[0], timeout=5.0)
    return {"elapsed": elapsed, "cpu": s1["cpu"] - s0["cpu"],
            "commits": s1["commits"] - s0["commits"],
            "transactions": s1["transactions"] - s0["transactions"]}


def emit_service(backend: str, args: argparse.Namespace, stats: dict[str, float]) -> None:
    goal = ">= 1000" if backend == "etcd" else ""
    emit(f"service_launches_per_s_{backend}", args.launches / stats["elapsed"],
         f"1/s (master in its own process, agents over {args.agent_transport}; "
         + ("3 members, fenced)" if backend == "etcd" else "synchronous=FULL)"), goal)
    emit(f"service_master_cpu_ms_per_launch_{backend}", 1000 * stats["cpu"] / args.launches,
         "ms (the master process: core, flusher, store, servers)")
    emit(f"service_master_capacity_{backend}", args.launches / stats["cpu"],
         "launches per CPU-second of the master", goal)
    emit(f"service_commits_{backend}", stats["commits"], "batches")
    if backend == "etcd":
        emit("service_etcd_transactions_per_batch",
             stats["transactions"] / max(1, stats["commits"]), "txns")


async def store_sqlite(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="edgerm-bench-") as tmp:
        store = await SqliteStore.open(tmp, "FULL")
        rate = await store_rate(store, args.launches, args.agents, args.batch)
        await store.aclose()
    emit("store_launches_per_s_sqlite", rate, f"1/s (batches of {args.batch}, FULL)")


async def store_etcd(cluster: EtcdCluster, args: argparse.Namespace) -> None:
    client = EtcdClient(cluster.client_urls)
    try:
        store = EtcdStore(client, "/bench-store/")
        store.set_fence(await take_lead(client, "/bench-store/"))
        rate = await store_rate(store, args.launches, args.agents, args.batch)
        emit("store_launches_per_s_etcd", rate, f"1/s (batches of {args.batch}, 3 members)",
             ">= 1000")
        emit("store_etcd_transactions_per_batch", store.transactions / max(1, store.commits),
             "txns")
        # The client's own CPU per request (HTTP, JSON; etcd's time is not in it).
        ops = [op_put(b"/bench-client/k%d" % i, b"v" * 100) for i in range(100)]
        for name, request in (("range", lambda: client.range(b"/bench-client/k1")),
                              ("txn100", lambda: client.txn([], ops))):
            await request()
            c0 = time.process_time()
            for _ in range(200):
                await request()
            emit(f"etcd_client_cpu_ms_per_{name}", (time.process_time() - c0) / 200 * 1000,
                 "ms (client process CPU; txn100: 100 puts)")
    finally:
        await client.aclose()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--launches", type=int, default=5000)
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--generators", type=int, default=2, help="agent load processes")
    p.add_argument("--batch", type=int, default=50, help="launches per batch (store mode)")
    p.add_argument("--backends", default="sqlite,etcd")
    p.add_argument("--agent-transport", choices=["ws", "coap"], default="ws",
                   help="ws: launches pushed to the agents; coap: agents poll")
    # The roles this file plays in its child processes.
    p.add_argument("--role", choices=["bench", "master", "agents", "framework"], default="bench")
    p.add_argument("--backend", default="sqlite")
    p.add_argument("--data-dir", default="")
    p.add_argument("--endpoints", default="")
    p.add_argument("--coap", default="")
    p.add_argument("--ws", default="")
    p.add_argument("--name", default="g")
    p.add_argument("--profile", default="", help="master: write a cProfile to this file")
    args = p.parse_args()
    if args.role == "master":
        if args.profile:
            cProfile.runctx("trio.run(serve_master, args)", globals(), locals(), args.profile)
        else:
            trio.run(serve_master, args)
        return
    if args.role == "agents":
        trio.run(run_agents, args)
        return
    if args.role == "framework":
        trio.run(run_framework, args)
        return
    backends = args.backends.split(",")
    with EtcdCluster() if "etcd" in backends else contextlib.nullcontext() as cluster:
        if "sqlite" in backends:
            trio.run(store_sqlite, args)
        if cluster is not None:
            trio.run(store_etcd, cluster, args)
        for backend in backends:
            emit_service(backend, args, service_run(
                args, backend, cluster.client_urls if cluster is not None else []))


if __name__ == "__main__":
    main()
