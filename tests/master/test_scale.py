"""100,000 agents in the core, no sockets: registration, a heartbeat round, and the liveness
clock sweeping all of them to UNREACHABLE and LOST in timer order."""

from __future__ import annotations

import random

from edgerm.wire import decode, derive_secret, pb, sign, token_key
from edgerm_master.config import MasterConfig
from edgerm_master.core import Master

N = 100_000


def test_hundred_thousand_agents() -> None:
    cfg = MasterConfig(agent_tokens=["a"], framework_tokens=["f"], heartbeat_ms=10_000,
                       unreachable_after_missed=3, lost_after_s=100.0)
    m = Master(cfg, random_bytes=random.Random(0).randbytes)
    call = pb.AgentCall(seq=1, register=pb.Register(
        name="x", protocol_version=1, resources=pb.Resources(cpus=1, mem_mb=64)))
    key = token_key("a")
    now = 0.0
    secrets = []
    for i in range(N):
        now = i * 1e-4  # ten seconds of registrations
        call.register.nonce = i.to_bytes(8, "big")
        r = decode(pb.AgentReply, m.agent_call(sign(call, key), now).data)
        secrets.append(derive_secret("a", call.register.nonce, r.registered.nonce))
    assert len(m.agents) == N and max(m.agents) == N
    assert len(m.take_records()) == N
    # Every other agent heartbeats at t=20; the rest stay silent.
    for aid in range(2, N + 1, 2):
        call = pb.AgentCall(agent_id=aid, seq=2, heartbeat=pb.Heartbeat())
        assert m.agent_call(sign(call, secrets[aid - 1]), 20.0).error == 0
    m.handle_timer(40.5)  # silent ones: last seen <= 10 s, 30 s of silence
    states = [m.agents[aid].state for aid in (1, 2, N - 1, N)]
    assert states == [1, 0, 1, 0]
    assert sum(1 for a in m.agents.values() if a.state == 1) == N // 2
    m.handle_timer(141.0)
    assert sum(1 for a in m.agents.values() if a.state == 2) == N // 2
    assert m.allocator.agents() == list(range(2, N + 1, 2))
