"""The agent side of the core with a fake clock: registration, authentication, heartbeats,
liveness (UNREACHABLE, back, LOST), command delivery and the prototype's agent failures."""

from __future__ import annotations

from typing import Any

from edgerm.wire import decode, derive_secret, encode, pb, sign, token_key, verify
from edgerm_master.testing import (
    Cluster,
    ScriptedAgent,
    ScriptedFramework,
    launch,
    number_of,
    task_state,
)

E = pb.ErrorCode
TS = pb.TaskState


def call(c: Cluster, data: bytes) -> tuple[int, pb.AgentReply]:
    result = c.master.agent_call(data, c.now)
    c.flush()
    return result.error, decode(pb.AgentReply, result.data)


# --- registration and authentication


def test_register_assigns_compact_id_secret_and_heartbeat(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    b = cluster.add_agent(ScriptedAgent("a2"))
    assert (a.agent_id, b.agent_id) == (1, 2)
    assert len(a.secret) == 16 and a.secret != b.secret
    reg = a.replies[0].registered
    assert reg.heartbeat_ms == 10_000 and 0 < reg.jitter_ms <= 10_000
    assert a.bad_macs == 0


def test_wrong_agent_token_is_refused_and_changes_nothing(cluster: Cluster) -> None:
    a = ScriptedAgent("a1", token="nope")
    code, reply = call(cluster, a.register_call())
    assert code == E.UNAUTHENTICATED and "token" in reply.error.message
    assert cluster.master.agents == {}
    assert cluster.committed == 0


def test_first_registration_proves_the_token_without_sending_it(new_cluster: Any) -> None:
    cluster = new_cluster(agent_tokens=["old-token", "agent-token"])
    a = ScriptedAgent("a1")
    data = a.register_call()
    assert b"agent-token" not in data
    code, reply = call(cluster, data)
    assert code == 0 and a.handle_reply(encode(reply)).registered.agent_id == 1
    # The secret is derived from the token that signed and both nonces; it is not on the wire.
    assert a.secret == derive_secret("agent-token", a.nonce, reply.registered.nonce)
    assert cluster.master.agents[1].secret == a.secret and a.secret not in encode(reply)
    assert verify(reply, a.secret) and a.bad_macs == 0
    # The other configured token works too, and gives another secret.
    b = cluster.add_agent(ScriptedAgent("a2", token="old-token"))
    assert b.agent_id == 2 and b.secret not in (a.secret, b"") and b.bad_macs == 0


def test_unsigned_replayed_or_malformed_first_registrations_change_nothing(
        cluster: Cluster) -> None:
    a = ScriptedAgent("a1")
    signed = a.register_call()
    unsigned = decode(pb.AgentCall, signed)
    unsigned.ClearField("mac")
    code, reply = call(cluster, encode(unsigned))
    assert code == E.UNAUTHENTICATED and "token" in reply.error.message
    tampered = decode(pb.AgentCall, signed)
    tampered.register.name = "a-forged"
    code, _ = call(cluster, encode(tampered))
    assert code == E.UNAUTHENTICATED
    assert cluster.master.agents == {} and cluster.committed == 0
    code, _ = call(cluster, signed)
    assert code == 0 and list(cluster.master.agents) == [1]
    # The same bytes again (a recording replayed): refused, no second agent.
    code, reply = call(cluster, signed)
    assert code == E.UNAUTHENTICATED and "replayed" in reply.error.message
    assert list(cluster.master.agents) == [1]
    short = pb.AgentCall(seq=1, register=pb.Register(name="x", protocol_version=1, nonce=b"1"))
    code, reply = call(cluster, sign(short, token_key("agent-token")))
    assert code == E.BAD_REQUEST and "nonce" in reply.error.message
    assert list(cluster.master.agents) == [1]


def test_call_without_agent_id_gets_an_error_not_a_deadlock(cluster: Cluster) -> None:
    """Prototype: a ping without an agent id deadlocked the master."""
    code, reply = call(cluster, encode(pb.AgentCall(seq=1, heartbeat=pb.Heartbeat())))
    assert code == E.UNAUTHENTICATED
    a = cluster.add_agent(ScriptedAgent("a1"))  # the master still serves
    assert a.agent_id == 1


def test_garbage_and_oversized_input(cluster: Cluster) -> None:
    for junk in (b"", b"\xff", b"\xa1\x01", b"\x9f" * 100, b"\xa1\x05\x63abc"):
        code, reply = call(cluster, junk)
        assert code in (E.BAD_REQUEST, E.UNAUTHENTICATED), junk
        assert reply.error.message
    code, reply = call(cluster, b"\xa0" * (cluster.master.config.agent_message_max + 1))
    assert code == E.TOO_LARGE
    assert cluster.master.agents == {}


def test_agent_speaks_only_for_itself(cluster: Cluster) -> None:
    """Prototype: identity was self-declared. A call signed with another agent's id fails."""
    a = cluster.add_agent(ScriptedAgent("a1"))
    b = cluster.add_agent(ScriptedAgent("a2"))
    forged = pb.AgentCall(agent_id=a.agent_id, seq=100, heartbeat=pb.Heartbeat(command_ack=5))
    code, _ = call(cluster, sign(forged, b.secret))
    assert code == E.UNAUTHENTICATED
    unsigned = pb.AgentCall(agent_id=a.agent_id, seq=101, heartbeat=pb.Heartbeat())
    code, _ = call(cluster, encode(unsigned))
    assert code == E.UNAUTHENTICATED
    assert cluster.master.agents[a.agent_id].command_ack == 0


def test_replayed_seq_is_refused(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    data = a.heartbeat_call()
    code, _ = call(cluster, data)
    assert code == 0
    code, reply = call(cluster, data)
    assert code == E.UNAUTHENTICATED and "seq" in reply.error.message


def test_unsupported_protocol_version(cluster: Cluster) -> None:
    a = ScriptedAgent("a1")
    reg = pb.AgentCall(seq=1, register=pb.Register(name="x", protocol_version=2,
                                                   nonce=b"12345678"))
    code, reply = call(cluster, sign(reg, token_key("agent-token")))
    assert code == E.UNSUPPORTED
    assert not a.agent_id and cluster.master.agents == {}


def test_replies_are_signed(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    cluster.exchange(a)
    assert a.replies[-1].mac and a.bad_macs == 0


# --- re-registration


def test_restarted_agent_keeps_identity_and_tasks(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1")
    a.restart(keep_tasks=True)
    cluster.settle(a)
    assert a.agent_id == 1 and len(cluster.master.agents) == 1
    assert task_state(cluster, fw, "t1") == TS.RUNNING
    assert a.starts[number_of(cluster, fw, "t1")] == 1


def test_restarted_agent_without_its_task_fails_it(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1")
    a.restart(keep_tasks=False)
    cluster.settle(a)
    assert task_state(cluster, fw, "t1") == TS.FAILED
    assert fw.updates[-1].reason == pb.AGENT_RESTARTED


def test_reregistration_kills_tasks_the_master_does_not_know(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    a.tasks[77] = TS.RUNNING
    a.restart()
    cluster.settle(a)
    assert a.tasks[77] == TS.KILLED


def test_staging_task_is_relaunched_once_after_agent_restart(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1", settle=False)
    # The agent restarts before it got the launch; the launch is still queued.
    a.restart()
    cluster.settle(a)
    n = number_of(cluster, fw, "t1")
    assert a.starts[n] == 1 and task_state(cluster, fw, "t1") == TS.RUNNING


def test_heartbeat_recorded_before_an_agent_restart_is_refused_after_it(cluster: Cluster) -> None:
    """(issue 10) The restarted agent re-registers past every seq it used, so an old recorded
    heartbeat (steady: the fast path) stays stale instead of becoming valid again."""
    a = cluster.add_agent(ScriptedAgent("a1"))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1")
    for _ in range(5):
        cluster.exchange(a)
    old = a.heartbeat_call()  # recorded, never delivered
    cluster.exchange(a)
    a.restart()
    cluster.settle(a)
    agent = cluster.master.agents[a.agent_id]
    seq, seen, committed = agent.seq, agent.last_seen, cluster.committed
    cluster.step(5.0)
    code, reply = call(cluster, old)
    assert code == E.UNAUTHENTICATED and "seq" in reply.error.message
    assert (agent.seq, agent.last_seen, cluster.committed) == (seq, seen, committed)
    assert task_state(cluster, fw, "t1") == TS.RUNNING


def test_replayed_reregistration_is_refused_and_fails_no_task(cluster: Cluster) -> None:
    """(issue 10) A recorded re-registration listing no tasks, replayed while a task runs, is
    refused: the task is not failed as AGENT_RESTARTED, nothing is committed."""
    a = cluster.add_agent(ScriptedAgent("a1"))
    a.restart()
    old = a.next_call()  # a signed re-registration, no tasks; recorded, never delivered
    assert decode(pb.AgentCall, old).HasField("register") and not a.tasks
    cluster.settle(a)  # the agent re-registers again (past `old`) and carries on
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1")
    assert task_state(cluster, fw, "t1") == TS.RUNNING
    agent = cluster.master.agents[a.agent_id]
    seq, committed, updates = agent.seq, cluster.committed, len(fw.updates)
    code, reply = call(cluster, old)
    assert code == E.UNAUTHENTICATED and "seq" in reply.error.message
    assert task_state(cluster, fw, "t1") == TS.RUNNING
    assert (agent.seq, cluster.committed, len(fw.updates)) == (seq, committed, updates)
    # The same holds for a replay of the re-registration the master did accept.
    cluster.exchange(a)
    a.need_register = True
    taken = a.next_call()
    assert cluster.master.agent_call(taken, cluster.now).error == 0
    cluster.flush()
    code, _ = call(cluster, taken)
    assert code == E.UNAUTHENTICATED
    assert task_state(cluster, fw, "t1") == TS.RUNNING


# --- heartbeats, commands, liveness


def test_commands_ride_on_the_heartbeat_reply(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1", settle=False)
    reply = cluster.send(a, a.heartbeat_call())
    assert [c.WhichOneof("command") for c in reply.commands] == ["launch"]
    # Until acknowledged it is re-sent in every reply, with the same id.
    a.applied = a.acked_applied = 0
    a.tasks.clear()
    assert not cluster.send(a, a.heartbeat_call()).commands  # not again at once...
    cluster.step(1.0)
    again = cluster.send(a, a.heartbeat_call())  # ...but after command_resend_s
    assert again.commands[0].id == reply.commands[0].id


def test_commands_are_pushed_on_an_open_channel(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    cluster.master.agent_channel(a.agent_id, True)
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1", settle=False)
    pushed = cluster.pushes[a.agent_id]
    assert len(pushed) == 1
    reply = a.handle_reply(pushed[0])
    assert reply.seq == 0 and reply.commands[0].launch.task == number_of(cluster, fw, "t1")
    assert a.bad_macs == 0


def test_max_payload_splits_commands_over_replies(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1", max_payload=120))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, *[f"t{i}" for i in range(6)], cpus=0.1, mem_mb=1, settle=False)
    reply = cluster.send(a, a.heartbeat_call())
    assert 1 <= len(reply.commands) < 6
    cluster.settle(a)
    assert len(a.running()) == 6


def test_unreachable_then_back_within_lost_after(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1")
    cluster.step(29)
    assert task_state(cluster, fw, "t1") == TS.RUNNING
    cluster.step(2)  # 3 missed heartbeats of 10 s
    assert cluster.master.agents[a.agent_id].state == 1
    assert task_state(cluster, fw, "t1") == TS.UNREACHABLE
    assert fw.updates[-1].state == TS.UNREACHABLE and fw.updates[-1].reason == pb.AGENT_UNREACHABLE
    # Its resources left the offers: no offer on it while it is away.
    cluster.ack_all(fw)
    cluster.step(5)
    assert not any(o.agent_id == a.agent_id for o in fw.offers.values())
    assert not any(o.agent_id == a.agent_id for o in cluster.master.offers.values())
    cluster.settle(a)
    cluster.ack_all(fw)
    assert task_state(cluster, fw, "t1") == TS.RUNNING
    assert a.starts[number_of(cluster, fw, "t1")] == 1  # no relaunch
    assert fw.states("t1")[-2:] == [TS.UNREACHABLE, TS.RUNNING]


def test_lost_after_window_tasks_lost_and_framework_told(cluster: Cluster) -> None:
    """Prototype: no LOST state; tasks on a dead agent stayed RUNNING forever."""
    a = cluster.add_agent(ScriptedAgent("a1"))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1")
    cluster.step(31)
    cluster.ack_all(fw)
    cluster.step(61)
    cluster.ack_all(fw)
    assert fw.states("t1")[-2:] == [TS.UNREACHABLE, TS.LOST]
    assert fw.updates[-1].reason == pb.AGENT_LOST
    # The agent comes back: it must re-register, and its old task is killed there.
    cluster.settle(a)
    assert cluster.master.agents[a.agent_id].state == 0
    assert a.tasks[number_of(cluster, fw, "t1")] == TS.KILLED


def test_heartbeat_resource_change_updates_offers(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    fw = cluster.subscribe(ScriptedFramework())
    old = next(iter(fw.offers))
    cluster.send(a, a.heartbeat_call(resources=pb.Resources(cpus=1, mem_mb=100)))
    assert old not in fw.offers  # rescinded
    cluster.step(1.0)
    assert [o.resources.cpus for o in fw.offers.values()] == [1]


def test_update_ids_apply_once_and_in_order(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1", auto_run=False))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1")
    n = number_of(cluster, fw, "t1")
    a.run(n)
    head = a.queue[0]
    data = a.next_call()
    cluster.send(a, data)
    # A replay of the same update with a new seq is acknowledged, not applied twice.
    a.queue.appendleft(head)
    cluster.exchange(a)
    cluster.ack_all(fw)
    assert fw.states("t1").count(TS.RUNNING) == 1
    # An update from the future (gap) is ignored until the missing one arrives.
    gap = pb.AgentCall(status=pb.StatusUpdate(update_id=a.next_update + 5, task=n,
                                              state=TS.FINISHED))
    a.queue.append(gap)
    cluster.exchange(a)
    assert task_state(cluster, fw, "t1") == TS.RUNNING


def test_agent_cannot_report_master_only_states(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1")
    a.report(number_of(cluster, fw, "t1"), TS.LOST)
    cluster.settle(a)
    assert task_state(cluster, fw, "t1") == TS.RUNNING
    assert not a.queue  # acknowledged so the agent is not stuck


def test_publish_reaches_framework_in_order(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent("a1"))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, a, "t1")
    n = number_of(cluster, fw, "t1")
    for i in range(3):
        a.publish(n, b"r%d" % i, "temp")
    cluster.settle(a)
    assert [(o.seq, o.data) for o in fw.outputs] == [(1, b"r0"), (2, b"r1"), (3, b"r2")]
