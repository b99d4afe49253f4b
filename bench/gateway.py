"""Gateway benchmark: 20 simulated devices behind one gateway, side by side with the same 20
devices talking to the master directly, over the same uplink (docs/gateway.md).

`python bench/gateway.py [--devices 20] [--rounds 20] [--samples 200]`

A real master process; the uplink is a counting UDP NAT on loopback in front of it (each source
address gets its own outside socket, as a NAT's mapping). Devices are `ScriptedAgent`s, each on
its own CoAP socket, protecting every call after their first registration with OSCORE (issue
16). The gateway runs in this process (`edgerm_agent.gateway_shell.Gateway`) with its own agent
(`edgerm_agent.shell.Agent`, talking to the master directly), whose OSCORE context protects the
relay's POST `g`. Prints JSON lines:
- `module_uplink_ratio_oscore_*`: uplink bytes (UDP payloads, both ways) for one 20 KB module to
  every device fetched with OSCORE (256-byte blocks), divided by the module's size: the gateway
  cannot cache what it cannot read, so it is about the devices' number either way (no goal);
- `module_uplink_ratio_plain_*`: the same with plain `GET m/<sha>`, which the gateway caches
  (goal behind a gateway <= 1.1, against ~20 direct);
- `heartbeat_round_datagrams_*`: uplink datagrams (both ways) per round in which every device
  sends one protected heartbeat (goal behind a gateway <= 2, against 2 per device direct);
- `heartbeat_round_datagrams_spread_20ms_gateway`: the same with the heartbeats spread over
  20 ms, as jitter spreads them (no goal: it shows what the 2 ms window catches then);
- `relayed_heartbeat_added_p50_ms`: median round trip of one device's protected heartbeat
  through the gateway minus the same directly (goal <= 5 ms on loopback), with both medians.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgerm.coap.codes import Code  # noqa: E402
from edgerm.coap.options import BlockValue, decode_block  # noqa: E402
from edgerm.oscore import protect_request, unprotect_response  # noqa: E402
from edgerm.transport.coap_client import open_coap_client  # noqa: E402
from edgerm.wire import pb  # noqa: E402
from edgerm_agent.config import parse_config  # noqa: E402
from edgerm_agent.gateway_shell import Gateway  # noqa: E402
from edgerm_agent.shell import Agent  # noqa: E402
from edgerm_master.testing import ScriptedAgent  # noqa: E402
from edgerm_master.testing_io import CoapAgentClient, MasterProcess, open_framework  # noqa: E402

MODULE_SIZE = 20 * 1024
DEVICE_BLOCK = 256   # a constrained device's Block2 size


def emit(metric: str, value: float, unit: str, goal: str | None = None) -> None:
    print(json.dumps({"metric": metric, "value": round(value, 3), "unit": unit, "goal": goal}),
          flush=True)


class CountingNat:
    """UDP between the inside (devices or the gateway) and the master, counting what crosses."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.front = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        self.port = 0
        self.datagrams = 0
        self.bytes = 0
        self._out: dict[Any, Any] = {}

    async def bind(self) -> None:
        await self.front.bind(("127.0.0.1", 0))
        self.port = self.front.getsockname()[1]

    def reset(self) -> None:
        self.datagrams = self.bytes = 0

    async def run(self, nursery: trio.Nursery) -> None:
        while True:
            data, client = await self.front.recvfrom(65536)
            back = self._out.get(client)
            if back is None:
                back = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
                await back.bind(("127.0.0.1", 0))
                self._out[client] = back
                nursery.start_soon(self._down, back, client)
            self.datagrams += 1
            self.bytes += len(data)
            await back.sendto(data, self.target)

    async def _down(self, back: Any, client: Any) -> None:
        while True:
            data, _ = await back.recvfrom(65536)
            self.datagrams += 1
            self.bytes += len(data)
            await self.front.sendto(data, client)


async def devices_at(stack: AsyncExitStack, n: int, remote: tuple[str, int], tag: str
                     ) -> list[CoapAgentClient]:
    out = []
    for i in range(n):
        coap = await stack.enter_async_context(open_coap_client())
        out.append(CoapAgentClient(coap, remote, ScriptedAgent(name=f"{tag}-{i}", token="tok")))
    return out


async def heartbeat_round(devices: list[CoapAgentClient]) -> None:
    async with trio.open_nursery() as n:
        for d in devices:
            n.start_soon(d.exchange)


async def spread_round(devices: list[CoapAgentClient], spread_s: float, rng: random.Random
                       ) -> None:
    """Every device heartbeats once, at a random moment within `spread_s` (jitter)."""
    async def one(d: CoapAgentClient, at: float) -> None:
        await trio.sleep(at)
        await d.exchange()
    async with trio.open_nursery() as n:
        for d in devices:
            n.start_soon(one, d, rng.uniform(0, spread_s))


async def fetch_protected(d: CoapAgentClient, remote: tuple[str, int], sha: bytes) -> bytes:
    """A module as an OSCORE device fetches it: one protected request per Block2 block (inner
    GET m/<sha> with Block2; outer POST, docs/protocol.md)."""
    agent = d.agent
    out = bytearray()
    num = 0
    szx = DEVICE_BLOCK.bit_length() - 5
    while True:
        agent.seq += 1
        seq = agent.seq
        option, ct = protect_request(agent.oscore_context(), seq, Code.GET, [
            (11, b"m"), (11, sha.hex().encode()), (23, BlockValue(num, False, szx).encode())],
            b"")
        resp = await d.coap.post(remote, (), ct, options=[(9, option)], token_length=2)
        value = next(v for n, v in resp.options if n == 9)
        _, code, options, payload = unprotect_response(agent.oscore_context(), seq, value,
                                                       resp.payload)
        assert code == Code.CONTENT, hex(code)
        block = decode_block(next(v for n, v in options if n == 23))
        assert block is not None
        out += payload
        if not block.more:
            return bytes(out)
        num = block.num + 1


async def fetch_all(devices: list[CoapAgentClient], remote: tuple[str, int], sha: bytes,
                    protected: bool) -> None:
    async def one(d: CoapAgentClient) -> None:
        if protected:
            data = await fetch_protected(d, remote, sha)
        else:
            data = (await d.coap.get(remote, f"m/{sha.hex()}", block_size=DEVICE_BLOCK)).payload
        assert hashlib.sha256(data).digest() == sha
    async with trio.open_nursery() as n:
        for d in devices:
            n.start_soon(one, d)


async def rtts(device: CoapAgentClient, samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        await device.exchange()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def main(n_devices: int, rounds: int, samples: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        master = MasterProcess(str(Path(tmp) / "master"), agent_token="tok",
                               heartbeat_ms=60_000)
        await trio.to_thread.run_sync(master.start)
        try:
            async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
                nat = CountingNat(master.coap)
                await nat.bind()
                nursery.start_soon(nat.run, nursery)
                uplink = ("127.0.0.1", nat.port)
                # The gateway's own agent talks to the master directly (its rare calls are not
                # the relay's); the relay goes through the NAT.
                config = parse_config({
                    "name": "gw", "work_dir": str(Path(tmp) / "gw"),
                    "master": {"url": "coap://{}:{}".format(*master.coap), "token": "tok"},
                    "resources": {"cpus": 0.01, "mem_mb": 1}, "executors": {"enabled": []},
                    "gateway": {"host": "127.0.0.1", "port": 0,
                                "uplink": f"coap://127.0.0.1:{nat.port}"}})
                agent = Agent(config)
                gw = Gateway(config, agent)
                addr = await nursery.start(gw.run)
                await nursery.start(agent.run)
                with trio.fail_after(30):
                    await agent.registered.wait()
                gateway = (addr[0], addr[1])
                direct = await devices_at(stack, n_devices, uplink, "direct")
                behind = await devices_at(stack, n_devices, gateway, "behind")
                for d in direct + behind:
                    await d.settle()

                # one 20 KB module to every device
                module = (b"# gateway bench\n" * (MODULE_SIZE // 16 + 1))[:MODULE_SIZE]
                f = await open_framework(nursery, master.ws)
                await f.send(f.fw.upload(module, pb.MICROPYTHON_SOURCE))
                sha = hashlib.sha256(module).digest()
                await f.wait_for(lambda: any(e.WhichOneof("event") == "module_stored"
                                             for e in f.fw.events))
                for protected in (True, False):
                    for tag, devices, remote in (("direct", direct, uplink),
                                                 ("gateway", behind, gateway)):
                        nat.reset()
                        await fetch_all(devices, remote, sha, protected)
                        goal = "<= 1.1" if tag == "gateway" and not protected else None
                        emit(f"module_uplink_ratio_{'oscore' if protected else 'plain'}_{tag}",
                             nat.bytes / len(module),
                             f"x module size ({len(devices)} devices, {len(module)} B)", goal)

                # heartbeat rounds
                for tag, devices in (("direct", direct), ("gateway", behind)):
                    counts = []
                    for _ in range(rounds):
                        nat.reset()
                        await heartbeat_round(devices)
                        counts.append(nat.datagrams)
                        await trio.sleep(0.02)
                    emit(f"heartbeat_round_datagrams_{tag}", statistics.mean(counts),
                         f"uplink datagrams per round of {len(devices)} heartbeats",
                         "<= 2" if tag == "gateway" else None)

                # the same rounds with the heartbeats spread over 20 ms (jitter): the window
                # (2 ms) catches fewer of them; this is the trade-off against latency
                rng = random.Random(14)
                counts = []
                for _ in range(rounds):
                    nat.reset()
                    await spread_round(behind, 0.02, rng)
                    counts.append(nat.datagrams)
                    await trio.sleep(0.02)
                emit("heartbeat_round_datagrams_spread_20ms_gateway", statistics.mean(counts),
                     f"uplink datagrams per round of {len(behind)} heartbeats spread over 20 ms")

                # latency of one relayed heartbeat, alternating so load hits both alike
                d_direct: list[float] = []
                d_gateway: list[float] = []
                for _ in range(max(1, samples // 20)):
                    d_direct += await rtts(direct[0], 20)
                    d_gateway += await rtts(behind[0], 20)
                p_direct = statistics.median(d_direct)
                p_gateway = statistics.median(d_gateway)
                emit("heartbeat_rtt_p50_direct_ms", p_direct, "ms")
                emit("heartbeat_rtt_p50_gateway_ms", p_gateway, "ms")
                emit("relayed_heartbeat_added_p50_ms", p_gateway - p_direct, "ms",
                     f"<= 5 (window_ms {config.gateway.window_ms:g})"
                     if config.gateway else None)
                nursery.cancel_scope.cancel()
        finally:
            await trio.to_thread.run_sync(master.stop)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--samples", type=int, default=200)
    a = ap.parse_args()
    trio.run(main, a.devices, a.rounds, a.samples)
