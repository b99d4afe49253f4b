"""Heartbeats per second the master sustains over real CoAP on loopback, with round-trip
percentiles. The master runs as its own process (`python -m edgerm_master`); the load
generator is a second process speaking raw CoAP over UDP (a hand-rolled encoder, so it costs
the master's side as little as possible): it registers `--agents` agents, then keeps
`--window` signed heartbeats (CON POST `a`, 2-byte token, Content-Format 60) in flight for
`--seconds`, each agent with at most one outstanding call.

    python bench/master_heartbeats.py [--agents 2000] [--window 64] [--seconds 10] [--rounds 3]
                                      [--scrape-s 1]

The Prometheus metrics' cost on this path is measured in the same run: `--rounds` pairs of runs,
one master with metrics on and one with `--no-metrics`, alternating which goes first; the
figures are medians, and `metrics_cost_heartbeat_path` is the heartbeat rate lost with metrics
on (goal < 5 %). The master with metrics on is scraped (`GET /metrics`) every `--scrape-s`
meanwhile, as Prometheus would (every 15 s by default; here more often, to be on the safe side).

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
import threading
import time
import urllib.request
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


def run_once(args: argparse.Namespace, metrics: bool) -> dict[str, Any]:
    """One master (metrics on or off) and one load generator run against it."""
    with tempfile.TemporaryDirectory() as d:
        extra = ["--log-level", "warning"] + ([] if metrics else ["--no-metrics"])
        master = MasterProcess(d, heartbeat_ms=600_000, extra=extra)
        master.start()
        done = threading.Event()
        scrapes: list[float] = []
        scraper = threading.Thread(target=scrape_loop, args=(master, args.scrape_s, done,
                                                             scrapes), daemon=True)
        if metrics and args.scrape_s > 0 and master.http is not None:
            scraper.start()
        try:
            out = subprocess.run(
                [sys.executable, __file__, "--loadgen", master.coap[0], str(master.coap[1]),
                 "--agents", str(args.agents), "--window", str(args.window),
                 "--seconds", str(args.seconds)],
                check=True, capture_output=True, text=True)
        finally:
            done.set()
            if scraper.is_alive():
                scraper.join()
            master.stop()
    r: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    r["rate"] = r["ok"] / r["elapsed"]
    r["scrapes"] = scrapes
    return r


def scrape_loop(master: MasterProcess, period: float, done: threading.Event,
                times: list[float]) -> None:
    """GET /metrics every `period` s, as Prometheus would (its cost lands on the master's
    event loop, between heartbeats)."""
    assert master.http is not None
    url = f"http://{master.http[0]}:{master.http[1]}/metrics"
    while not done.wait(period):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=10) as resp:
            resp.read()
        times.append(time.perf_counter() - start)


def inline_cost(n: int = 2_000, blocks: int = 30) -> tuple[float, float, float]:
    """µs per steady heartbeat in the master's inline CoAP handler (the fast path: parse,
    verify, apply, reply), metrics on and off, in this process: the same kind of signed
    heartbeats fed to two services alternately, `blocks` blocks of `n` each; the fastest block
    of each side counts (the least disturbed by a shared machine). No sockets: this isolates
    what the metrics add. Third: µs of the metrics' hooks alone (the clock read twice, one
    histogram observation, two per-transport increments), timed the same way."""
    from edgerm.coap.codes import Code
    from edgerm.coap.events import RequestReceived
    from edgerm.transport.coap import Request
    from edgerm_master.config import MasterConfig
    from edgerm_master.metrics import ShellMetrics
    from edgerm_master.service import MasterService

    def service(metrics: bool) -> tuple[MasterService, list[list[Request]]]:
        cfg = MasterConfig(agent_tokens=["agent-token"], heartbeat_ms=600_000, metrics=metrics)
        svc = MasterService(cfg)
        nonce = b"inline-1"
        reg = pb.AgentCall(seq=1, register=pb.Register(
            name="inline", protocol_version=1, nonce=nonce,
            resources=pb.Resources(cpus=1, mem_mb=64)))
        res = svc.core.agent_call(sign(reg, token_key("agent-token")), time.time(), "coap")
        svc.core.take_records()
        svc._durable = svc.core.records_emitted
        reply = decode(pb.AgentReply, res.data)
        aid = reply.registered.agent_id
        secret = derive_secret("agent-token", nonce, reply.registered.nonce)
        seq = 1
        out = []
        for _ in range(blocks):
            block = []
            for _ in range(n):
                seq += 1
                data = sign(pb.AgentCall(agent_id=aid, seq=seq, heartbeat=pb.Heartbeat()),
                            secret)
                block.append(Request(RequestReceived(
                    0, ("127.0.0.1", 5683), Code.POST, ("a",), (), data, 60, None, None, True,
                    []), None))
            out.append(block)
        return svc, out

    timings: dict[bool, list[float]] = {True: [], False: []}
    svcs = {m: service(m) for m in (True, False)}
    for b in range(blocks):
        for metrics in ((True, False) if b % 2 == 0 else (False, True)):
            svc, reqs = svcs[metrics]
            handler = svc._coap_agent_inline
            block = reqs[b]
            start = time.perf_counter()
            for req in block:
                if handler(req) is None:
                    raise RuntimeError("a steady heartbeat left the inline path")
            timings[metrics].append((time.perf_counter() - start) / n * 1e6)

    shell = ShellMetrics()
    hist = shell.call_latency["coap"]
    calls = svcs[True][0].core.state.calls
    heartbeats = svcs[True][0].core.state.heartbeats
    clock = time.perf_counter
    hooks = []
    for _ in range(blocks):
        start = clock()
        for _ in range(n):
            t0 = clock()
            calls["coap"] += 1
            heartbeats["coap"] += 1
            hist.observe(clock() - t0)
        hooks.append((clock() - start) / n * 1e6)
    return min(timings[True]), min(timings[False]), min(hooks)


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--agents", type=int, default=2000)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds of one run with metrics on and one with them off, alternating "
                   "which goes first (0: metrics on only, one run)")
    p.add_argument("--scrape-s", type=float, default=1.0,
                   help="scrape /metrics this often during the runs with metrics on (0: never)")
    p.add_argument("--loadgen", nargs=2, metavar=("HOST", "PORT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.loadgen:
        loadgen(args.loadgen[0], int(args.loadgen[1]), args.agents, args.window, args.seconds)
        return
    # The cost of the metrics on the heartbeat path (edgerm_master/metrics.py: the per-transport
    # counters and the call-latency histogram): the same load against a master with metrics
    # on and one started with --no-metrics, alternating, so that the shared machine's drift
    # falls on both alike; medians compared.
    runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    if args.rounds <= 0:
        runs[True].append(run_once(args, True))
    for i in range(args.rounds):
        for metrics in ((True, False) if i % 2 == 0 else (False, True)):
            runs[metrics].append(run_once(args, metrics))
    on = runs[True]
    rate_on = median([r["rate"] for r in on])
    emit("heartbeats_per_s_coap", rate_on, "1/s", ">= 5000")
    emit("heartbeat_rtt_p50_coap", median([r["p50"] for r in on]), "ms")
    emit("heartbeat_rtt_p99_coap", median([r["p99"] for r in on]), "ms", "<= 50")
    emit("heartbeat_errors", sum(r["errors"] + r["timeouts"] for r in on), "count", "0")
    off = runs[False]
    if off:
        rate_off = median([r["rate"] for r in off])
        emit("heartbeats_per_s_coap_metrics_off", rate_off, "1/s")
        emit("heartbeat_rtt_p50_coap_metrics_off", median([r["p50"] for r in off]), "ms")
        emit("metrics_cost_heartbeat_path", (rate_off - rate_on) / rate_off * 100, "%", "< 5")
        scrapes = sorted(t for r in on for t in r["scrapes"])
        if scrapes:
            emit("metrics_scrape_http_ms", scrapes[len(scrapes) // 2] * 1000, "ms")
        print(json.dumps({"runs_per_s_metrics_on": [round(r["rate"]) for r in on],
                          "runs_per_s_metrics_off": [round(r["rate"]) for r in off]}),
              file=sys.stderr, flush=True)
        us_on, us_off, us_hooks = inline_cost()
        emit("inline_heartbeat_us", us_on, "µs")
        emit("inline_heartbeat_us_metrics_off", us_off, "µs")
        emit("metrics_cost_inline_heartbeat", (us_on - us_off) / us_off * 100, "%", "< 5")
        emit("metrics_hooks_us", us_hooks, "µs")
        emit("metrics_hooks_share_of_inline_heartbeat", us_hooks / us_off * 100, "%", "< 5")


if __name__ == "__main__":
    main()
