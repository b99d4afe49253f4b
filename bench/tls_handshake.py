"""What TLS costs a WebSocket client: connect + handshake + first frame round trip, and a steady
frame round trip, ws:// against wss:// side by side on loopback.

    python bench/tls_handshake.py [--connections 200] [--frames 2000]

Prints JSON lines {"metric", "value", "unit", "goal"}. One echo server per scheme
(`edgerm.transport.websocket.serve_websocket`, the wss:// one with a development certificate
from `edgerm.devca`, ECDSA P-256) and the shared client (`connect_websocket`, verifying the
certificate against the development CA), all in one Trio loop, so each figure is client and
server CPU together. Connections alternate ws/wss so both see the same machine load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgerm.devca import ensure_dev_certificates  # noqa: E402
from edgerm.transport.websocket import (  # noqa: E402
    WebSocketConfig,
    WsConnection,
    connect_websocket,
    serve_websocket,
)
from edgerm_master.tls import server_context  # noqa: E402


def emit(metric: str, value: float, unit: str, goal: str = "") -> None:
    print(json.dumps({"metric": metric, "value": round(value, 3), "unit": unit, "goal": goal}),
          flush=True)


async def echo(conn: WsConnection) -> None:
    while True:
        await conn.send(await conn.receive())


CONFIG = WebSocketConfig(ping_interval=None, disconnect_timeout=1.0)


async def first_frame_ms(url: str, ca_file: str | None) -> tuple[float, float]:
    """(wall-clock ms, this process's CPU ms: client and server) to connect and echo a
    frame. CPU time is what a loaded machine distorts least."""
    started, cpu = time.perf_counter(), time.process_time()
    async with connect_websocket(url, config=CONFIG, ca_file=ca_file) as conn:
        await conn.send(b"x" * 32)
        await conn.receive()
        return (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000


async def frame_ms(url: str, ca_file: str | None, frames: int) -> list[float]:
    times = []
    async with connect_websocket(url, config=CONFIG, ca_file=ca_file) as conn:
        payload = b"x" * 64
        for _ in range(frames):
            started = time.perf_counter()
            await conn.send(payload)
            await conn.receive()
            times.append((time.perf_counter() - started) * 1000)
    return times


async def main(connections: int, frames: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        certs = ensure_dev_certificates(tmp)
        context = server_context(str(certs.cert_file), str(certs.key_file))  # the master's
        async with trio.open_nursery() as nursery:
            _, plain = await nursery.start(lambda task_status: serve_websocket(
                {"/e": echo}, "127.0.0.1", 0, config=CONFIG, task_status=task_status))
            _, tls = await nursery.start(lambda task_status: serve_websocket(
                {"/e": echo}, "127.0.0.1", 0, config=CONFIG, ssl_context=context,
                task_status=task_status))
            urls = {"ws": (f"ws://127.0.0.1:{plain}/e", None),
                    "wss": (f"wss://127.0.0.1:{tls}/e", str(certs.ca_file))}
            for url, ca in urls.values():   # warm-up: imports, the first context
                await first_frame_ms(url, ca)
            connect: dict[str, list[float]] = {"ws": [], "wss": []}
            cpu: dict[str, float] = {"ws": 0.0, "wss": 0.0}
            for _ in range(connections):
                for scheme, (url, ca) in urls.items():
                    wall, used = await first_frame_ms(url, ca)
                    connect[scheme].append(wall)
                    cpu[scheme] += used
            steady = {scheme: await frame_ms(url, ca, frames)
                      for scheme, (url, ca) in urls.items()}
            for scheme in ("ws", "wss"):
                times = sorted(connect[scheme])
                emit(f"connect_first_frame_{scheme}_p50", statistics.median(times), "ms")
                emit(f"connect_first_frame_{scheme}_p90", times[int(0.9 * len(times))], "ms")
            for scheme in ("ws", "wss"):
                emit(f"connect_first_frame_{scheme}_cpu", cpu[scheme] / connections, "ms")
            emit("tls_connect_cpu_overhead", (cpu["wss"] - cpu["ws"]) / connections, "ms",
                 "<= 5 ms")
            extra = statistics.median(connect["wss"]) - statistics.median(connect["ws"])
            emit("tls_connect_overhead_p50", extra, "ms", "<= 10 ms on loopback")
            for scheme in ("ws", "wss"):
                emit(f"frame_roundtrip_{scheme}_p50", statistics.median(steady[scheme]) * 1000,
                     "us")
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    trio.run(main, args.connections, args.frames)
