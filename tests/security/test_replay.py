"""An attacker on the path records every kind of call a real agent makes (first registration,
re-registration, Observe FETCH, heartbeat, status update, publish, module Block2 GET or
ModuleRequest) and replays each: from another address, from the agent's own address with a
fresh Message ID (past the CoAP deduplication, so the OSCORE replay window must refuse it) and
byte for byte (which the deduplication may answer from its cache). Immediately, after an agent
reboot, and after a master restart: none is accepted, the master's state and store do not
change, and the agent keeps working with its tasks running."""

from __future__ import annotations

from typing import Any

from edgerm.coap.codes import Code
from edgerm.coap.options import BLOCK2, OBSERVE, OSCORE
from edgerm.testing_onpath import Datagram, drop
from edgerm.wire import DecodeError, decode, pb

from .conftest import Scene

TS = pb.TaskState
KINDS = ("first_register", "register", "observe", "heartbeat", "status", "publish",
         "module_get", "module")
# What every agent must have sent, each entry one of its alternatives: a module travels as
# Block2 GETs of `m/<hash>` or as ModuleRequest calls on `a` (the Python agent's CoAP link
# since OSCORE: one protected call at a time); an agent that keeps an Observe on `c` may
# heartbeat by renewing it (the MicroPython agent) rather than by POST `a`; the C agent's
# POSIX build keeps no Observe (it heartbeats), so an Observe FETCH is replayed where there
# is one (Python, MicroPython).
REQUIRED = (("first_register",), ("register",), ("heartbeat", "observe"), ("status",),
            ("publish",), ("module_get", "module"))


def recorded_calls(scene: Scene) -> dict[str, list[Datagram]]:
    """For each kind, the first and the last genuine request of it the agent made."""
    by_kind: dict[str, list[Datagram]] = {}
    for kind, d, _ in scene.calls():
        by_kind.setdefault(kind, []).append(d)
    required = REQUIRED + ((("observe",),) if scene.kind.observes else ())
    missing = [" or ".join(alts) for alts in required if not any(a in by_kind for a in alts)]
    assert not missing, f"the workload made no {missing} call: {sorted(by_kind)}"
    return {k: sorted({id(d): d for d in (v[0], v[-1])}.values(), key=lambda d: d.index)
            for k, v in by_kind.items() if k in KINDS}


def verdict(scene: Scene, request: bytes, answer: Datagram | None,
            original: Datagram | None) -> str:
    """What the master made of a replayed `request`:
    "refused" (a plain 4.01/4.02), "silent" (no answer), "cached" (the very bytes it answered
    the original, or an earlier replay from the same address and MID, with: CoAP
    deduplication, nothing processed again), "reregister" (a protected
    answer carrying a ReRegister or no command: the master could not check freshness and
    applied nothing), "pending" (a plain Registered to a first registration), or "ACCEPTED ..."."""
    if answer is None:
        return "silent"
    m = answer.message
    if m is None:
        return "ACCEPTED? undecodable answer"
    if m.opt(OSCORE) is None and m.code in (Code.UNAUTHORIZED, Code.BAD_OPTION):
        return "refused"
    if (original is not None and answer.data == original.data) or any(
            answer.data == d.data for d in scene.relay.recorded[:answer.index]
            if d.direction == "down"):
        return "cached"   # the very bytes of an earlier answer: the deduplication's copy
    if m.opt(OSCORE) is None:
        try:
            reply = decode(pb.AgentReply, m.payload)
        except DecodeError:
            reply = None
        if reply is not None and reply.HasField("registered") and m.code == Code.CHANGED:
            return "pending"
        return f"ACCEPTED? plain {m.code >> 5}.{m.code & 31:02d}"
    if m.opt(OBSERVE) is not None:
        return "ACCEPTED as an Observe registration (the agent's push channel)"
    opened = scene.peek().response(answer.data, request)
    if opened is not None and opened.inner.opt(BLOCK2) is not None \
            and opened.inner.code == Code.CONTENT:
        # A block of a module, readable by the agent only: serving it changes nothing.
        return "module block"
    reply = scene.answer_opened(Datagram(-1, "up", 0, request, "inject"), answer)
    if reply is None:
        return "ACCEPTED? a protected answer that does not open"
    if reply.HasField("error"):
        return "refused"
    kinds = {c.WhichOneof("command") for c in reply.commands}
    if kinds <= {"reregister"} and not reply.HasField("registered") \
            and not reply.HasField("module"):
        # (The ReRegister itself only in the first such answer: commands are re-sent at most
        # once a second.)
        return "reregister"
    return f"ACCEPTED {reply}"


async def replay_all(scene: Scene, recorded: dict[str, list[Datagram]],
                     allowed: dict[str, set[str]]) -> list[str]:
    """Replay every recorded call three ways; the verdicts not in `allowed[kind]` (default:
    refused or cached)."""
    bad = []
    relay = scene.relay
    for kind, datagrams in recorded.items():
        ok = allowed.get(kind, {"refused", "cached"})
        for d in datagrams:
            original = relay.answer_to(d)
            m = d.message
            assert m is not None
            fresh_mid = (m.mid + 0x8000) & 0xFFFF
            for via, mid in (("attacker", None), ("agent", fresh_mid), ("agent", None)):
                answer = await relay.replay(d, via=via, mid=mid, timeout=1.0)
                sent = relay.select(source="inject")[-1].data
                v = verdict(scene, sent, answer, original if mid is None else None)
                if v not in ok:
                    bad.append(f"{kind} #{d.index} via {via} mid={mid}: {v}")
    return bad


async def check_unchanged(scene: Scene, before: dict[str, Any],
                          reregister_asked: bool = False) -> None:
    """The master's state is as `before`. With `reregister_asked` (a master that restarted
    and has not heard from the agent since), a queued ReRegister for the agent does not count:
    the contract answers an unsynced agent's calls with one, replayed or not."""
    after = await scene.snapshot(settle=False)
    if reregister_asked:
        before, after = without_reregister(before), without_reregister(after)
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"the replays changed the master's state: {changed}"


def without_reregister(snap: dict[str, Any]) -> dict[str, Any]:
    def reregister(row: dict[str, Any]) -> bool:
        try:
            return decode(pb.Command, row["body"]).WhichOneof("command") == "reregister"
        except DecodeError:
            return False
    store = dict(snap["store"])
    store["commands"] = [r for r in store["commands"] if not reregister(r)]
    store["agents"] = [{k: v for k, v in r.items() if k != "next_command"}
                       for r in store["agents"]]
    return {**snap, "store": store}


async def refused_with_nothing_changed(scene: Scene, recorded: dict[str, list[Datagram]]
                                       ) -> None:
    """Replay everything `recorded`: each refused, the master's state as it was, the agent
    and its spinning task working on."""
    before = await scene.snapshot()
    mark = len(scene.relay.recorded)
    bad = await replay_all(scene, recorded, {})
    assert not bad, "\n".join(bad)
    await check_unchanged(scene, before)
    await scene.agent_keeps_working(mark)
    assert scene.spin_running()


async def test_replays_immediately_are_refused(scene: Scene) -> None:
    await scene.workload()
    await refused_with_nothing_changed(scene, recorded_calls(scene))


async def test_replays_after_an_agent_reboot_are_refused(scene: Scene) -> None:
    await scene.workload()
    recorded = recorded_calls(scene)
    await scene.restart_agent()      # it goes on from its persisted bound
    await scene.start_spin()
    await refused_with_nothing_changed(scene, recorded)


async def test_replays_after_a_master_restart_are_refused(scene: Scene) -> None:
    """Replayed while the restarted master has not heard from the agent yet (the attacker
    keeps the agent's own datagrams from it), then again once the agent re-registered."""
    await scene.workload()
    # The first registration replayed to a master that forgot its nonce has its own test
    # (test_first_registration.py): the contract keeps the agent it makes pending.
    recorded = {k: v for k, v in recorded_calls(scene).items() if k != "first_register"}
    agent_id = scene.agent_secret()[0]
    await scene.settled()    # (the agent's acks arrive before it is cut off)
    scene.relay.rule["up"] = drop
    await scene.restart_master()
    await scene.fw.wait_state(scene.spin_id, TS.RUNNING)
    before = await scene.snapshot(settle=False)
    # Not synced yet: a protected call may be answered with a ReRegister (nothing applied).
    allowed = {k: {"refused", "reregister"} for k in KINDS}
    # (The master serves a module block to an unsynced agent's GET rather than a ReRegister:
    # it is encrypted for the agent and changes nothing.)
    allowed["module_get"] |= {"module block"}
    bad = await replay_all(scene, recorded, allowed)
    assert not bad, "\n".join(bad)
    await check_unchanged(scene, before, reregister_asked=True)
    assert all(o.agent_id == agent_id for o in scene.fw.fw.offers.values())

    # The agent comes back: it re-registers past everything recorded, keeps its task.
    mark = len(scene.relay.recorded)
    scene.relay.rule["up"] = None
    await scene.reregistered(mark)
    await scene.agent_keeps_working(mark)
    st = await scene.cluster_state()
    assert [a.agent_id for a in st.agents] == [agent_id]
    await refused_with_nothing_changed(scene, recorded)
    await scene.fw.send(scene.fw.fw.kill(scene.spin_id))
    st_spin = await scene.fw.wait_state(scene.spin_id, TS.KILLED)
    assert st_spin.reason == pb.KILL_REQUESTED
