"""Agents behind a NAT: every connection is agent-initiated, so the Linux agent (over CoAP, and
over WebSocket) and the MicroPython agent in `edge` register with the master in `core`, run a
WASM and a MicroPython task and deliver their output — while nothing in `core` can open a
connection to the edge."""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from edgerm.framework import Constraints
from edgerm.wire import pb

from .edge import (
    EdgeProcess,
    Observer,
    linux_agent,
    micro_agent,
    micropython_spec,
    open_framework,
    wasm_spec,
)
from .netns import CORE_IP, EDGE_IP, EDGE_NET, ROUTER_CORE_IP, Topology, entered

TS = pb.TaskState
SAMPLER = (Path(__file__).resolve().parents[2] / "micro_agent" / "examples"
           / "sampler.py").read_bytes()
CANARY_PORT = 47000

# A listener in the edge that reports every TCP connection and UDP datagram it receives.
CANARY = r"""
import select, socket, sys
port = int(sys.argv[1])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", port))
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port))
t.listen()
print("ready", flush=True)
while True:
    for s in select.select([u, t], [], [])[0]:
        if s is u:
            data, addr = u.recvfrom(512)
            print("udp", addr[0], data.decode(errors="replace"), flush=True)
        else:
            c, addr = t.accept()
            print("tcp", addr[0], flush=True)
            c.close()
"""


def _ports(topo: Topology, pid: int, proto: str) -> list[int]:
    """Local ports of process `pid` in the edge (`proto`: "-u" or "-t")."""
    out = topo.sh(topo.edge, "ss", "-H", proto, "-a", "-n", "-p").stdout
    return sorted({int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines()
                   if f"pid={pid}," in line})


def _tcp_peers(topo: Topology, ns: str, local_port: int) -> set[str]:
    """Remote addresses of established TCP connections to `local_port` in `ns`."""
    out = topo.sh(ns, "ss", "-H", "-t", "-n", "state", "established").stdout
    peers = set()
    for line in out.splitlines():
        cols = line.split()
        local, peer = cols[2], cols[3]
        if local.endswith(f":{local_port}"):
            peers.add(peer.rsplit(":", 1)[0])
    return peers


def _probe(ns: str, udp_targets: list[tuple[str, int]], tcp_targets: list[tuple[str, int]]
           ) -> dict[str, str]:
    """From namespace `ns`: one UDP datagram to each UDP target and a TCP connect (2 s) to each
    TCP target. Returns what happened to each: "sent", "connected", "timeout" or the errno
    name."""
    results: dict[str, str] = {}
    with entered(ns):
        for host, port in udp_targets:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.sendto(b"probe from " + ns.encode(), (host, port))
                    results[f"udp {host}:{port}"] = "sent"
                except OSError as e:
                    results[f"udp {host}:{port}"] = errno.errorcode.get(e.errno or 0, str(e))
        for host, port in tcp_targets:
            with socket.socket() as t:
                t.settimeout(2.0)
                try:
                    t.connect((host, port))
                    results[f"tcp {host}:{port}"] = "connected"
                except TimeoutError:
                    results[f"tcp {host}:{port}"] = "timeout"
                except OSError as e:
                    results[f"tcp {host}:{port}"] = errno.errorcode.get(e.errno or 0, str(e))
    return results


async def _wait_log(proc: EdgeProcess, pred: Callable[[str], bool], timeout: float) -> str:
    with trio.move_on_after(timeout):
        while not pred(proc.log()):
            await trio.sleep(0.05)
        return proc.log()
    raise AssertionError(f"{proc.name}: waited {timeout} s; output:\n{proc.log()}")


@pytest.mark.parametrize("transport", ["coap", "ws"])
async def test_agents_behind_nat_work_and_cannot_be_dialled(
        transport: str, core_sockets: Topology, masters, edge_processes: list[EdgeProcess],  # type: ignore[no-untyped-def]
        wasm_modules: dict[str, bytes], mpy_build: Path, tmp_path: Path) -> None:
    net = core_sockets
    master = await masters(300)
    host, coap_port = master.coap
    ws_port = master.ws[1]
    url = f"coap://{host}:{coap_port}" if transport == "coap" else f"ws://{host}:{ws_port}/agent"
    linux = linux_agent(net, tmp_path / "linux", url, "linux-edge").start()
    edge_processes.append(linux)
    # 128 KB: the MicroPython task goes as source here and the compiler needs heap (with 64 KB
    # the second source task sometimes ends FAILED MEMORY_LIMIT; the other tests send .mpy).
    micro = micro_agent(net, tmp_path / "micro", mpy_build, master.coap, "micro-edge",
                        heap="128k").start()
    edge_processes.append(micro)

    async with open_framework(master) as f:
        await _run_both(f, "1", wasm_modules["hello"], ["through", "the", "nat"])

        # The master only ever saw the router's outer address (besides the framework's own
        # connection from inside core).
        assert net.masqueraded() >= 2, "the agents' traffic did not go through the NAT"
        if transport == "ws":
            assert _tcp_peers(net, net.core, ws_port) == {ROUTER_CORE_IP, CORE_IP}

        # Nothing in core can reach the edge: there is no route ...
        canary = EdgeProcess(net, "canary", [sys.executable, "-c", CANARY, str(CANARY_PORT)],
                             tmp_path / "canary.log").start()
        edge_processes.append(canary)
        await _wait_log(canary, lambda out: "ready" in out, 10)
        agent_udp = _ports(net, linux.pid, "-u") + _ports(net, micro.pid, "-u")
        agent_tcp = _ports(net, linux.pid, "-t")
        assert len(agent_udp) >= (2 if transport == "coap" else 1), agent_udp
        udp_targets = [(EDGE_IP, p) for p in [*agent_udp, CANARY_PORT]]
        tcp_targets = [(EDGE_IP, p) for p in [*agent_tcp, CANARY_PORT]]
        results = await trio.to_thread.run_sync(_probe, net.core, udp_targets, tcp_targets)
        assert set(results.values()) == {"ENETUNREACH"}, results

        # ... and even a packet handed to the router for the edge's private range (a neighbour
        # on the outer network trying its luck) is dropped: the NAT forwards only what the edge
        # began.
        net.sh(net.core, "ip", "route", "add", EDGE_NET, "via", ROUTER_CORE_IP)
        try:
            results = await trio.to_thread.run_sync(_probe, net.core, udp_targets,
                                                    [(EDGE_IP, CANARY_PORT)])
        finally:
            net.sh(net.core, "ip", "route", "del", EDGE_NET, "via", ROUTER_CORE_IP)
        assert results[f"tcp {EDGE_IP}:{CANARY_PORT}"] == "timeout", results
        # The positive control: from the router (inside the NAT) the canary is reachable, so
        # its silence towards core is the NAT's doing.
        control = await trio.to_thread.run_sync(_probe, net.router, [(EDGE_IP, CANARY_PORT)],
                                                [(EDGE_IP, CANARY_PORT)])
        assert set(control.values()) == {"sent", "connected"}, control
        out = await _wait_log(canary, lambda o: "udp " in o and "tcp " in o, 10)
        heard = [line for line in out.splitlines() if line.startswith(("udp", "tcp"))]
        assert heard and all(line.split()[1] == "10.78.0.1" for line in heard), heard

        # Meanwhile the agents' own traffic still flows: a second round of tasks.
        await _run_both(f, "2", wasm_modules["hello"], ["still", "flowing"])
    assert linux.alive() and micro.alive()


async def _run_both(f: Observer, n: str, hello_wasm: bytes, words: list[str]) -> None:
    """A WASM task on the Linux agent and a MicroPython task on the MicroPython agent, both
    FINISHED with their output delivered."""
    linux_offer = await f.offer("linux-edge", 30, Constraints(cpus=0.1, mem_mb=4))
    micro_offer = await f.offer("micro-edge", 30, Constraints(cpus=0.1, devices=["temp"]))
    hello = await f.fw.upload(hello_wasm)
    sampler = await f.fw.upload(SAMPLER, pb.MICROPYTHON_SOURCE)
    wasm_task, mp_task = f"wasm-{n}", f"mp-{n}"
    await f.fw.launch(linux_offer, wasm_task, wasm_spec(hello, *words))
    await f.fw.launch(micro_offer, mp_task, micropython_spec(sampler, "3", devices=["temp"]))
    await f.wait_terminal([wasm_task, mp_task], 60)
    for task in (wasm_task, mp_task):
        assert f.states(task) == [TS.STARTING, TS.RUNNING, TS.FINISHED], \
            (task, f.state_names(task), f.last(task))
    readings = [b"20.5", b"21.0", b"21.5"]
    await f.wait_for(lambda: f.data(wasm_task) == [w.encode() for w in words] and
                     sorted(f.data(mp_task)) == readings, 20,
                     lambda: f"outputs; have {f.data(wasm_task)} {f.data(mp_task)}")
    assert f.seqs(mp_task) == [1, 2, 3]
