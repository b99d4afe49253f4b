"""Heartbeats per second the master sustains over real CoAP on loopback, with round-trip
percentiles, and what its Prometheus metrics cost on that path. Two masters run as their own
processes (`python -m edgerm_master`), one with metrics on and one with `--no-metrics`; the load
generator is a third process speaking raw CoAP over UDP (a hand-rolled encoder, so it costs the
masters' side as little as possible): it registers `--agents` agents on each (plain, signed:
the first registration), then takes turns, `--slice` seconds each, keeping `--window`
OSCORE-protected steady heartbeats (CON POST, 2-byte token, OSCORE option, the inner POST `a`
encrypted: issue 16) in flight on one master, each agent with at most one outstanding call,
until each master had `--seconds`. Alternating second by second, the shared machine's ups and
downs fall on both alike; `metrics_cost_heartbeat_path` is the rate lost with metrics on
(goal < 5 %). `--scrape-s S` also scrapes the metrics-on master's /metrics every S seconds.

The same comparison in this process without sockets (`inline_cost`): the inline heartbeat
handler with metrics on and off, and the metrics' hooks timed alone; and side by side what a
steady heartbeat costs the master's handler signed with the MAC (the check the WebSocket path
still makes: `agent_call` of a mac-signed heartbeat) and under OSCORE (unprotect, the inline
handler, protect the reply: what CoAP now costs).

With `--etcd` a third master, leading on a real three-member etcd cluster (issue 12), joins the
same alternating load (metrics suffixed `_etcd`): steady heartbeats write nothing, so its figure
should match the SQLite master's.

    python bench/master_heartbeats.py [--agents 2000] [--window 64] [--seconds 10] [--slice 1]
                                      [--scrape-s 0] [--etcd]

Prints JSON lines {"metric", "value", "unit", "goal"}.
"""

from __future__ import annotations

import argparse
import contextlib
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

from edgerm.coap.codes import Code  # noqa: E402
from edgerm.oscore import agent_context, encode_plaintext, seal_request  # noqa: E402
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


# The plaintext of every steady heartbeat: inner POST, Uri-Path "a" (no Content-Format: the
# resource implies CBOR), AgentCall{heartbeat{}} (no agent_id, seq or mac: OSCORE's kid,
# Partial IV and tag).
HEARTBEAT_PLAINTEXT = encode_plaintext(Code.POST, [(11, b"a")], b"\xa1\x05\xa0")


def coap_protected(mid: int, token: bytes, option: bytes, ciphertext: bytes) -> bytes:
    # CON POST, TKL 2 | OSCORE (option 9, < 13 bytes) | payload: the ciphertext
    return (bytes((0x42, 0x02)) + mid.to_bytes(2, "big") + token
            + bytes((0x90 | len(option),)) + option + b"\xff" + ciphertext)


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


class Target:
    """The load on one master: its agents, sockets, calls in flight and what came back."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sock = self._open()
        self.socks = [self.sock]
        self.mid = 0
        self.tok = 0
        self.sent_on_port = 0
        self.agents: list[list[Any]] = []  # [agent_id, OSCORE context, seq]
        self.inflight: dict[bytes, tuple[int, float]] = {}  # token -> (agent index, sent)
        self.idle: list[int] = []
        self.rtts: list[float] = []
        self.ok = 0
        self.errors = 0
        self.timeouts = 0
        self.active = 0.0  # seconds this target was under load

    def _open(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.connect((self.host, self.port))
        return s

    def _next(self) -> bytes:
        # A CoAP client must not reuse a message id towards one server within
        # EXCHANGE_LIFETIME (247 s): the server would answer it from its dedup cache without
        # processing it. So a new source port is taken every _IDS_PER_PORT requests.
        if self.sent_on_port >= _IDS_PER_PORT:
            self.sock = self._open()
            self.sock.setblocking(False)
            self.socks.append(self.sock)
            self.sent_on_port = 0
        self.sent_on_port += 1
        self.mid = (self.mid + 1) & 0xFFFF
        self.tok = (self.tok + 1) & 0xFFFF
        return self.tok.to_bytes(2, "big")

    def register(self, n_agents: int) -> None:
        for i in range(n_agents):
            nonce = i.to_bytes(8, "big")
            reg = pb.AgentCall(seq=1, register=pb.Register(
                name=f"bench-{i}", protocol_version=1, nonce=nonce,
                resources=pb.Resources(cpus=1, mem_mb=64)))
            reply = decode(pb.AgentReply, self._rpc(sign(reg, token_key("agent-token"))))
            aid = reply.registered.agent_id
            secret = derive_secret("agent-token", nonce, reply.registered.nonce)
            self.agents.append([aid, agent_context(secret, aid), 1])
        self.sock.setblocking(False)
        self.idle = list(range(len(self.agents)))

    def _rpc(self, payload: bytes) -> bytes:
        for _ in range(5):
            token = self._next()
            self.sock.send(coap_post(self.mid, token, payload))
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                r, _, _ = select.select([self.sock], [], [], 0.5)
                if r:
                    _, t, body = coap_parse(self.sock.recv(65535))
                    if t == token:
                        return body
        raise RuntimeError("no answer")

    def send_one(self) -> None:
        idx = self.idle.pop()
        ag = self.agents[idx]
        ag[2] += 1
        option, ciphertext = seal_request(ag[1], ag[2], HEARTBEAT_PLAINTEXT)
        token = self._next()
        self.inflight[token] = (idx, time.perf_counter())
        try:
            self.sock.send(coap_protected(self.mid, token, option, ciphertext))
        except BlockingIOError:
            pass

    def receive(self, readable: list[socket.socket]) -> None:
        clock = time.perf_counter
        for r in readable:
            while True:
                try:
                    data = r.recv(65535)
                except BlockingIOError:
                    break
                code, token, _ = coap_parse(data)
                entry = self.inflight.pop(token, None)
                if entry is None:
                    continue
                idx, sent = entry
                self.rtts.append(clock() - sent)
                if code != 0x44:   # (a refusal is a plain 4.01: outer code)
                    self.errors += 1
                else:
                    self.ok += 1
                self.idle.append(idx)
        now = clock()
        for token, (idx, sent) in list(self.inflight.items()):
            if now - sent > 2.0:  # lost: count it and move on
                del self.inflight[token]
                self.timeouts += 1
                self.idle.append(idx)

    def run_slice(self, window: int, seconds: float) -> None:
        """Keep `window` heartbeats in flight for `seconds`, then let the last ones come back
        (that time counts as this target's too)."""
        clock = time.perf_counter
        start = clock()
        end = start + seconds
        while True:
            while len(self.inflight) < window and self.idle and clock() < end:
                self.send_one()
            if clock() >= end and not self.inflight:
                break
            if clock() >= end + 2.5:
                break
            readable, _, _ = select.select(self.socks, [], [], 0.05)
            self.receive(readable)
        self.active += clock() - start

    def result(self) -> dict[str, Any]:
        rtts = sorted(self.rtts)

        def pct(p: float) -> float:
            return rtts[min(len(rtts) - 1, int(p * len(rtts)))] * 1000 if rtts else float("nan")

        return {"ok": self.ok, "errors": self.errors, "timeouts": self.timeouts,
                "elapsed": self.active, "p50": pct(0.50), "p99": pct(0.99)}


def loadgen(targets: list[tuple[str, int]], n_agents: int, window: int, seconds: float,
            slice_s: float) -> None:
    """Register `n_agents` on each target, then load them in turn, `slice_s` each, until each
    had `seconds`: the machine's ups and downs fall on every target alike."""
    loads = [Target(host, port) for host, port in targets]
    for load in loads:
        load.register(n_agents)
    cycle = 0
    while any(load.active < seconds for load in loads):
        # Which goes first alternates too, so neither always follows the other's drain.
        for load in (loads if cycle % 2 == 0 else loads[::-1]):
            if load.active < seconds:
                load.run_slice(window, min(slice_s, seconds - load.active))
        cycle += 1
    print(json.dumps([load.result() for load in loads]), flush=True)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Two masters at once, metrics on and off (`--no-metrics`), and with `--etcd` a third
    leading on a real etcd cluster; one load generator taking turns between them; the results
    in that order."""
    with contextlib.ExitStack() as stack:
        d = stack.enter_context(tempfile.TemporaryDirectory())
        masters = [MasterProcess(os.path.join(d, name), heartbeat_ms=600_000,
                                 extra=["--log-level", "warning", *extra])
                   for name, extra in (("on", []),
                                       ("off", [] if args.a_a else ["--no-metrics"]))]
        done = threading.Event()
        scrapes: list[float] = []
        scraper = threading.Thread(target=scrape_loop, args=(masters[0], args.scrape_s, done,
                                                             scrapes), daemon=True)
        try:
            for master in masters:
                master.start()
            if args.etcd:
                masters.append(etcd_master(stack, os.path.join(d, "etcd")))
            if args.scrape_s > 0 and masters[0].http is not None:
                scraper.start()
            targets = [f"{m.coap[0]}:{m.coap[1]}" for m in masters]
            out = subprocess.run(
                [sys.executable, __file__, "--loadgen", *targets,
                 "--agents", str(args.agents), "--window", str(args.window),
                 "--seconds", str(args.seconds), "--slice", str(args.slice)],
                check=True, capture_output=True, text=True)
        finally:
            done.set()
            if scraper.is_alive():
                scraper.join()
            for master in masters[:2]:
                master.stop()
    results: list[dict[str, Any]] = json.loads(out.stdout.strip().splitlines()[-1])
    for r in results:
        r["rate"] = r["ok"] / r["elapsed"]
    results[0]["scrapes"] = scrapes
    return results


def etcd_master(stack: contextlib.ExitStack, data_dir: str) -> MasterProcess:
    """A master leading on a real three-member etcd cluster (issue 12), closed with `stack`."""
    import trio

    from edgerm_master.testing_etcd import EtcdCluster, unique_prefix
    from edgerm_master.testing_ha import MasterSet

    etcd = stack.enter_context(EtcdCluster())
    os.makedirs(data_dir)
    ms = MasterSet(data_dir, etcd.client_urls, unique_prefix("hb"), n=1,
                   extra=["--log-level", "warning", "--heartbeat-ms", "600000"])
    stack.callback(ms.close)
    ms.start()
    trio.run(ms.leader)
    return ms.masters[0]


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


def inline_cost(n: int = 2_000, blocks: int = 30) -> dict[str, float]:
    """µs per steady heartbeat in the master's handler, in this process without sockets:
    `oscore` / `oscore_metrics_off` the CoAP path (the OSCORE hook unprotects, the inline
    handler applies, the reply is protected), metrics on and off; `mac` the same heartbeat
    signed with the MAC as the WebSocket path checks it (`agent_call`: parse, MAC, apply,
    signed reply); `hooks` the metrics' hooks alone (the clock read twice, one histogram
    observation, one per-transport increment). Blocks of `n` alternate between the sides;
    the fastest block of each counts (the least disturbed by a shared machine)."""
    from edgerm.coap.events import RequestReceived
    from edgerm.transport.coap import Request
    from edgerm_master.config import MasterConfig
    from edgerm_master.metrics import ShellMetrics
    from edgerm_master.service import MasterService
    from edgerm_master.service_oscore import oscore_request

    def service(metrics: bool) -> tuple[MasterService, int, bytes]:
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
        return svc, aid, derive_secret("agent-token", nonce, reply.registered.nonce)

    def protected_blocks(aid: int, secret: bytes) -> list[list[Request]]:
        ctx = agent_context(secret, aid)
        seq = 1
        out = []
        for _ in range(blocks):
            block = []
            for _ in range(n):
                seq += 1
                option, ct = seal_request(ctx, seq, HEARTBEAT_PLAINTEXT)
                block.append(Request(RequestReceived(
                    0, ("127.0.0.1", 5683), Code.POST, (), (), ct, None, None, None, True,
                    [(9, option)]), None))
            out.append(block)
        return out

    def mac_blocks(aid: int, secret: bytes) -> list[list[bytes]]:
        seq = 1
        out = []
        for _ in range(blocks):
            block = []
            for _ in range(n):
                seq += 1
                block.append(sign(pb.AgentCall(agent_id=aid, seq=seq,
                                               heartbeat=pb.Heartbeat()), secret))
            out.append(block)
        return out

    sides: dict[str, Any] = {}
    for name, metrics in (("oscore", True), ("oscore_metrics_off", False)):
        svc, aid, secret = service(metrics)
        sides[name] = (svc, protected_blocks(aid, secret))
    svc, aid, secret = service(True)
    sides["mac"] = (svc, mac_blocks(aid, secret))
    timings: dict[str, list[float]] = {name: [] for name in sides}
    clock = time.perf_counter
    for b in range(blocks):
        for name in (sorted(sides) if b % 2 == 0 else sorted(sides, reverse=True)):
            svc, all_blocks = sides[name]
            block = all_blocks[b]
            if name == "mac":
                call = svc.core.agent_call
                now = time.time()
                start = clock()
                for data in block:
                    if call(data, now, "websocket", "127.0.0.1:5683").error:
                        raise RuntimeError("a signed heartbeat was refused")
            else:
                handler = svc._coap_agent_inline
                start = clock()
                for req in block:
                    inner = oscore_request(svc, req)
                    response = handler(inner)
                    if response is None or inner.protect is None:
                        raise RuntimeError("a steady heartbeat left the inline path")
                    inner.protect(response)
            timings[name].append((clock() - start) / n * 1e6)

    observe = ShellMetrics().call_latency["coap"].observe
    heartbeats = sides["oscore"][0].core.state.fast_heartbeats
    hooks = []
    for _ in range(blocks):
        start = clock()
        for _ in range(n):
            t0 = clock()
            heartbeats["coap"] += 1
            observe(clock() - t0)
        hooks.append((clock() - start) / n * 1e6)
    result = {name: min(t) for name, t in timings.items()}
    result["hooks"] = min(hooks)
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--agents", type=int, default=2000)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--seconds", type=float, default=10.0,
                   help="seconds of load on each master")
    p.add_argument("--slice", type=float, default=1.0,
                   help="seconds on one master before the load turns to the other")
    p.add_argument("--scrape-s", type=float, default=0.0,
                   help="scrape the metrics-on master's /metrics this often (0: never)")
    p.add_argument("--a-a", action="store_true",
                   help="calibration: both masters with metrics on (the 'cost' is then the "
                   "bench's own bias and noise)")
    p.add_argument("--etcd", action="store_true",
                   help="also a master leading on a real three-member etcd cluster")
    p.add_argument("--loadgen", nargs="+", metavar="HOST:PORT", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.loadgen:
        targets = [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in args.loadgen]
        loadgen(targets, args.agents, args.window, args.seconds, args.slice)
        return
    results = run(args)
    on, off = results[0], results[1]
    emit("heartbeats_per_s_coap", on["rate"], "1/s", ">= 10000 (OSCORE)")
    emit("heartbeat_rtt_p50_coap", on["p50"], "ms")
    emit("heartbeat_rtt_p99_coap", on["p99"], "ms", "<= 50")
    emit("heartbeat_errors", on["errors"] + on["timeouts"], "count", "0")
    emit("heartbeats_per_s_coap_metrics_off", off["rate"], "1/s")
    emit("heartbeat_rtt_p50_coap_metrics_off", off["p50"], "ms")
    emit("heartbeat_errors_metrics_off", off["errors"] + off["timeouts"], "count", "0")
    emit("metrics_cost_heartbeat_path", (off["rate"] - on["rate"]) / off["rate"] * 100, "%",
         "< 5")
    if args.etcd:
        r = results[2]
        emit("heartbeats_per_s_coap_etcd", r["rate"], "1/s", ">= 5000")
        emit("heartbeat_rtt_p50_coap_etcd", r["p50"], "ms")
        emit("heartbeat_rtt_p99_coap_etcd", r["p99"], "ms", "<= 50")
        emit("heartbeat_errors_etcd", r["errors"] + r["timeouts"], "count", "0")
    scrapes = sorted(on["scrapes"])
    if scrapes:
        emit("metrics_scrape_http_ms", scrapes[len(scrapes) // 2] * 1000, "ms")
    cost = inline_cost()
    us_on, us_off, us_hooks = cost["oscore"], cost["oscore_metrics_off"], cost["hooks"]
    emit("inline_heartbeat_us", us_on, "µs")
    emit("inline_heartbeat_us_metrics_off", us_off, "µs")
    emit("heartbeat_handler_us_mac", cost["mac"], "µs")
    emit("heartbeat_handler_us_oscore", us_on, "µs")
    emit("oscore_cost_heartbeat_handler", (us_on - cost["mac"]) / cost["mac"] * 100, "%")
    emit("metrics_cost_inline_heartbeat", (us_on - us_off) / us_off * 100, "%", "< 5")
    emit("metrics_hooks_us", us_hooks, "µs")
    # Against the least disturbed inline figure of either side: the hooks are timed alone and
    # are stable; the inline comparison swings with the machine's load.
    emit("metrics_hooks_share_of_inline_heartbeat", us_hooks / min(us_on, us_off) * 100, "%",
         "< 5")


if __name__ == "__main__":
    main()
