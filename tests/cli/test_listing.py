"""The listings (edgerm_cli.listing) of the fake master's state resource: tables and JSON."""

from __future__ import annotations

import io
import json

import edgerm_cli as cli
import edgerm_cli.listing as cli_listing
import edgerm_cli.main as cli_main
from edgerm.wire import pb


def cluster_state() -> pb.ClusterState:
    state = pb.ClusterState(now=1000.0, version="test")
    agent = state.agents.add(agent_id=1, name="pi-1", state="active", last_seen=998.0,
                             transport="websocket", executors=[pb.WASM, pb.DOCKER])
    agent.total.cpus, agent.total.mem_mb = 4, 1024
    agent.used.cpus = 0.5
    agent.total.devices.add(name="temp", kind=pb.SENSOR)
    agent.attributes.add(name="os", text="linux")
    state.frameworks.add(framework_id="fw-1", name="sampler", connected=True, tasks=1,
                         weight=1, dominant_share=0.125, principal="analytics")
    state.tasks.add(task_id="t1", framework_id="fw-1", agent_id=1, name="sample",
                    state=pb.RUNNING, executor=pb.WASM)
    offer = state.offers.add(offer_id="o1", agent_id=1, agent_name="pi-1", expires_in_s=4)
    offer.resources.cpus = 3.5
    # As the master lists them: the agent's id only; its name and executors are in `agents`.
    state.offers.add(offer_id="o2", agent_id=1, expires_in_s=4)
    return state


async def test_listings_as_tables_and_json(fake_master) -> None:
    fake_master.state = cluster_state()
    outputs = {}
    for what in ("agents", "frameworks", "tasks", "offers"):
        out = io.StringIO()
        args = cli_main.build_parser().parse_args([what, "--master", fake_master.url,
                                                   "--operator-token", "op-token"])
        assert await cli_listing.list_command(args, out) == 0
        outputs[what] = out.getvalue().splitlines()
    assert outputs["agents"][0].split()[:3] == ["ID", "NAME", "STATE"]
    assert outputs["agents"][1].split()[:8] == ["1", "pi-1", "active", "websocket", "0.5/4",
                                                "0/1024", "temp", "WASM,DOCKER"]
    assert "os=linux" in outputs["agents"][1]
    assert outputs["frameworks"][0].split()[:4] == ["ID", "NAME", "PRINCIPAL", "ROLE"]
    assert outputs["frameworks"][1].split() == ["fw-1", "sampler", "analytics", "-", "yes", "1",
                                                "1", "0.125"]
    assert outputs["tasks"][1].split()[:6] == ["t1", "fw-1", "1", "sample", "WASM", "RUNNING"]
    assert outputs["offers"][1].startswith("o1")
    assert outputs["offers"][2].split()[:3] == ["o2", "1", "pi-1"]
    assert outputs["offers"][2].split()[-2:] == ["WASM,DOCKER", "4.0s"]
    out = io.StringIO()
    args = cli_main.build_parser().parse_args(["tasks", "--json", "--master", fake_master.url,
                                               "--operator-token", "op-token"])
    assert await cli_listing.list_command(args, out) == 0
    assert json.loads(out.getvalue()) == [{"task_id": "t1", "framework_id": "fw-1",
                                           "agent_id": 1, "name": "sample", "state": "RUNNING",
                                           "executor": "WASM"}]


async def test_listing_with_a_wrong_operator_token_exits_4(fake_master, capsys) -> None:
    args = cli_main.build_parser().parse_args(["agents", "--master", fake_master.url,
                                               "--operator-token", "wrong"])
    assert await cli_listing.list_command(args, io.StringIO()) == cli.EXIT_MASTER
    assert "UNAUTHENTICATED: wrong operator token" in capsys.readouterr().err
