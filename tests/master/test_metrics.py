"""The master's Prometheus metrics (metrics.py) after a scripted scenario: names, labels and
values, read back through prometheus_client's own parser of the text format."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from edgerm.wire import pb
from edgerm_master import metrics
from edgerm_master.metrics import Histogram, MasterCollector, ShellMetrics, master_registry
from edgerm_master.testing import Cluster, ScriptedAgent, ScriptedFramework, launch

TS = pb.TaskState


def scrape(collector: MasterCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of one scrape, via the text format."""
    text = metrics.render(master_registry(collector)).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def os_attr(text: str) -> list[pb.Attribute]:
    return [pb.Attribute(name="os", text=text)]


def test_histogram_buckets_are_cumulative_with_prometheus_le() -> None:
    h = Histogram((0.001, 0.01, 0.1))
    for v in (0.0005, 0.001, 0.002, 0.05, 3.0):
        h.observe(v)
    # le is inclusive: 0.001 falls in the 0.001 bucket.
    assert h.buckets() == [("0.001", 2.0), ("0.01", 3.0), ("0.1", 4.0), ("+Inf", 5.0)]
    assert h.count == 5 and abs(h.sum - 3.0535) < 1e-9


def test_agent_kind_comes_from_the_os_attribute_and_is_bounded() -> None:
    from edgerm_master.state import agent_kind

    def kind(*attrs: pb.Attribute) -> str:
        return agent_kind(pb.Register(name="a", attributes=list(attrs)))

    assert kind(*os_attr("linux-6.1.0-18-amd64")) == "linux"
    assert kind(*os_attr("micropython")) == "micropython"
    assert kind(*os_attr("zephyr")) == "zephyr"
    assert kind(*os_attr("x" * 50)) == "other"  # agents cannot mint label values
    assert kind() == "unknown"


def test_a_scripted_scenario_gives_the_right_names_labels_and_values(cluster: Cluster) -> None:
    c = cluster
    linux1 = c.add_agent(ScriptedAgent("l1", attributes=os_attr("linux-6.1")))
    linux2 = c.add_agent(ScriptedAgent("l2", attributes=os_attr("linux-6.1")))
    c.add_agent(ScriptedAgent("m1", resources=pb.Resources(cpus=1, mem_mb=64),
                              attributes=os_attr("micropython")))
    shell = ShellMetrics()
    collector = MasterCollector(c.master, shell)
    before = scrape(collector)
    assert before[("edgerm_agents", (("kind", "linux"), ("state", "active")))] == 2
    assert before[("edgerm_agents", (("kind", "micropython"), ("state", "active")))] == 1
    # A state no agent is in is there with 0, so a query for it gives 0, not nothing.
    assert before[("edgerm_agents", (("kind", ""), ("state", "lost")))] == 0
    assert before[("edgerm_resources_capacity", (("kind", "cpus"),))] == 9
    assert before[("edgerm_resources_capacity", (("kind", "ports"),))] == 200

    # Heartbeats: 5 over CoAP, 3 over WebSocket (each a call too).
    calls0 = before[("edgerm_agent_calls_total", (("transport", "coap"),))]
    hb0 = before[("edgerm_agent_heartbeats_total", (("transport", "coap"),))]
    for _ in range(5):
        c.send(linux1, linux1.heartbeat_call())
    for _ in range(3):
        c.send(linux2, linux2.heartbeat_call(), transport="websocket")
    # Two refusals: a wrong token, garbage.
    c.master.agent_call(ScriptedAgent(token="wrong").register_call(), c.now, "coap", "x:1")
    c.master.agent_call(b"\xff\x00garbage", c.now, "coap", "x:1")

    fw = c.subscribe(ScriptedFramework("fw"))
    launch(c, fw, linux1, "t1", "t2", cpus=1.0, mem_mb=128.0)
    linux1.finish(2)
    c.settle(linux1)
    c.ack_all(fw)
    c.step(1.0)  # an allocation round: offers on what is free

    # The micro agent goes silent: UNREACHABLE.
    for _ in range(int(c.master.config.unreachable_after_s) + 2):
        c.step(1.0)
        c.send(linux1, linux1.heartbeat_call())
        c.send(linux2, linux2.heartbeat_call())
    shell.call_latency["coap"].observe(0.0002)
    shell.commit_latency.observe(0.004)
    shell.allocation.observe(0.0003)
    shell.ws_opened("/framework")

    m = scrape(collector)
    assert m[("edgerm_agents", (("kind", "linux"), ("state", "active")))] == 2
    assert m[("edgerm_agents", (("kind", "micropython"), ("state", "unreachable")))] == 1
    assert ("edgerm_agents", (("kind", "micropython"), ("state", "active"))) not in m
    assert m[("edgerm_tasks", (("state", "RUNNING"),))] == 1
    assert m[("edgerm_tasks", (("state", "FINISHED"),))] == 1
    assert m[("edgerm_frameworks", (("connected", "true"),))] == 1
    assert m[("edgerm_tasks_launched_total", ())] == 2

    heartbeats = 5 + 2 * (int(c.master.config.unreachable_after_s) + 2)
    assert m[("edgerm_agent_heartbeats_total", (("transport", "coap"),))] >= hb0 + heartbeats
    assert m[("edgerm_agent_heartbeats_total", (("transport", "websocket"),))] == 3
    assert m[("edgerm_agent_calls_total", (("transport", "websocket"),))] == 3
    assert m[("edgerm_agent_calls_total", (("transport", "coap"),))] >= calls0 + heartbeats + 2
    assert m[("edgerm_refusals_total", (("reason", "UNAUTHENTICATED"),
                                        ("subject", "agents")))] == 1
    assert m[("edgerm_refusals_total", (("reason", "BAD_REQUEST"), ("subject", "agents")))] == 1

    # Resources: the unreachable agent's are out of the capacity; t1 holds 1 cpu, 128 MB; the
    # rest of the two Linux agents is on offer to the one framework.
    assert m[("edgerm_resources_capacity", (("kind", "cpus"),))] == 8
    assert m[("edgerm_resources_used", (("kind", "cpus"),))] == 1
    assert m[("edgerm_resources_used", (("kind", "mem_mb"),))] == 128
    assert m[("edgerm_resources_offered", (("kind", "cpus"),))] == 7
    assert m[("edgerm_offers", ())] == len(c.master.offers) > 0

    assert m[("edgerm_agent_call_duration_seconds_count", (("transport", "coap"),))] == 1
    assert m[("edgerm_agent_call_duration_seconds_bucket",
              (("le", "0.00025"), ("transport", "coap")))] == 1
    assert m[("edgerm_agent_call_duration_seconds_bucket",
              (("le", "0.0001"), ("transport", "coap")))] == 0
    assert m[("edgerm_store_commit_duration_seconds_sum", ())] == 0.004
    assert m[("edgerm_allocation_round_duration_seconds_count", ())] == 1
    assert m[("edgerm_websocket_connections", (("path", "/framework"),))] == 1
    assert m[("edgerm_websocket_connections", (("path", "/agent"),))] == 0


def test_sensor_readings_are_not_exported(cluster: Cluster) -> None:
    c = cluster
    agent = c.add_agent(ScriptedAgent("s", attributes=os_attr("zephyr"), resources=pb.Resources(
        cpus=1, mem_mb=64, devices=[pb.Device(name="temp", kind=pb.SENSOR, unit="Cel")])))
    fw = c.subscribe(ScriptedFramework())
    launch(c, fw, agent, "sampler", cpus=0.5, mem_mb=16)
    number = next(iter(agent.running()))
    agent.publish(number, b'{"temp": 21.75}', topic="temp")
    c.settle(agent)
    text = metrics.render(master_registry(MasterCollector(c.master, ShellMetrics()))).decode()
    assert "21.75" not in text and "temp\"" not in text.replace('kind="device:temp"', "")
    # The device is a resource (units), which is the operator's business; its reading is not.
    m = scrape(MasterCollector(c.master))
    assert m[("edgerm_resources_capacity", (("kind", "device:temp"),))] == 1


def test_resource_kinds_are_bounded(cluster: Cluster) -> None:
    c = cluster
    c.add_agent(ScriptedAgent("many", resources=pb.Resources(
        cpus=1, mem_mb=64,
        custom=[pb.CustomResource(name=f"r{i:03d}", scalar=1.0) for i in range(200)])))
    m = scrape(MasterCollector(c.master))
    kinds = {labels[0][1] for (name, labels) in m if name == "edgerm_resources_capacity"}
    assert len(kinds) == metrics.MAX_KINDS and {"cpus", "mem_mb"} <= kinds
