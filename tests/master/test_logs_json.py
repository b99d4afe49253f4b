"""Every event the master logs, once, with its fields, as JSON lines (the `--log-format json`
formatter on the `edgerm.master` loggers, driven through the sans-IO core), and the log
helpers the shell and the HA code call (store errors, failover)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from edgerm.logformat import JsonFormatter
from edgerm_master import logs
from edgerm_master.testing import Cluster, ScriptedAgent, ScriptedFramework, launch


class JsonLines:
    def __init__(self, out: io.StringIO) -> None:
        self.out = out

    def all(self) -> list[dict[str, Any]]:
        lines = self.out.getvalue().splitlines()
        return [json.loads(line) for line in lines]  # every line is one JSON object

    def events(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.all() if e.get("event") == event]


@pytest.fixture
def jlog() -> Iterator[JsonLines]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("edgerm.master")
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield JsonLines(out)
    log.removeHandler(handler)
    log.setLevel(level)
    log.propagate = propagate


def test_each_event_once_with_its_fields(cluster: Cluster, jlog: JsonLines) -> None:
    c = cluster
    agent = ScriptedAgent("edge-1")
    agent.handle_reply(c.master.agent_call(agent.register_call(), c.now, "coap",
                                           "192.0.2.7:5683").data)
    c.flush()
    c.settle(agent)
    [reg] = jlog.events("agent_registered")
    assert reg["level"] == "INFO" and reg["logger"] == "edgerm.master.agents"
    assert (reg["agent_id"], reg["agent_name"], reg["transport"], reg["peer"]) == (
        agent.agent_id, "edge-1", "coap", "192.0.2.7:5683")

    agent.restart()
    c.settle(agent)
    [rereg] = jlog.events("agent_reregistered")
    assert rereg["agent_id"] == agent.agent_id

    c.master.agent_call(ScriptedAgent(token="wrong").register_call(), c.now, "coap",
                        "203.0.113.5:40000")
    [refused] = jlog.events("agent_refused")
    assert refused["level"] == "WARNING" and refused["peer"] == "203.0.113.5:40000"
    assert refused["code"] == "UNAUTHENTICATED" and "agent token" in refused["msg"]

    fw = ScriptedFramework("sampler")
    conn = c.connect(fw)
    c.master.framework_call(conn, fw.subscribe(), c.now, "198.51.100.2:5000")
    c.flush()
    [sub] = jlog.events("framework_subscribed")
    assert (sub["framework_id"], sub["framework_name"], sub["peer"]) == (
        fw.framework_id, "sampler", "198.51.100.2:5000")

    launch(c, fw, agent, "t1")
    states = [(e["task_id"], e["state"]) for e in jlog.events("task_state")]
    assert states == [("t1", "STAGING"), ("t1", "STARTING"), ("t1", "RUNNING")]

    c.step(c.master.config.unreachable_after_s + 1)
    [unreachable] = jlog.events("agent_unreachable")
    assert unreachable["agent_id"] == agent.agent_id and unreachable["level"] == "WARNING"
    c.step(c.master.config.lost_after_s + 1)
    [lost] = jlog.events("agent_lost")
    assert lost["agent_id"] == agent.agent_id
    assert [e["state"] for e in jlog.events("task_state")][3:] == ["UNREACHABLE", "LOST"]
    # Nothing above was logged twice: one registration, one re-registration, ...
    assert len(jlog.events("agent_registered")) == 1
    assert len(jlog.events("framework_subscribed")) == 1


def test_an_offer_decline_storm_is_logged_once(cluster: Cluster, jlog: JsonLines) -> None:
    c = cluster
    for i in range(10):
        c.add_agent(ScriptedAgent(f"a{i}"))
    fw = c.subscribe(ScriptedFramework("picky"))
    declined = 0
    for _ in range(30):  # 10 offers a round, each declined at once: 300 in 30 s
        c.step(1.0)
        offers = list(fw.offers)
        declined += len(offers)
        c.call(fw, fw.decline(offers, refuse_seconds=0.5))
    assert declined >= 2 * logs.DECLINE_STORM_OFFERS
    [storm] = jlog.events("offer_decline_storm")
    assert storm["level"] == "WARNING" and storm["framework_id"] == fw.framework_id
    assert storm["declined"] >= logs.DECLINE_STORM_OFFERS and "suppress" in storm["msg"]
    assert jlog.events("offer_decline_storm_over") == []
    # The framework stops declining: a window later the storm is over, said once.
    c.call(fw, fw.suppress())
    c.step(logs.DECLINE_STORM_WINDOW_S + 1)
    c.step(logs.DECLINE_STORM_WINDOW_S + 1)
    [over] = jlog.events("offer_decline_storm_over")
    assert over["declined"] == declined
    assert len(jlog.events("offer_decline_storm")) == 1


def test_a_few_declines_are_no_storm(cluster: Cluster, jlog: JsonLines) -> None:
    c = cluster
    c.add_agent(ScriptedAgent())
    fw = c.subscribe(ScriptedFramework())
    for _ in range(20):
        c.step(1.0)
        c.call(fw, fw.decline(list(fw.offers), refuse_seconds=0.5))
    assert jlog.events("offer_decline_storm") == []


def test_store_error_and_failover_helpers(jlog: JsonLines) -> None:
    try:
        raise OSError(28, "No space left on device")
    except OSError as e:
        logs.log_store_error("committing 3 records", e, backend="sqlite")
    [err] = jlog.events("store_error")
    assert err["level"] == "ERROR" and err["logger"] == "edgerm.master.store"
    assert err["operation"] == "committing 3 records" and err["backend"] == "sqlite"
    assert "No space left on device" in err["error"]


def test_refusals_are_counted_by_subject_and_reason() -> None:
    r = logs.RefusalLog()
    for i in range(30):
        r.log(logs.log_agents, logging.WARNING, 1.0 + i, "no", {"code": "UNAUTHENTICATED"})
    r.log(logs.log_coap, logging.WARNING, 1.0, "bad", {"code": "MALFORMED"}, noun="bad datagrams")
    assert r.counts == {("agents", "UNAUTHENTICATED"): 30, ("coap", "MALFORMED"): 1}


def test_the_registration_json_line_carries_no_secret(cluster: Cluster, jlog: JsonLines) -> None:
    agent = cluster.add_agent(ScriptedAgent("quiet", token="agent-token"))
    text = jlog.out.getvalue()
    assert "agent-token" not in text and agent.secret.hex() not in text
