"""The agent core and a master that refuses it: the refusal comes out as a `Refused` event for
the shell to log (with the master's reason and when the core tries again), and a refused first
registration is retried after the back-off, not at once."""

from __future__ import annotations

import random

from edgerm.wire import pb
from edgerm_agent.core import AgentCore
from edgerm_agent.events import Refused

from .pair import Pair, core_config


def test_a_wrong_token_is_a_refused_event_and_backs_off() -> None:
    p = Pair(AgentCore(core_config(token="not-the-token"), rng=random.Random(1)))
    p.start()
    retries = []
    for _ in range(4):
        assert p.exchange()
        [ev] = [e for e in p.drain() if isinstance(e, Refused)]
        assert (ev.call, ev.code, ev.fresh) == ("register", pb.UNAUTHENTICATED, True)
        assert "not signed with an agent token of this master" in ev.message
        assert ev.retry_at is not None
        # Nothing goes out before the back-off ends: no fast retry loop.
        assert p.core.next_call(p.now) is None
        retries.append(ev.retry_at - p.now)
        p.cluster.now = ev.retry_at
        p.core.handle_timer(p.now)
    # 1 s, 2 s, 4 s, 8 s (±10 %): the back-off grows.
    for got, want in zip(retries, [1.0, 2.0, 4.0, 8.0], strict=True):
        assert 0.9 * want <= got <= 1.1 * want, retries
    assert not p.core.registered


def test_a_standby_refusal_advises_a_move_and_the_move_re_registers_with_the_tasks() -> None:
    """Issue 12: NOT_LEADER -> SwitchMaster naming the leader, retried at once; after
    `master_changed` the agent re-registers with its identity and its running task (no
    relaunch, the same update counter)."""
    from edgerm.wire import decode, encode
    from edgerm_agent.events import LaunchTask, SwitchMaster

    from .test_core import launch_one, registered_pair

    p = registered_pair()
    launch_one(p)
    p.settle()
    [launch] = [e for e in p.events if isinstance(e, LaunchTask)]
    p.core.task_changed(launch.task, pb.RUNNING)
    p.settle()
    agent_id, secret = p.core.agent_id, p.core.secret
    p.step(30)
    out = p.core.next_call(p.now)
    assert out is not None
    p.core.receive_reply(encode(pb.AgentReply(seq=out.seq, error=pb.Error(
        code=pb.NOT_LEADER, message="standby", leader="coap://10.0.0.9:5683"))), p.now)
    events = p.drain()
    assert SwitchMaster("coap://10.0.0.9:5683") in events
    [refused] = [e for e in events if isinstance(e, Refused)]
    assert refused.code == pb.NOT_LEADER and refused.retry_at == p.now   # at once
    p.core.master_changed(p.now)
    out = p.core.next_call(p.now)
    assert out is not None and out.kind == "register"
    call = decode(pb.AgentCall, out.data)
    assert call.agent_id == agent_id and not call.register.nonce   # same identity
    assert [(t.task, t.state) for t in call.register.tasks] == [(launch.task, pb.RUNNING)]
    assert p.core.secret == secret and p.core.tasks[launch.task].state == pb.RUNNING
    # A refusal naming no leader backs off (masters in the middle of an election).
    p.core.receive_reply(encode(pb.AgentReply(seq=out.seq, error=pb.Error(
        code=pb.NOT_LEADER))), p.now)
    assert SwitchMaster("") in p.drain()
    assert p.core.next_call(p.now) is None
