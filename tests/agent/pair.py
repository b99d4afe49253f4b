"""A real master core (edgerm_master, sans-IO, via `Cluster`) joined to the agent's `AgentCore`
with a hand-held clock: the agent side of the h11-style `ConnectionPair`."""

from __future__ import annotations

import random

from edgerm.wire import pb
from edgerm_agent.core import AgentCore, CoreConfig
from edgerm_agent.events import Event, LaunchTask
from edgerm_master.testing import Cluster, ScriptedFramework

TOKEN = "agent-token"


def core_config(**kw: object) -> CoreConfig:
    base: dict[str, object] = dict(
        name="a1", token=TOKEN,
        resources=pb.Resources(cpus=2, mem_mb=1024, disk_mb=1000,
                               devices=[pb.Device(name="temp", kind=pb.SENSOR)]),
        attributes=(pb.Attribute(name="os", text="linux"),),
        executors=(pb.DOCKER, pb.WASM), backoff_initial_s=1.0, backoff_max_s=60.0)
    base.update(kw)
    return CoreConfig(**base)  # type: ignore[arg-type]


class Pair:
    def __init__(self, core: AgentCore | None = None, cluster: Cluster | None = None) -> None:
        self.cluster = cluster or Cluster()
        self.core = core or AgentCore(core_config(), rng=random.Random(1))
        self.events: list[Event] = []
        self.sent: list[str] = []
        self.lose_replies = 0

    @property
    def now(self) -> float:
        return self.cluster.now

    def start(self) -> None:
        self.core.start(self.now)

    def drain(self) -> list[Event]:
        out = []
        while (ev := self.core.next_event()) is not None:
            out.append(ev)
        self.events += out
        return out

    def exchange(self) -> bool:
        """Send one call if one is due; False when nothing was due."""
        out = self.core.next_call(self.now)
        if out is None:
            return False
        self.sent.append(out.kind)
        result = self.cluster.master.agent_call(out.data, self.now, "websocket")
        self.cluster.flush()
        if self.lose_replies:
            self.lose_replies -= 1
            self.core.call_failed(self.now)
        else:
            self.core.receive_reply(result.data, self.now)
        return True

    def deliver_pushes(self) -> None:
        for data in self.cluster.pushes.pop(self.core.agent_id, []):
            self.core.receive_push(data, self.now)

    def settle(self, rounds: int = 50) -> None:
        """Deliver pushes and exchange calls until nothing is due."""
        for _ in range(rounds):
            self.deliver_pushes()
            self.drain()
            if not self.exchange():
                self.deliver_pushes()
                self.drain()
                if self.core.next_call(self.now) is None:
                    return
                self.core._in_flight = None  # probe only: undo it
                self.core.seq -= 1
        raise AssertionError("agent did not settle")

    def step(self, dt: float) -> None:
        self.cluster.step(dt)
        self.core.handle_timer(self.now)

    def launches(self) -> list[LaunchTask]:
        return [e for e in self.events if isinstance(e, LaunchTask)]


def framework(cluster: Cluster) -> ScriptedFramework:
    fw = cluster.subscribe(ScriptedFramework())
    cluster.step(1.0)
    return fw
