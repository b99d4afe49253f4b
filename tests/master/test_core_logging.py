"""What the master core logs (sans-IO: the stdlib `logging` module, caught with caplog): every
registration, re-registration, refusal, subscription, task and agent state change, once each,
with its facts as `extra=` fields; refusal floods rate-limited but counted; nothing per steady
heartbeat."""

from __future__ import annotations

import logging

import pytest

from edgerm.wire import decode, encode, pb
from edgerm_master.testing import Cluster, ScriptedAgent, ScriptedFramework, launch

TS = pb.TaskState


def events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


def messages(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


@pytest.fixture(autouse=True)
def _info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edgerm.master")


def test_registration_and_re_registration_are_logged_once_with_the_peer(
        cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    agent = ScriptedAgent("pi-kitchen")
    result = cluster.master.agent_call(agent.register_call(), cluster.now, "coap",
                                       "192.0.2.7:5683")
    cluster.flush()
    agent.handle_reply(result.data)
    [reg] = events(caplog, "agent_registered")
    assert reg.name == "edgerm.master.agents" and reg.levelno == logging.INFO
    assert reg.agent_id == agent.agent_id and reg.peer == "192.0.2.7:5683"  # type: ignore[attr-defined]
    assert "'pi-kitchen' registered over coap from 192.0.2.7:5683" in reg.getMessage()
    cluster.settle(agent)
    agent.restart()
    cluster.settle(agent)
    [rereg] = events(caplog, "agent_reregistered")
    assert f"agent {agent.agent_id} 'pi-kitchen' re-registered" in rereg.getMessage()
    assert len(events(caplog, "agent_registered")) == 1


def test_steady_heartbeats_log_nothing(cluster: Cluster,
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="edgerm.master")
    agent = cluster.add_agent(ScriptedAgent())
    caplog.clear()
    for _ in range(50):
        cluster.step(1.0)
        cluster.exchange(agent)
    assert caplog.records == []


def test_wrong_token_is_refused_with_reason_and_peer(
        cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    agent = ScriptedAgent(token="not-the-token")
    cluster.master.agent_call(agent.register_call(), cluster.now, "websocket", "198.51.100.4:4000")
    [refused] = events(caplog, "agent_refused")
    assert refused.levelno == logging.WARNING and refused.peer == "198.51.100.4:4000"  # type: ignore[attr-defined]
    assert refused.code == "UNAUTHENTICATED"  # type: ignore[attr-defined]
    assert "at 198.51.100.4:4000: UNAUTHENTICATED: first registration not signed" in \
        refused.getMessage()


def test_a_refusal_flood_is_rate_limited_and_counted(
        cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    agent = ScriptedAgent(token="not-the-token")
    for _ in range(500):
        cluster.master.agent_call(agent.register_call(), cluster.now, "coap", "203.0.113.9:1")
        cluster.now += 0.001
    lines = events(caplog, "agent_refused")
    assert 1 <= len(lines) <= 10
    assert events(caplog, "refusals_suppressed") == []
    cluster.step(11.0)  # the window ends: the rest is summed up, not silenced
    [summary] = events(caplog, "refusals_suppressed")
    assert summary.count == 500 - len(lines)  # type: ignore[attr-defined]
    assert "UNAUTHENTICATED" in summary.getMessage()
    cluster.step(11.0)
    assert len(events(caplog, "refusals_suppressed")) == 1


def test_subscription_refusal_task_states_and_removal(
        cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    agent = cluster.add_agent(ScriptedAgent())
    intruder = ScriptedFramework(token="")
    cluster.connect(intruder)
    conn = cluster.fw_conn[id(intruder)]
    cluster.master.framework_call(conn, intruder.subscribe(), cluster.now, "192.0.2.1:999")
    [refused] = events(caplog, "framework_refused")
    assert "no framework token given" in refused.getMessage()
    assert refused.peer == "192.0.2.1:999"  # type: ignore[attr-defined]

    fw = cluster.subscribe(ScriptedFramework("sampler"))
    [sub] = events(caplog, "framework_subscribed")
    assert sub.framework_id == fw.framework_id  # type: ignore[attr-defined]
    assert "'sampler' (role *, principal default) subscribed" in sub.getMessage()
    launch(cluster, fw, agent, "t1")
    states = [(r.task_id, r.state) for r in events(caplog, "task_state")]  # type: ignore[attr-defined]
    assert states == [("t1", "STAGING"), ("t1", "STARTING"), ("t1", "RUNNING")]
    cluster.call(fw, fw.teardown())
    cluster.settle(agent)
    assert [r.state for r in events(caplog, "task_state")][3:] == ["KILLING", "KILLED"]  # type: ignore[attr-defined]
    assert len(events(caplog, "framework_removed")) == 1
    assert len(events(caplog, "framework_forgotten")) == 1


def test_unreachable_reachable_and_lost_are_logged_once(
        cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    agent = cluster.add_agent(ScriptedAgent("edge-1"))
    fw = cluster.subscribe(ScriptedFramework())
    launch(cluster, fw, agent, "t1")
    cfg = cluster.master.config
    cluster.step(cfg.unreachable_after_s + 1)
    [unreachable] = events(caplog, "agent_unreachable")
    assert unreachable.levelno == logging.WARNING and "'edge-1' is UNREACHABLE" in \
        unreachable.getMessage()
    assert [r.state for r in events(caplog, "task_state")][-1] == "UNREACHABLE"  # type: ignore[attr-defined]
    cluster.exchange(agent)
    assert len(events(caplog, "agent_reachable")) == 1
    cluster.step(cfg.unreachable_after_s + 1)
    cluster.step(cfg.lost_after_s + 1)
    [lost] = events(caplog, "agent_lost")
    assert "is LOST" in lost.getMessage() and "1 tasks are LOST" in lost.getMessage()
    assert len(events(caplog, "agent_unreachable")) == 2
    assert [r.state for r in events(caplog, "task_state")][-1] == "LOST"  # type: ignore[attr-defined]


def test_operator_refusal_says_no_token_given(cluster: Cluster,
                                             caplog: pytest.LogCaptureFixture) -> None:
    code, data = cluster.master.cluster_state(encode(pb.StateRequest()), cluster.now,
                                              "192.0.2.3:5")
    assert code == pb.UNAUTHENTICATED
    assert decode(pb.Error, data).message.startswith("no operator token given")
    [refused] = events(caplog, "state_refused")
    assert "192.0.2.3:5" in refused.getMessage()
