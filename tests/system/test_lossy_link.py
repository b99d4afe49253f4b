"""A lossy, bandwidth-starved edge link: 20 % random loss on the router (every forwarded packet,
both directions) and a 256 kbit/s token bucket on both of its interfaces. The Linux agent over
CoAP and the MicroPython agent register through it, run several short tasks each, and the
framework receives every status exactly once and in order (STARTING → RUNNING → FINISHED) and
every published value exactly once and in order."""

from __future__ import annotations

from pathlib import Path

import trio

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
from .netns import Topology

TS = pb.TaskState
LOSS = 0.2
RATE_KBIT = 256
WASM_TASKS = 5
MP_TASKS = 3
VALUES = 2     # published per task



def _check_task(f: Observer, task: str, expected: list[bytes]) -> None:
    assert f.states(task) == [TS.STARTING, TS.RUNNING, TS.FINISHED], \
        (task, f.state_names(task), f.last(task))
    assert f.data(task) == expected, (task, f.data(task))
    assert f.seqs(task) == list(range(1, len(expected) + 1)), (task, f.seqs(task))


async def test_lossy_slow_link_delivers_everything_once_in_order(
        core_sockets: Topology, masters, edge_processes: list[EdgeProcess],  # type: ignore[no-untyped-def]
        wasm_modules: dict[str, bytes], mpy_tasks: dict[str, bytes], mpy_build: Path,
        tmp_path: Path) -> None:
    net = core_sockets
    # Generous liveness (60 s of silence): the test is about delivery, not about being declared
    # UNREACHABLE while CoAP retransmits through the loss.
    master = await masters(1000, "--unreachable-after-missed", "60")
    net.impair(loss=LOSS, rate_kbit=RATE_KBIT)
    host, port = master.coap
    linux = linux_agent(net, tmp_path / "linux", f"coap://{host}:{port}", "linux-lossy",
                        call_timeout_s=10.0, backoff_max_s=2.0).start()
    edge_processes.append(linux)
    micro = micro_agent(net, tmp_path / "micro", mpy_build, master.coap, "micro-lossy",
                        # an exchange gives up after <= 11 s (0.5+1+2+4 s, x1.5 at most):
                        # with 4 and 1 s it could stay silent 46 s on one unlucky exchange
                        ack_timeout_ms=500, max_retransmit=3).start()
    edge_processes.append(micro)

    wasm_ids = [f"w{i}" for i in range(WASM_TASKS)]
    mp_ids = [f"m{i}" for i in range(MP_TASKS)]
    expected = {t: [f"{t}-v{j}".encode() for j in range(VALUES)] for t in wasm_ids + mp_ids}
    async with open_framework(master) as f:
        t0 = trio.current_time()
        linux_offer = await f.offer("linux-lossy", 60)
        micro_offer = await f.offer("micro-lossy", 60)
        print(f"both agents offered after {trio.current_time() - t0:.1f} s")
        hello = await f.fw.upload(wasm_modules["hello"])
        publisher = await f.fw.upload(mpy_tasks["publisher"], pb.MICROPYTHON_MPY)
        await f.fw.accept(linux_offer.offer_id, [
            pb.TaskInfo(task_id=t, spec=wasm_spec(hello, *(v.decode() for v in expected[t])))
            for t in wasm_ids])
        await f.fw.accept(micro_offer.offer_id, [
            pb.TaskInfo(task_id=t, spec=micropython_spec(publisher,
                                                          *(v.decode() for v in expected[t])))
            for t in mp_ids])
        await f.wait_terminal(wasm_ids + mp_ids, 150)
        await f.wait_for(lambda: all(len(f.data(t)) >= VALUES for t in expected), 30,
                         "every output")
        f.print_timeline()
        for task, values in expected.items():
            _check_task(f, task, values)
        assert not f.errors, f.errors

    drops = net.forward_drops()
    assert drops > 0, "the router dropped nothing: the link was not lossy"
    print(f"router dropped {drops} packets")
    assert linux.alive() and micro.alive()
