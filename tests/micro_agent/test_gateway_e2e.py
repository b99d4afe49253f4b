"""A MicroPython agent behind a gateway (`edgerm-agent` with `[gateway]`), all real processes on
loopback: the device has no route to the master, only to the gateway; the gateway's uplink to
the master runs through a UDP relay that can cut it.

Checked: the device registers (plain) and runs a task whose status and readings reach the
framework, OSCORE-protected end to end through the gateway (whose own agent registers as well,
and whose uplink is protected with that agent's context); an uplink cut keeps the device's
protected requests on the gateway's disk and every reading arrives once and in order when the
uplink returns; a gateway SIGKILLed during a cut and restarted loses none of them; the gateway
keeps no reading of the device (it cannot read them)."""

from __future__ import annotations

import random
import socket
import sqlite3
from pathlib import Path
from typing import Any

import trio

from edgerm.wire import pb
from edgerm_agent.testing import AgentProcess as LinuxAgent
from edgerm_master.testing_io import Framework, MasterProcess, UdpRelay, open_framework

from .conftest import needs_micropython, precompiled
from .lossy_relay import LossyRelay

pytestmark = needs_micropython

EXAMPLES = Path(__file__).resolve().parents[2] / "micro_agent" / "examples"
SAMPLER = (EXAMPLES / "sampler.py").read_bytes()
N = 30


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway_process(tmp: Path, master: MasterProcess, uplink_port: int, port: int,
                    uplink_timeout_s: float = 2.0) -> LinuxAgent:
    host, ws = master.ws
    return LinuxAgent(tmp / "gw", f"ws://{host}:{ws}/agent", name="gw", token="tok",
                      extra=f'[gateway]\nhost = "127.0.0.1"\nport = {port}\n'
                            f'uplink = "coap://127.0.0.1:{uplink_port}"\nwindow_ms = 5\n'
                            f'uplink_timeout_s = {uplink_timeout_s}\nreply_timeout_s = 5.0\n'
                            '[coap]\nack_timeout_s = 0.3\nmax_retransmit = 4\n')


def kept_rows(queue: Path) -> int:
    if not queue.exists():
        return 0
    db = sqlite3.connect(queue)
    try:
        return int(db.execute("SELECT count(*) FROM rows").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


_USED: set[str] = set()


async def _offer_on(f: Framework, name: str, timeout: float = 30.0) -> pb.Offer:
    return await f.wait_for(lambda: next((o for o in f.fw.offers.values()  # type: ignore[no-any-return]
                                          if o.agent_name == name
                                          and o.offer_id not in _USED
                                          and o.offer_id in f.fw.offers
                                          and (name == "gw" or any(
                                              d.name == "temp" for d in o.resources.devices))),
                                         None), timeout)


async def _launch_on(f: Framework, name: str, task_id: str, spec: pb.TaskSpec) -> None:
    offer = await _offer_on(f, name)
    _USED.add(offer.offer_id)
    await f.send(f.fw.accept([offer.offer_id], [pb.TaskInfo(task_id=task_id, spec=spec)]))


def _outputs(f: Framework, task_id: str) -> list[bytes]:
    return [o.data for o in f.fw.outputs if o.task_id == task_id]


async def _upload_mp(f: Framework, tmp: Path) -> tuple[bytes, int]:
    """The sampler, precompiled (`precompiled`: this device's heap has run a task before the
    next launch), uploaded: its sha256 and size."""
    import hashlib

    module = precompiled(SAMPLER, tmp)
    await f.send(f.fw.upload(module, pb.MICROPYTHON_MPY))
    sha = hashlib.sha256(module).digest()
    await f.wait_for(lambda: any(e.WhichOneof("event") == "module_stored"
                                 and e.module_stored.sha256 == sha for e in f.fw.events))
    return sha, len(module)


def _spec(module: tuple[bytes, int], n: int, period_ms: int) -> pb.TaskSpec:
    return pb.TaskSpec(name="mp", resources=pb.Resources(cpus=0.1, devices=[pb.Device(
        name="temp")]), micropython=pb.MicroPythonTask(
            sha256=module[0], size=module[1], mpy=True, args=[str(n)],
            env=[pb.EnvVar(name="PERIOD_MS", value=str(period_ms))]))


def _master(tmp_path: Path) -> MasterProcess:
    """The master, keeping an agent it has not heard from for 120 s (an outage is no loss).
    A new master numbers its offers afresh: the offers taken from the last one are forgotten."""
    _USED.clear()
    return MasterProcess(str(tmp_path / "master"), agent_token="tok", heartbeat_ms=500,
                         extra=["--lost-after-s", "120"])


def _device_config(port: int, readings: int) -> dict[str, Any]:
    """The MicroPython device "mp-gw" behind the gateway at `port`; its `temp` sensor reads
    1.0, 2.0, … `readings`."""
    return {
        "master": f"127.0.0.1:{port}", "token": "tok", "name": "mp-gw",
        "heartbeat_ms": 500, "ack_timeout_ms": 300, "max_retransmit": 2,
        "log_level": 2, "block_szx": 3, "mem_mb": 0.0625,
        "sensors": [{"name": "temp", "unit": "Cel",
                     "sim": [float(i) for i in range(1, readings + 1)]}]}


async def _stop(gw: LinuxAgent | None, master: MasterProcess) -> None:
    """Stop the gateway (its log printed first: what a failure report needs) and the master."""
    if gw is not None:
        print("--- gateway log ---\n" + gw.log())
        gw.stop()
    await trio.to_thread.run_sync(master.stop)


async def test_device_behind_a_gateway_through_an_outage_and_a_gateway_crash(
        agent_factory: Any, tmp_path: Path) -> None:
    master = _master(tmp_path)
    await trio.to_thread.run_sync(master.start)
    gw: LinuxAgent | None = None
    try:
        async with trio.open_nursery() as n:
            relay = UdpRelay(master.coap)
            await relay.bind()
            n.start_soon(relay.run)
            port = free_udp_port()
            gw = gateway_process(tmp_path, master, relay.port, port).start()
            queue = tmp_path / "gw" / "gateway" / "queue.sqlite"
            device = agent_factory(_device_config(port, readings=3 * N))
            await device.start()
            f = await open_framework(n, master.ws)
            await _offer_on(f, "gw")        # the gateway's own agent
            await _offer_on(f, "mp-gw")     # the device, through the gateway

            # a task on the device: status and readings reach the framework through the relay
            sampler = await _upload_mp(f, tmp_path)
            await _launch_on(f, "mp-gw", "s1", _spec(sampler, 3, 10))
            await f.wait_state("s1", pb.FINISHED, timeout=30)
            assert _outputs(f, "s1") == [b"1.0", b"2.0", b"3.0"]
            # the gateway cannot read the device's readings: none on its disk
            assert not (tmp_path / "gw" / "gateway" / "readings").exists() or not any(
                p.is_file() for p in (tmp_path / "gw" / "gateway" / "readings").rglob("*"))

            # an uplink cut while the device samples: updates wait on the gateway's disk
            await _launch_on(f, "mp-gw", "s2", _spec(sampler, N, 150))
            try:
                await f.wait_for(lambda: len(_outputs(f, "s2")) >= 3, timeout=30)
            except trio.TooSlowError:
                last = [e for e in f.fw.events if e.WhichOneof("event") != "offers"][-5:]
                raise AssertionError(f"{f.fw.errors} {f.states('s2')} {last}") from None
            relay.forwarding = False
            with trio.fail_after(20):
                while kept_rows(queue) == 0:
                    await trio.sleep(0.05)
            seen = len(_outputs(f, "s2"))
            await trio.sleep(1.0)
            assert len(_outputs(f, "s2")) <= seen + 1  # nothing crosses a cut uplink
            # the gateway dies with the kept update and comes back
            gw.kill()
            assert kept_rows(queue) >= 1
            gw.start()
            await trio.sleep(1.0)
            relay.forwarding = True
            await f.wait_state("s2", pb.FINISHED, timeout=60)
            expected = [f"{float(i)}".encode() for i in range(4, 4 + N)]
            assert _outputs(f, "s2") == expected  # each reading once, in order
            with trio.fail_after(10):  # the last answer may reach the framework first
                while kept_rows(queue):
                    await trio.sleep(0.05)
            assert device.alive(), device.output()
            n.cancel_scope.cancel()
    finally:
        await _stop(gw, master)


async def test_a_lossy_uplink_every_reading_once_and_in_order(agent_factory: Any,
                                                              tmp_path: Path) -> None:
    rng = random.Random(14)
    master = _master(tmp_path)
    await trio.to_thread.run_sync(master.start)
    gw: LinuxAgent | None = None
    try:
        async with trio.open_nursery() as n:
            relay = LossyRelay(master.coap, lambda direction, msg: rng.random() < 0.2)
            await relay.bind()
            n.start_soon(relay.run)
            port = free_udp_port()
            gw = gateway_process(tmp_path, master, relay.port, port, uplink_timeout_s=8.0).start()
            device = agent_factory(_device_config(port, readings=20))
            await device.start()
            f = await open_framework(n, master.ws)
            sampler = await _upload_mp(f, tmp_path)
            await _launch_on(f, "mp-gw", "l1", _spec(sampler, 10, 50))
            await f.wait_state("l1", pb.FINISHED, timeout=90)
            assert _outputs(f, "l1") == [f"{float(i)}".encode() for i in range(1, 11)]
            assert relay.lost["up"] > 0 and relay.lost["down"] > 0  # the loss was real
            n.cancel_scope.cancel()
    finally:
        await _stop(gw, master)
