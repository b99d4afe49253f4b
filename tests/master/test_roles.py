"""The role loop (edgerm_master.roles) with a hand-held election: a master serves as a standby
that names the leader, leads (recovered from its store) once it wins, and ends with `Deposed`
when it loses. The same loop against real etcd is in tests/master/test_ha_scenarios.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from edgerm.transport.coap import open_coap_client
from edgerm.wire import CONTENT_FORMAT_CBOR, decode, pb
from edgerm_master.config import MasterConfig
from edgerm_master.members import MemberInfo, Role
from edgerm_master.roles import Deposed, RoleLoop, member_of
from edgerm_master.service import MasterService
from edgerm_master.testing import ScriptedAgent
from edgerm_master.testing_io import CoapAgentClient

OTHER = MemberInfo("m2", {"coap": "coap://10.1.1.2:5683", "ws": "ws://10.1.1.2:5690"})


class HandElection:
    """An election the test decides: `win` ends the campaign, `lost` ends the term."""

    def __init__(self) -> None:
        self.win = trio.Event()
        self.lost = trio.Event()
        self.fence = None
        self.current: MemberInfo | None = None
        self.me: MemberInfo | None = None

    async def campaign(self) -> None:
        await self.win.wait()
        self.current = self.me

    def leader(self) -> MemberInfo | None:
        return self.current

    async def resign(self) -> None:
        pass


def config(tmp_path: Path, **kw: Any) -> MasterConfig:
    base: dict[str, Any] = dict(
        coap_port=0, ws_port=0, host="127.0.0.1", data_dir=str(tmp_path), heartbeat_ms=60_000,
        agent_tokens=["agent-token"], framework_tokens=["framework-token"],
        operator_tokens=["operator-token"])
    return MasterConfig(**{**base, **kw})


async def register(coap: Any, addr: Any) -> pb.AgentReply:
    resp = await coap.post(addr, "a", ScriptedAgent("pi").register_call(),
                           content_format=CONTENT_FORMAT_CBOR)
    return decode(pb.AgentReply, resp.payload)


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def test_standby_then_leader_then_deposed(tmp_path: Path) -> None:
    election = HandElection()

    async def make(store: Any, me: MemberInfo) -> HandElection:
        election.me = me
        return election

    loop = RoleLoop(make, poll_s=0.01)
    service = MasterService(config(tmp_path, name="m1"), roles=loop)
    with pytest.RaisesGroup(Deposed, flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            coap_addr, _ = await nursery.start(service.run)
            assert loop.member is not None and loop.member.name == "m1"
            assert loop.member.urls["coap"] == f"coap://127.0.0.1:{coap_addr[1]}"
            async with open_coap_client() as coap:
                # Standby, no leader known, then naming the leader of the election.
                reply = await register(coap, coap_addr)
                assert reply.error.code == pb.NOT_LEADER and reply.error.leader == ""
                election.current = OTHER
                await wait_until(lambda: service.leader == OTHER)
                reply = await register(coap, coap_addr)
                assert reply.error.leader == OTHER.urls["coap"]
                assert not service.core.agents and service.commits == 0
                # Wins: serves.
                election.win.set()
                await wait_until(lambda: service.role is Role.LEADER)
                agent = CoapAgentClient(coap, coap_addr, ScriptedAgent("pi"))
                await agent.settle()
                assert agent.agent.agent_id and len(service.core.agents) == 1
                assert loop.role == "leader"
                # Loses: the run ends with Deposed.
                election.current = OTHER
                election.lost.set()
                await trio.sleep_forever()
    assert loop.role == "deposed"


def test_a_wildcard_host_needs_advertised_urls(tmp_path: Path) -> None:
    service = MasterService(config(tmp_path, host="0.0.0.0"))
    with pytest.raises(ValueError, match="urls for coap, ws"):
        member_of(service, ("0.0.0.0", 1), ("0.0.0.0", 2))
    service.config.advertise_urls = {"coap": "coap://10.0.0.1:1", "ws": "ws://10.0.0.1:2"}
    me = member_of(service, ("0.0.0.0", 1), ("0.0.0.0", 2))
    assert me.name == "0.0.0.0:1" and me.urls["ws"] == "ws://10.0.0.1:2"
