"""The framework SDK against the real master and a real Linux agent (processes on loopback):
launch -> output -> finish, failures, kill, reconcile, failover."""

from __future__ import annotations

import struct
from typing import Any

import pytest
import trio

from edgerm.framework import (
    WASM,
    ConnectionLost,
    Constraints,
    FailoverExpired,
    Framework,
    Module,
    OffersEvent,
    OutputEvent,
    Subscribed,
    UpdateEvent,
    wasm_task,
)
from edgerm.wire import pb
from edgerm_cli.listing import fetch_state

from .conftest import FRAMEWORK_TOKEN, OPERATOR_TOKEN, TcpRelay

TEMP = Constraints(cpus=0.1, mem_mb=16, devices=["temp"], executors=[WASM])
PLAIN = Constraints(cpus=0.1, mem_mb=16, executors=[WASM])


async def launch(fw: Framework, cluster: Any, task_id: str, module: Module, args: list[str],
                 want: Constraints = PLAIN, timeout_s: int = 0) -> pb.Offer:
    """Wait for an offer from the cluster's agent that fits `want`, launch one task on it."""
    with trio.fail_after(15):
        while True:
            ev = await fw.next_event()
            if not isinstance(ev, OffersEvent):
                continue
            for offer in ev.offers:
                if offer.agent_name == cluster.agent_name and want.match(offer):
                    await fw.launch(offer, task_id, wasm_task(
                        module, name=task_id, resources=want.resources(offer), args=args,
                        timeout_s=timeout_s))
                    return offer
                await fw.decline(offer.offer_id)


async def follow(fw: Framework, task_id: str, until: set[int] | None = None,
                 timeout: float = 20) -> tuple[list[pb.TaskStatus], list[bytes]]:
    """Updates and outputs of `task_id` until a terminal state (or one of `until`)."""
    updates: list[pb.TaskStatus] = []
    outputs: list[bytes] = []
    with trio.fail_after(timeout):
        async for ev in fw.events():
            if isinstance(ev, UpdateEvent) and ev.task_id == task_id:
                updates.append(ev.status)
                if ev.terminal or (until and ev.state in until):
                    break
            elif isinstance(ev, OutputEvent) and ev.task_id == task_id:
                outputs.append(ev.data)
    return updates, outputs


async def test_wasm_sampler_launch_output_finish(real_cluster, wasm_modules) -> None:
    async with real_cluster.connect(name="e2e-finish") as fw:
        module = await fw.upload(wasm_modules["sampler"], name="sampler.wasm")
        assert module == Module.of(wasm_modules["sampler"])
        offer = await launch(fw, real_cluster, "sample-1", module, ["temp", "3"], TEMP)
        assert "temp" in [d.name for d in offer.resources.devices]
        updates, outputs = await follow(fw, "sample-1")
        states = [u.state for u in updates]
        assert states[-1] == pb.FINISHED, updates[-1]
        assert pb.RUNNING in states
        assert all(u.agent_id == offer.agent_id and u.timestamp > 0 for u in updates)
        readings = [struct.unpack("<d", d)[0] for d in outputs]
        assert len(readings) == 3
        assert all(20.0 <= r <= 22.0 for r in readings), readings   # sine 21 ± 0.5
        assert fw.tasks["sample-1"].state == pb.FINISHED
        await fw.teardown()


@pytest.mark.parametrize("name, reason", [("fail", pb.EXITED_NONZERO), ("trap", pb.TRAPPED)])
async def test_failing_tasks_end_failed_with_their_reason(real_cluster, wasm_modules, name,
                                                          reason) -> None:
    async with real_cluster.connect(name=f"e2e-{name}") as fw:
        module = await fw.upload(wasm_modules[name])
        await launch(fw, real_cluster, f"{name}-1", module, [])
        updates, _ = await follow(fw, f"{name}-1")
        final = updates[-1]
        assert (final.state, final.reason) == (pb.FAILED, reason), final
        if name == "fail":
            assert final.exit_code == 3
        await fw.teardown()


async def test_kill_a_running_task_and_reconcile(real_cluster, wasm_modules) -> None:
    async with real_cluster.connect(name="e2e-kill") as fw:
        module = await fw.upload(wasm_modules["spin"])
        await launch(fw, real_cluster, "spin-1", module, [])
        updates, _ = await follow(fw, "spin-1", until={pb.RUNNING})
        assert updates[-1].state == pb.RUNNING
        await fw.kill("spin-1")
        updates, _ = await follow(fw, "spin-1")
        assert (updates[-1].state, updates[-1].reason) == (pb.KILLED, pb.KILL_REQUESTED)
        # Explicit reconciliation: the master answers for a known and an unknown task.
        await fw.reconcile(["spin-1", "never-launched"])
        answers: dict[str, pb.TaskStatus] = {}
        with trio.fail_after(10):
            async for ev in fw.events():
                if isinstance(ev, UpdateEvent):
                    answers[ev.task_id] = ev.status
                    if {"spin-1", "never-launched"} <= set(answers):
                        break
        assert answers["spin-1"].state == pb.KILLED
        assert answers["never-launched"].reason == pb.TASK_UNKNOWN
        await fw.teardown()


async def test_failover_within_the_timeout_keeps_the_tasks(real_cluster, wasm_modules) -> None:
    async with real_cluster.connect(name="e2e-failover", failover_timeout_s=30) as fw:
        framework_id, secret = fw.framework_id, fw.framework_secret
        module = await fw.upload(wasm_modules["spin"])
        await launch(fw, real_cluster, "spin-fo", module, [])
        await follow(fw, "spin-fo", until={pb.RUNNING})
    # The connection is gone (the framework process "crashed"); a new one takes over by id,
    # proven by the secret the master gave the first one.
    async with real_cluster.connect(name="e2e-failover", framework_id=framework_id,
                                    framework_secret=secret, failover_timeout_s=30) as fw:
        assert fw.framework_id == framework_id
        await fw.reconcile(["spin-fo"])
        updates, _ = await follow(fw, "spin-fo", until={pb.RUNNING, pb.STARTING})
        assert updates[-1].state == pb.RUNNING
        await fw.kill("spin-fo")
        updates, _ = await follow(fw, "spin-fo")
        assert updates[-1].state == pb.KILLED
        await fw.teardown()


async def test_sdk_reconnects_by_itself_and_keeps_the_task(real_cluster, wasm_modules,
                                                           nursery) -> None:
    relay = TcpRelay(real_cluster.master.ws)
    await nursery.start(relay.serve)
    async with Framework.connect(f"ws://127.0.0.1:{relay.port}", name="e2e-reconnect",
                                 token=FRAMEWORK_TOKEN, failover_timeout_s=30) as fw:
        framework_id = fw.framework_id
        module = await fw.upload(wasm_modules["spin"])
        await launch(fw, real_cluster, "spin-rc", module, [])
        await follow(fw, "spin-rc", until={pb.RUNNING})
        relay.cut()      # the network drops the connection under the SDK
        lost = sub = None
        with trio.fail_after(10):
            while sub is None:
                ev = await fw.next_event()
                if isinstance(ev, ConnectionLost):
                    lost = ev
                elif isinstance(ev, Subscribed):
                    sub = ev
        assert lost is not None and sub.failover and sub.framework_id == framework_id
        # It re-subscribed with its id and reconciled: the task is still RUNNING, which the
        # user already knows, so the next status it is told is the kill's.
        assert fw.tasks["spin-rc"].state == pb.RUNNING
        await fw.kill("spin-rc")
        updates, _ = await follow(fw, "spin-rc")
        assert [u.state for u in updates] == [pb.KILLING, pb.KILLED]
        await fw.teardown()


async def test_failover_too_late_loses_the_framework(real_cluster, wasm_modules) -> None:
    async with real_cluster.connect(name="e2e-late", failover_timeout_s=0.5) as fw:
        framework_id = fw.framework_id
        module = await fw.upload(wasm_modules["spin"])
        await launch(fw, real_cluster, "spin-late", module, [])
        await follow(fw, "spin-late", until={pb.RUNNING})
    await trio.sleep(2.0)
    with pytest.raises(FailoverExpired):
        async with real_cluster.connect(name="e2e-late", framework_id=framework_id):
            pass
    # Its task did not outlive it.
    with trio.fail_after(10):
        while True:
            state = await fetch_state(real_cluster.url, OPERATOR_TOKEN)
            task = next((t for t in state.tasks if t.task_id == "spin-late"), None)
            if task is None or task.state == pb.KILLED:
                break
            await trio.sleep(0.1)
