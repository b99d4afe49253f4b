"""CoAP throughput: EdgeRM's Trio server against aiocoap's asyncio server, same load, one run.

Each server runs alone in its own process with the same handler (echo of a 40-byte POST
payload on ``/e``); one load generator (ours, a third process, plain non-blocking UDP, no
CoAP library) keeps 50 confirmable requests in flight, each with its own token, and measures
every request's latency from first send to response. Lost requests are retransmitted after
2 s like a CoAP client would, so a server that drops datagrams pays for it in p99.

Usage::

    python bench/coap_throughput.py [--requests 20000] [--concurrency 50]

Prints JSON lines ``{"metric", "value", "unit", "goal"}``: req/s, p50 and p99 latency of both
servers, and the ratio. Goals (2-core machine): ours >= 10,000 req/s and >= 5x aiocoap.
Each server gets a fresh generator socket and fewer than 65,536 requests, so message ids are
never reused within one run (a reused id would be answered from the dedup cache).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import subprocess
import sys
import time

PAYLOAD = bytes(range(40))
PATH = b"e"
WARMUP = 2000


# --------------------------------------------------------------------------- servers


def serve_ours(port: int) -> None:
    import trio

    from edgerm.coap import Code
    from edgerm.transport.coap import Request, Response, Site, serve_coap

    async def echo(request: Request) -> Response:
        return Response(Code.CHANGED, request.payload)

    async def main() -> None:
        site = Site()
        site.add("e", echo, methods=[Code.POST])
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_coap, site, "127.0.0.1", port)
            print("ready", flush=True)

    trio.run(main)


def serve_aiocoap(port: int) -> None:
    import asyncio

    import aiocoap
    import aiocoap.resource as resource

    class Echo(resource.Resource):
        async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
            return aiocoap.Message(code=aiocoap.CHANGED, payload=request.payload)

    async def main() -> None:
        root = resource.Site()
        root.add_resource(["e"], Echo())
        await aiocoap.Context.create_server_context(root, bind=("127.0.0.1", port))
        print("ready", flush=True)
        await asyncio.get_running_loop().create_future()

    asyncio.run(main())


# --------------------------------------------------------------------------- load generator


def _request(mid: int, token: bytes) -> bytes:
    # CON POST, Uri-Path "e", payload marker, payload.
    return (bytes((0x40 | len(token), 0x02, mid >> 8, mid & 0xFF)) + token
            + bytes((0xB0 | len(PATH),)) + PATH + b"\xff" + PAYLOAD)


def load(port: int, total: int, concurrency: int) -> dict[str, float]:
    """Run ``WARMUP + total`` requests; statistics cover the last ``total``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    n = WARMUP + total
    sent_at: list[float] = [0.0] * n
    first_sent: list[float] = [0.0] * n
    latency: list[float] = []
    outstanding: dict[int, bytes] = {}
    next_i = 0
    done = 0
    retransmits = 0
    mid0 = 1000
    perf = time.perf_counter
    t_start = 0.0
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    while done < n:
        while len(outstanding) < concurrency and next_i < n:
            i = next_i
            next_i += 1
            data = _request((mid0 + i) & 0xFFFF, i.to_bytes(4, "big"))
            outstanding[i] = data
            now = perf()
            if i == WARMUP:
                t_start = now
            sent_at[i] = first_sent[i] = now
            sock.send(data)
        try:
            resp = sock.recv(2048)
        except BlockingIOError:
            if not poller.poll(100):
                now = perf()
                for i, data in outstanding.items():
                    if now - sent_at[i] > 2.0:
                        sent_at[i] = now
                        retransmits += 1
                        sock.send(data)
            continue
        if len(resp) < 8:
            continue
        mtype = (resp[0] >> 4) & 3
        code = resp[1]
        if code == 0:
            continue  # Empty ACK: the response follows separately.
        i = int.from_bytes(resp[4:4 + (resp[0] & 0x0F)], "big")
        if mtype == 0:  # separate CON response: acknowledge it
            sock.send(bytes((0x60, 0, resp[2], resp[3])))
        if outstanding.pop(i, None) is None:
            continue
        done += 1
        if i >= WARMUP:
            latency.append(perf() - first_sent[i])
    elapsed = perf() - t_start
    sock.close()
    latency.sort()
    return {
        "rps": total / elapsed,
        "p50_ms": latency[len(latency) // 2] * 1000,
        "p99_ms": latency[int(len(latency) * 0.99)] * 1000,
        "retransmits": retransmits,
    }


# --------------------------------------------------------------------------- orchestration


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(kind: str, total: int, concurrency: int) -> dict[str, float]:
    port = _free_port()
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    server = subprocess.Popen([sys.executable, __file__, f"--serve-{kind}", str(port)],
                              stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{kind} server did not start")
        gen = subprocess.run([sys.executable, __file__, "--load", str(port), str(total),
                              str(concurrency)], capture_output=True, text=True, env=env,
                             timeout=300, check=True)
        return dict(json.loads(gen.stdout))
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--serve-ours", type=int, metavar="PORT")
    parser.add_argument("--serve-aiocoap", type=int, metavar="PORT")
    parser.add_argument("--load", nargs=3, type=int, metavar=("PORT", "N", "CONCURRENCY"))
    args = parser.parse_args()
    if args.serve_ours:
        serve_ours(args.serve_ours)
        return
    if args.serve_aiocoap:
        serve_aiocoap(args.serve_aiocoap)
        return
    if args.load:
        print(json.dumps(load(*args.load)))
        return
    if args.requests + WARMUP >= 65536:
        parser.error("--requests must stay below 63,536 (message ids must not repeat)")

    ours = measure("ours", args.requests, args.concurrency)
    theirs = measure("aiocoap", args.requests, args.concurrency)

    def emit(metric: str, value: float, unit: str, goal: str | None) -> None:
        print(json.dumps({"metric": metric, "value": round(value, 2), "unit": unit,
                          "goal": goal}), flush=True)

    emit("edgerm_coap_rps", ours["rps"], "req/s", ">= 10000")
    emit("edgerm_coap_p50", ours["p50_ms"], "ms", None)
    emit("edgerm_coap_p99", ours["p99_ms"], "ms", "<= 50")
    emit("aiocoap_rps", theirs["rps"], "req/s", None)
    emit("aiocoap_p50", theirs["p50_ms"], "ms", None)
    emit("aiocoap_p99", theirs["p99_ms"], "ms", None)
    emit("rps_ratio_edgerm_over_aiocoap", ours["rps"] / theirs["rps"], "x", ">= 5")
    emit("edgerm_retransmits", ours["retransmits"], "count", None)
    emit("aiocoap_retransmits", theirs["retransmits"], "count", None)


if __name__ == "__main__":
    main()
