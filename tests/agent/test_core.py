"""AgentCore against the real master core (sans-IO, fake clock): registration, heartbeats,
commands once and in order, updates until acknowledged, restarts, bad replies, back-off."""

from __future__ import annotations

import random

import pytest

from edgerm.wire import decode, derive_secret, encode, pb, sign, token_key, verify
from edgerm_agent.core import AgentCore
from edgerm_agent.events import KillTask, LaunchTask, Registered
from edgerm_master.core import ACTIVE_STATE
from edgerm_master.testing import task_info

from .pair import Pair, core_config, framework

TS = pb.TaskState


def launch_one(p: Pair, task_id: str = "t1", **kw: object) -> pb.TaskInfo:
    fw = framework(p.cluster)
    offer = next(iter(fw.offers.values()))
    info = task_info(task_id, cpus=0.5, mem_mb=64, **kw)  # type: ignore[arg-type]
    p.cluster.call(fw, fw.accept([offer.offer_id], [info]))
    p._fw = fw  # type: ignore[attr-defined]
    return info


def states(p: Pair, task_id: str = "t1") -> list[int]:
    """What the framework has seen of the task (acknowledging as it goes: the master holds
    the next update of a task until the previous one is acknowledged)."""
    fw = p._fw  # type: ignore[attr-defined]
    p.cluster.ack_all(fw)
    return list(fw.states(task_id))


def registered_pair() -> Pair:
    p = Pair()
    p.start()
    p.settle()
    assert p.core.registered
    p.cluster.master.agent_channel(p.core.agent_id, True)  # as over WebSocket: pushes flow
    return p


def test_first_registration_is_signed_with_the_token_key_then_with_the_secret() -> None:
    p = Pair()
    p.start()
    out = p.core.next_call(p.now)
    assert out is not None and out.kind == "register"
    call = decode(pb.AgentCall, out.data)
    assert call.agent_id == 0 and len(call.register.nonce) == 8
    assert b"agent-token" not in out.data  # the token itself never crosses the link
    assert verify(call, token_key("agent-token")) and not verify(call, token_key("other"))
    reply = p.cluster.master.agent_call(out.data, p.now).data
    registered = decode(pb.AgentReply, reply).registered
    assert len(registered.nonce) == 8
    p.core.receive_reply(reply, p.now)
    assert p.core.agent_id == 1
    assert p.core.secret == derive_secret("agent-token", call.register.nonce, registered.nonce)
    assert p.core.secret not in reply
    assert isinstance(p.drain()[0], Registered)
    p.step(10)
    hb = p.core.next_call(p.now)
    assert hb is not None and hb.kind == "heartbeat"
    call = decode(pb.AgentCall, hb.data)
    assert call.agent_id == 1 and len(call.mac) == 8 and call.seq == 2
    assert len(hb.data) <= 32  # a steady heartbeat is tiny


def test_registered_reply_from_a_master_without_the_token_is_dropped() -> None:
    """An impostor master (another token) can answer, but cannot sign with the secret."""
    p = Pair()
    p.start()
    out = p.core.next_call(p.now)
    assert out is not None and out.kind == "register"
    call = decode(pb.AgentCall, out.data)
    master_nonce = b"m" * 8
    nonces = [call.register.nonce]
    for token in ("impostor-token", ""):
        forged = pb.AgentReply(seq=out.seq, registered=pb.Registered(
            agent_id=7, nonce=master_nonce, heartbeat_ms=1000))
        p.core.receive_reply(
            sign(forged, derive_secret(token, call.register.nonce, master_nonce)), p.now)
        assert not p.core.registered and p.core.agent_id == 0 and not p.core.secret
        p.step(p.core.get_timer() - p.now)  # type: ignore[operator]
        out = p.core.next_call(p.now)
        assert out is not None and out.kind == "register"
        call = decode(pb.AgentCall, out.data)
        nonces.append(call.register.nonce)
    assert p.core.stats["bad_replies"] == 2
    # Each attempt has a fresh nonce; the real master's answer is taken.
    assert len(set(nonces)) == 3
    p.core.receive_reply(p.cluster.master.agent_call(out.data, p.now).data, p.now)
    assert p.core.registered and p.core.agent_id == 1


def test_heartbeat_interval_and_jitter_come_from_the_master() -> None:
    p = registered_pair()
    assert p.core.heartbeat_s == 5.0 and p.core.jitter_s == 0.5
    deadlines = []
    for _ in range(20):
        t = p.core.get_timer()
        assert t is not None
        deadlines.append(t - p.now)
        p.step(t - p.now)
        assert p.exchange()
    assert all(4.5 <= d <= 5.5 for d in deadlines)
    assert len({round(d, 3) for d in deadlines}) > 5  # really jittered


def test_launch_runs_once_even_when_commands_are_resent() -> None:
    p = registered_pair()
    launch_one(p)
    # The launch is pushed; the agent takes it, and the reply carrying the ack is lost.
    for data in p.cluster.pushes.pop(1, []):
        p.core.receive_push(data, p.now)
    assert [e.task for e in p.drain() if isinstance(e, LaunchTask)] == [1]
    p.lose_replies = 1
    p.exchange()  # heartbeat(command_ack) reached the master, its reply did not
    # Replayed pushes and re-sent commands change nothing.
    p.step(2)
    p.settle()
    assert len(p.launches()) == 1
    assert states(p) == [TS.STARTING]
    p.core.task_changed(1, TS.RUNNING)
    p.core.task_changed(1, TS.FINISHED, exit_code=0)
    p.settle()
    assert states(p) == [TS.STARTING, TS.RUNNING, TS.FINISHED]
    assert p.core.pending_updates == 0


def test_updates_are_sent_oldest_first_until_acked_and_applied_once() -> None:
    p = registered_pair()
    launch_one(p)
    p.settle()
    p.core.task_changed(1, TS.RUNNING)
    for i in range(5):
        assert p.core.publish(1, b"r%d" % i)
    p.lose_replies = 3  # the first three sends reach the master but their acks are lost
    for _ in range(3):
        p.exchange()
        p.step(p.core.get_timer() - p.now)  # type: ignore[operator]
    p.settle()
    fw = p._fw  # type: ignore[attr-defined]
    assert [o.data for o in fw.outputs] == [b"r%d" % i for i in range(5)]
    assert states(p) == [TS.STARTING, TS.RUNNING]


def test_kill_of_unknown_task_reports_killed_before_launch_and_late_launch_stays_dead() -> None:
    p = registered_pair()
    p.core.receive_push(sign(pb.AgentReply(commands=[
        pb.Command(id=1, kill=pb.Kill(task=9)),
        pb.Command(id=2, launch=pb.Launch(task=9, spec=task_info("x").spec)),
    ]), p.core.secret), p.now)
    assert p.drain() == []
    rec = p.core.tasks[9]
    assert rec.state == TS.KILLED and rec.reason == pb.KILLED_BEFORE_LAUNCH
    assert p.core.command_ack == 2


def test_kill_running_task_asks_the_shell_and_terminal_kill_rereports() -> None:
    p = registered_pair()
    launch_one(p)
    p.settle()
    p.core.task_changed(1, TS.RUNNING)
    secret = p.core.secret
    p.core.receive_push(sign(pb.AgentReply(commands=[pb.Command(id=50, kill=pb.Kill(task=1))]),
                             secret), p.now)
    assert KillTask(1, pb.KILL_REQUESTED) in p.drain()
    p.core.task_changed(1, TS.KILLED, reason=pb.KILL_REQUESTED)
    # A second kill of a terminal task queues its terminal state again.
    before = p.core.pending_updates
    p.core.receive_push(sign(pb.AgentReply(commands=[pb.Command(id=51, kill=pb.Kill(task=1))]),
                             secret), p.now)
    assert p.core.pending_updates == before + 1
    # Exit after kill: the first terminal state wins.
    assert not p.core.task_changed(1, TS.FINISHED)


def test_launch_path_sends_starting_and_running_before_the_command_ack() -> None:
    p = registered_pair()
    launch_one(p)
    p.deliver_pushes()
    assert [type(e) for e in p.drain()] == [LaunchTask]
    assert p.core.dirty  # the launched task is written before anything leaves
    p.core.dirty = False
    p.core.task_changed(1, TS.RUNNING)
    p.core.dirty = False
    p.sent.clear()
    while p.exchange():
        # An acknowledged update being dropped is no reason to write before the next call.
        assert not p.core.dirty or p.sent[-1] == "heartbeat"
        p.core.dirty = False
    assert p.sent == ["update", "update", "heartbeat"]
    assert states(p) == [TS.STARTING, TS.RUNNING]
    call = decode(pb.AgentCall, p.core._register_call().data)  # what a restart would say
    assert call.register.update_next == 3  # both updates are known delivered


def test_command_ack_waits_for_at_most_two_updates() -> None:
    p = registered_pair()
    launch_one(p)
    p.deliver_pushes()
    p.drain()
    for i in range(5):
        p.core.publish(1, b"%d" % i)
    p.sent.clear()
    for _ in range(4):
        p.exchange()
    assert p.sent == ["update", "update", "heartbeat", "update"]
    assert p.core._acked_command_ack == p.core.command_ack


def test_acknowledged_updates_reach_the_checkpoint_with_the_next_steady_heartbeat() -> None:
    p = registered_pair()
    launch_one(p)
    p.settle()
    p.core.dirty = False
    p.core.task_changed(1, TS.RUNNING)
    p.core.dirty = False
    assert p.exchange() and p.sent[-1] == "update" and not p.core.dirty
    assert p.core.snapshot()["updates"] == []  # a write now would already drop it
    p.core.task_changed(1, TS.FINISHED)
    p.core.dirty = False
    assert p.exchange() and not p.core.dirty
    p.step(10)
    assert p.exchange() and p.sent[-1] == "heartbeat"
    assert p.core.dirty  # stale state written after this heartbeat


def test_kill_request_is_checkpointed_before_the_shell_acts_on_it() -> None:
    p = registered_pair()
    launch_one(p)
    p.settle()
    p.core.task_changed(1, TS.RUNNING)
    p.core.dirty = False  # as after the shell's last checkpoint
    p.core.receive_push(sign(pb.AgentReply(commands=[pb.Command(id=50, kill=pb.Kill(task=1))]),
                             p.core.secret), p.now)
    assert p.core.dirty  # the shell writes the checkpoint before it kills
    snap = p.core.snapshot()
    # The agent dies right after writing it: the new process knows the kill was asked for.
    core2 = AgentCore(core_config(), rng=random.Random(2), snapshot=snap)
    rec = core2.tasks[1]
    assert (rec.state, rec.kill_reason, core2.command_ack) == (TS.RUNNING, pb.KILL_REQUESTED, 50)
    assert core2.task_changed(1, TS.KILLED, reason=rec.kill_reason)


@pytest.mark.parametrize("spec, reason", [
    (pb.TaskSpec(micropython=pb.MicroPythonTask()), pb.UNSUPPORTED_EXECUTOR),
    (pb.TaskSpec(resources=pb.Resources(cpus=3), docker=pb.DockerTask(image="x")),
     pb.RESOURCES_UNAVAILABLE),
    (pb.TaskSpec(resources=pb.Resources(devices=[pb.Device(name="cam")]),
                 wasm=pb.WasmTask()), pb.RESOURCES_UNAVAILABLE),
    (pb.TaskSpec(), pb.INVALID_TASK),
])
def test_launch_that_cannot_run_is_error_without_starting(spec: pb.TaskSpec, reason: int
                                                          ) -> None:
    p = registered_pair()
    p.core.receive_push(sign(pb.AgentReply(commands=[
        pb.Command(id=1, launch=pb.Launch(task=3, spec=spec))]), p.core.secret), p.now)
    assert p.drain() == []
    assert p.core.tasks[3].state == TS.ERROR and p.core.tasks[3].reason == reason


def test_restart_from_snapshot_reregisters_with_tasks_and_delivers_pending_updates() -> None:
    p = registered_pair()
    launch_one(p)
    p.settle()
    p.core.task_changed(1, TS.RUNNING)
    p.core.publish(1, b"before crash")
    snap = p.core.snapshot()  # what the shell wrote before the SIGKILL
    # A new process: same identity, same queue.
    core2 = AgentCore(core_config(), rng=random.Random(2), snapshot=snap)
    p2 = Pair(core=core2, cluster=p.cluster)
    p2.start()
    out = core2.next_call(p.now)
    assert out is not None and out.kind == "register"
    reg = decode(pb.AgentCall, out.data)
    assert reg.agent_id == 1 and not reg.register.nonce and reg.mac
    assert [(t.task, t.state) for t in reg.register.tasks] == [(1, TS.STARTING)] or \
        [(t.task, t.state) for t in reg.register.tasks] == [(1, TS.RUNNING)]
    core2._in_flight = None  # discard that probe; settle sends it again
    core2.seq -= 1
    p2.settle()
    fw = p._fw  # type: ignore[attr-defined]
    assert states(p) == [TS.STARTING, TS.RUNNING]
    assert [o.data for o in fw.outputs] == [b"before crash"]


def test_replies_with_bad_mac_or_seq_or_garbage_are_dropped_and_back_off() -> None:
    p = registered_pair()
    p.step(10)
    for bad in (b"\xff\x00garbage",
                sign(pb.AgentReply(seq=p.core.seq + 1), b"x" * 16),
                encode(pb.AgentReply(seq=99))):
        out = p.core.next_call(p.now)
        assert out is not None
        if bad == encode(pb.AgentReply(seq=99)):
            bad = sign(pb.AgentReply(seq=out.seq,
                                     commands=[pb.Command(id=1, reregister=pb.ReRegister())]),
                       b"y" * 16)
        p.core.receive_reply(bad, p.now)
        assert p.core.next_call(p.now) is None  # backing off, nothing applied
        assert p.core.command_ack == 0
        p.step(p.core.get_timer() - p.now)  # type: ignore[operator]
    assert p.core.stats["bad_replies"] == 3
    # A forged push is ignored too.
    p.core.receive_push(sign(pb.AgentReply(commands=[
        pb.Command(id=1, launch=pb.Launch(task=1, spec=task_info("x").spec))]), b"z" * 16),
        p.now)
    assert p.drain() == [] and p.core.command_ack == 0


def test_back_off_doubles_to_the_cap_and_never_stops() -> None:
    p = Pair()
    p.start()
    delays = []
    for _ in range(12):
        out = p.core.next_call(p.now)
        assert out is not None and out.kind == "register"
        p.core.call_failed(p.now)
        t = p.core.get_timer()
        assert t is not None
        delays.append(t - p.now)
        p.step(t - p.now)
    assert 0.9 <= delays[0] <= 1.1
    for a, b in zip(delays[:5], delays[1:6], strict=True):
        assert 1.6 < b / a < 2.5
    assert max(delays) <= 66 and delays[-1] >= 54
    p.settle()
    assert p.core.registered


def test_unknown_identity_registers_afresh_and_orphans_its_tasks() -> None:
    p = registered_pair()
    launch_one(p)
    p.settle()
    snap = p.core.snapshot()
    snap["agent_id"] = 77  # an identity this master never gave out
    core2 = AgentCore(core_config(), rng=random.Random(3), snapshot=snap)
    p2 = Pair(core=core2, cluster=p.cluster)
    p2.start()
    for _ in range(20):  # refused three times (spread by the back-off), then afresh
        p2.settle()
        if core2.registered:
            break
        p2.step(5)
    assert core2.registered and core2.agent_id not in (0, 77)
    assert KillTask(1, pb.AGENT_RESTARTED) in p2.events
    assert core2.tasks == {}


def test_one_forged_refusal_does_not_cost_the_identity() -> None:
    p = registered_pair()
    launch_one(p)
    p.settle()
    identity = (p.core.agent_id, p.core.secret)
    p.core.registered = False  # as after a ReRegister command: re-register with the identity
    out = p.core.next_call(p.now)
    assert out is not None and out.kind == "register"
    forged = encode(pb.AgentReply(error=pb.Error(code=pb.UNAUTHENTICATED, message="no")))
    p.core.receive_reply(forged, p.now)  # an off-path spoofer's unsigned refusal
    for _ in range(10):
        p.settle()
        if p.core.registered:
            break
        p.step(5)
    assert p.core.registered and (p.core.agent_id, p.core.secret) == identity
    assert KillTask(1, pb.AGENT_RESTARTED) not in p.events


def test_publish_queue_is_bounded() -> None:
    p = Pair(core=AgentCore(core_config(max_queued_publishes=3)))
    p.start()
    p.settle()
    p.cluster.master.agent_channel(p.core.agent_id, True)
    launch_one(p)
    p.settle()
    assert [p.core.publish(1, b"x") for _ in range(4)] == [True, True, True, False]
    assert p.core.publish_room() == 0
    assert not p.core.publish(42, b"unknown task")


# --- seq across restarts (issue 10): recorded calls never become valid again


class _Disk:
    """The checkpoint as the shell keeps it: written whenever the core is dirty, before the
    next call leaves (shell._call_loop)."""

    def __init__(self, p: Pair) -> None:
        self.p = p
        self.snap = p.core.snapshot()

    def exchange(self, record: list[bytes] | None = None) -> bool:
        core = self.p.core
        if core.dirty:
            core.dirty = False
            self.snap = core.snapshot()
        out = core.next_call(self.p.now)
        if out is None:
            return False
        if record is not None:
            record.append(out.data)
        self.p.sent.append(out.kind)
        result = self.p.cluster.master.agent_call(out.data, self.p.now, "websocket")
        self.p.cluster.flush()
        core.receive_reply(result.data, self.p.now)
        self.p.deliver_pushes()
        self.p.drain()
        return True

    def settle(self) -> None:
        for _ in range(100):
            if not self.exchange():
                return
        raise AssertionError("agent did not settle")

    def restart(self) -> Pair:
        """SIGKILL and start again from what is on disk."""
        core = AgentCore(core_config(), rng=random.Random(3), snapshot=self.snap)
        self.p = Pair(core=core, cluster=self.p.cluster)
        self.p.start()
        return self.p


def _replay(p: Pair, data: bytes) -> int:
    result = p.cluster.master.agent_call(data, p.now)
    p.cluster.flush()
    return result.error


def test_heartbeat_recorded_before_a_restart_is_refused_after_it() -> None:
    """(a) The restarted agent goes on past every seq it sent, though steady heartbeats do not
    write the checkpoint: an old heartbeat replayed is refused and changes nothing."""
    p = registered_pair()
    disk = _Disk(p)
    recorded: list[bytes] = []
    for _ in range(40):
        p.step(10)
        assert disk.exchange(recorded)
    old_seq = p.core.seq
    p = disk.restart()
    disk.settle()
    assert p.core.registered and p.core.seq > old_seq
    agent = p.cluster.master.agents[p.core.agent_id]
    seen, seq, committed = agent.last_seen, agent.seq, p.cluster.committed
    p.cluster.step(1)
    for data in recorded[-3:]:
        assert _replay(p, data) == pb.UNAUTHENTICATED
    assert (agent.last_seen, agent.seq, p.cluster.committed) == (seen, seq, committed)


def test_reregistration_recorded_before_a_launch_is_refused_and_fails_no_task() -> None:
    """(b) A re-registration listing no tasks, replayed while the task runs, is refused: the
    master does not fail the task as AGENT_RESTARTED."""
    p = registered_pair()
    disk = _Disk(p)
    p.step(10)
    disk.exchange()
    p = disk.restart()
    recorded: list[bytes] = []
    disk.exchange(recorded)  # the re-registration, no tasks
    old = decode(pb.AgentCall, recorded[0])
    assert old.HasField("register") and not old.register.tasks
    disk.settle()
    launch_one(p)
    for _ in range(5):
        disk.settle()
        p.step(1)
    p.core.task_changed(1, TS.RUNNING)
    disk.settle()
    assert states(p) == [TS.STARTING, TS.RUNNING]
    committed = p.cluster.committed
    assert _replay(p, recorded[0]) == pb.UNAUTHENTICATED
    assert p.cluster.committed == committed
    p.step(1)
    disk.settle()
    assert states(p) == [TS.STARTING, TS.RUNNING]
    assert p.cluster.master.agents[p.core.agent_id].state == ACTIVE_STATE


def test_checkpoint_without_a_seq_bound_starts_far_past_its_seq() -> None:
    """An older agent's checkpoint holds the seq of its last write only (steady heartbeats did
    not write it): the agent goes on 65,536 past it, and writes a bound before its first call."""
    p = registered_pair()
    snap = p.core.snapshot()
    del snap["seq_bound"]
    core = AgentCore(core_config(), rng=random.Random(2), snapshot=snap)
    assert core.seq >= snap["seq"] + 65_535 and core.dirty
    assert core.snapshot()["seq_bound"] > core.seq


def test_command_ack_goes_again_after_a_reregistration() -> None:
    """A master that restarted may never have made the agent's last command_ack durable: it
    re-sends those commands, which the agent skips (applied already). So after re-registering
    the agent sends its command_ack again with the next heartbeat (found by
    tests/security: a launch re-sent forever after a master restart)."""
    p = registered_pair()
    launch_one(p)
    p.deliver_pushes()
    p.drain()
    p.core.task_changed(1, TS.RUNNING)
    p.settle()
    assert p.core.command_ack == 1 and p.core._acked_command_ack == 1
    core2 = AgentCore(core_config(), rng=random.Random(2), snapshot=p.core.snapshot())
    p2 = Pair(core=core2, cluster=p.cluster)
    p2.start()
    assert p2.exchange() and p2.sent == ["register"] and core2.registered
    out = core2.next_call(p.now + 60)
    assert out is not None and out.kind == "heartbeat"
    assert decode(pb.AgentCall, out.data).heartbeat.command_ack == 1
