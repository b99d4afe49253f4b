"""Heartbeats per second the master sustains over real CoAP on loopback, with round-trip
percentiles. The master runs as its own process (`python -m edgerm_master`); the load
generator is a second process speaking raw CoAP over UDP (a hand-rolled encoder, so it costs
the master's side as little as possible): it registers `--agents` agents, then keeps
`--window` signed heartbeats (CON POST `a`, 2-byte token, Content-Format 60) in flight for
`--seconds`, each agent with at most one outstanding call.

    python bench/master_heartbeats.py [--agents 2000] [--window 64] [--seconds 10]
        [--backends sqlite,etcd]

With `--backends sqlite,etcd` the same run is repeated with the master leading on a real
three-member etcd cluster (metrics suffixed `_etcd`).

Prints JSON lines {"metric", "value", "unit", "goal"}.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from edgerm.wire import decode, derive_secret, pb, sign, token_key  # noqa: E402
from edgerm_master.testing_io import MasterProcess  # noqa: E402


def emit(metric: str, value: float, unit: str, goal: str = "") -> None:
    print(json.dumps({"metric": metric, "value": round(value, 3), "unit": unit, "goal": goal}),
          flush=True)


# Requests sent from one source port before the next one is used (< 65,536 message ids).
_IDS_PER_PORT = 60_000


def coap_post(mid: int, token: bytes, payload: bytes) -> bytes:
    # CON POST, TKL 2 | Uri-Path "a" (option 11) | Content-Format 60 (option 12) | payload
    return (bytes((0x42, 0x02)) + mid.to_bytes(2, "big") + token + b"\xb1a\x11\x3c\xff"
            + payload)


def coap_parse(data: bytes) -> tuple[int, bytes, bytes]:
    """(code, token, payload) of a piggybacked response."""
    tkl = data[0] & 0x0F
    code = data[1]
    token = data[4:4 + tkl]
    i = 4 + tkl
    while i < len(data) and data[i] != 0xFF:
        b = data[i]
        i += 1
        delta, length = b >> 4, b & 0x0F
        for v in (delta, length):
            if v == 13:
                i += 1
            elif v == 14:
                i += 2
        if length == 13:
            length = data[i - 1] + 13
        elif length == 14:
            length = int.from_bytes(data[i - 2:i], "big") + 269
        i += length
    return code, token, data[i + 1:] if i < len(data) else b""


def loadgen(host: str, port: int, n_agents: int, window: int, seconds: float) -> None:
    def open_socket() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.connect((host, port))
        return s

    # A CoAP client must not reuse a message id towards one server within EXCHANGE_LIFETIME
    # (247 s): the server would answer it from its dedup cache without processing it. So a
    # new source port is taken every _IDS_PER_PORT requests and (port, id) never repeats.
    sock = open_socket()
    socks = [sock]
    mid = 0
    tok = 0
    sent_on_port = 0

    def rpc(payload: bytes) -> bytes:
        nonlocal mid, tok, sent_on_port
        for _ in range(5):
            sent_on_port += 1
            mid = (mid + 1) & 0xFFFF
            tok = (tok + 1) & 0xFFFF
            token = tok.to_bytes(2, "big")
            sock.send(coap_post(mid, token, payload))
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                r, _, _ = select.select([sock], [], [], 0.5)
                if r:
                    code, t, body = coap_parse(sock.recv(65535))
                    if t == token:
                        return body
        raise RuntimeError("no answer")

    agents: list[list[Any]] = []  # [agent_id, secret, seq]
    for i in range(n_agents):
        nonce = i.to_bytes(8, "big")
        reg = pb.AgentCall(seq=1, register=pb.Register(
            name=f"bench-{i}", protocol_version=1, nonce=nonce,
            resources=pb.Resources(cpus=1, mem_mb=64)))
        reply = decode(pb.AgentReply, rpc(sign(reg, token_key("agent-token"))))
        agents.append([reply.registered.agent_id,
                       derive_secret("agent-token", nonce, reply.registered.nonce), 1])
    sock.setblocking(False)
    inflight: dict[bytes, tuple[int, float]] = {}  # token -> (agent index, sent)
    idle = list(range(len(agents)))
    rtts: list[float] = []
    errors = 0
    timeouts = 0
    clock = time.perf_counter

    def send_one() -> None:
        nonlocal mid, tok, sock, sent_on_port
        if sent_on_port >= _IDS_PER_PORT:
            sock = open_socket()
            sock.setblocking(False)
            socks.append(sock)
            sent_on_port = 0
        sent_on_port += 1
        idx = idle.pop()
        ag = agents[idx]
        ag[2] += 1
        data = sign(pb.AgentCall(agent_id=ag[0], seq=ag[2], heartbeat=pb.Heartbeat()), ag[1])
        mid = (mid + 1) & 0xFFFF
        tok = (tok + 1) & 0xFFFF
        token = tok.to_bytes(2, "big")
        inflight[token] = (idx, clock())
        try:
            sock.send(coap_post(mid, token, data))
        except BlockingIOError:
            pass

    start = clock()
    end = start + seconds
    while len(inflight) < window and idle:
        send_one()
    while True:
        now = clock()
        if now >= end:
            break
        readable, _, _ = select.select(socks, [], [], 0.05)
        for r in readable:
            while True:
                try:
                    data = r.recv(65535)
                except BlockingIOError:
                    break
                code, token, _ = coap_parse(data)
                entry = inflight.pop(token, None)
                if entry is None:
                    continue
                idx, sent = entry
                rtts.append(clock() - sent)
                if code != 0x44:
                    errors += 1
                idle.append(idx)
        now = clock()
        for token, (idx, sent) in list(inflight.items()):
            if now - sent > 2.0:  # lost: count it and move on
                del inflight[token]
                timeouts += 1
                idle.append(idx)
        while len(inflight) < window and idle and clock() < end:
            send_one()
    elapsed = clock() - start
    rtts.sort()

    def pct(p: float) -> float:
        return rtts[min(len(rtts) - 1, int(p * len(rtts)))] * 1000 if rtts else float("nan")

    print(json.dumps({"ok": len(rtts) - errors, "errors": errors, "timeouts": timeouts,
                      "elapsed": elapsed, "p50": pct(0.50), "p99": pct(0.99),
                      "agents": n_agents, "window": window}), flush=True)


def run_loadgen(master: MasterProcess, args: argparse.Namespace) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--loadgen", master.coap[0], str(master.coap[1]),
         "--agents", str(args.agents), "--window", str(args.window),
         "--seconds", str(args.seconds)],
        check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def with_sqlite(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        master = MasterProcess(d, heartbeat_ms=600_000, extra=["--log-level", "warning"])
        master.start()
        try:
            return run_loadgen(master, args)
        finally:
            master.stop()


def with_etcd(args: argparse.Namespace) -> dict[str, Any]:
    """The same master as the leader of one on a three-member etcd cluster (issue 12): steady
    heartbeats write nothing, so the figure should not move."""
    import trio

    from edgerm_master.testing_etcd import EtcdCluster, unique_prefix
    from edgerm_master.testing_ha import MasterSet

    with EtcdCluster() as etcd, tempfile.TemporaryDirectory() as d:
        ms = MasterSet(d, etcd.client_urls, unique_prefix("hb"), n=1,
                       extra=["--log-level", "warning", "--heartbeat-ms", "600000"])
        ms.start()
        try:
            trio.run(ms.leader)
            return run_loadgen(ms.masters[0], args)
        finally:
            ms.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--agents", type=int, default=2000)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--backends", default="sqlite",
                   help="comma list of store backends to run side by side: sqlite, etcd")
    p.add_argument("--loadgen", nargs=2, metavar=("HOST", "PORT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.loadgen:
        loadgen(args.loadgen[0], int(args.loadgen[1]), args.agents, args.window, args.seconds)
        return
    for backend in args.backends.split(","):
        r = with_etcd(args) if backend == "etcd" else with_sqlite(args)
        sfx = "" if backend == "sqlite" else f"_{backend}"
        emit(f"heartbeats_per_s_coap{sfx}", r["ok"] / r["elapsed"], "1/s", ">= 5000")
        emit(f"heartbeat_rtt_p50_coap{sfx}", r["p50"], "ms")
        emit(f"heartbeat_rtt_p99_coap{sfx}", r["p99"], "ms", "<= 50")
        emit(f"heartbeat_errors{sfx}", r["errors"] + r["timeouts"], "count", "0")


if __name__ == "__main__":
    main()
