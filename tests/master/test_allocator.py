"""Tests for edgerm_master.allocator: DRF fairness, filters, suppression, exact accounting."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from edgerm.resources import Res, ResourceError, dominant_share
from edgerm.wire import pb
from edgerm_master.allocator import Allocator, UnknownAgent, UnknownFramework

NODE = Res(cpus=4, mem_mb=4096, disk_mb=1000, ports=[(31000, 31099)])


def cluster(n_agents: int, frameworks: dict[str, float], total: Res = NODE) -> Allocator:
    a = Allocator()
    for fid, w in frameworks.items():
        a.add_framework(fid, "*", w)
    for aid in range(n_agents):
        a.add_agent(aid, total)
    return a


def check_accounting(a: Allocator) -> None:
    """free + everything held == total on every agent; shares match a from-scratch DRF."""
    held_q: dict[str, dict[str, float]] = {fid: {} for fid in a.frameworks()}
    for aid in a.agents():
        alloc = a.allocation(aid)
        s = a.free(aid)
        for fid, r in alloc.items():
            assert not r.is_empty()
            s = s + r
            for k, v in r.quantities().items():
                held_q[fid][k] = held_q[fid].get(k, 0.0) + v
        assert s == a._agents[aid].total  # noqa: SLF001 - the invariant itself
    total_q = a.total_quantities()
    for fid in a.frameworks():
        assert a.allocated_quantities(fid) == pytest.approx(held_q[fid])
        assert a.dominant_share(fid) == pytest.approx(dominant_share(held_q[fid], total_q))


# ------------------------------------------------------------------ DRF


def test_weights_1_and_2_converge_to_1_to_2_shares() -> None:
    a = cluster(300, {"a": 1.0, "b": 2.0})
    offers = a.offers(0.0)
    assert len(offers) == 300
    got = {fid: sum(1 for f, _, _ in offers if f == fid) for fid in "ab"}
    assert got == {"a": 100, "b": 200}
    assert a.dominant_share("b") == pytest.approx(2 * a.dominant_share("a"))
    check_accounting(a)


def test_drf_balances_dominant_shares_not_counts() -> None:
    # "cpu" is cpu-heavy per agent taken... both see the same agents, so DRF gives each agent
    # to whoever has the smaller dominant share; with a head start, the other catches up.
    a = cluster(10, {"cpu": 1.0, "mem": 1.0})
    a.allocate("cpu", 0, Res(cpus=4))
    a.allocate("cpu", 1, Res(cpus=4))  # cpu framework already holds 8/40 = 0.2 of cpus
    offers = a.offers(0.0)
    got = sorted(fid for fid, _, _ in offers)
    # the 8 agents left: "mem" must first catch up with 0.2
    assert got.count("mem") > got.count("cpu")
    assert abs(a.dominant_share("mem") - a.dominant_share("cpu")) <= 0.1 + 1e-9
    check_accounting(a)


def test_ties_are_broken_by_framework_id_and_rounds_are_deterministic() -> None:
    runs = []
    for _ in range(2):
        a = cluster(7, {"z": 1.0, "b": 1.0, "m": 1.0})
        runs.append([(fid, aid) for fid, aid, _ in a.offers(0.0)])
    assert runs[0] == runs[1]
    assert runs[0][:3] == [("b", 0), ("m", 1), ("z", 2)]


def test_offered_resources_are_not_offered_again_until_released() -> None:
    a = cluster(3, {"a": 1.0, "b": 1.0})
    first = a.offers(0.0)
    assert len(first) == 3
    assert a.offers(1.0) == []
    for aid in range(3):
        assert a.free(aid).is_empty()
    fid, aid, res = first[0]
    # the framework launches a part and leaves the rest
    used = Res(cpus=1, mem_mb=512, ports=[(31005, 31005)])
    assert a.release(fid, aid, res - used)
    assert a.allocated(fid, aid) == used
    assert (fid, aid) == ("a", 0)
    # "a" now holds agent 2 and a part of agent 0, "b" agent 1: the rest of agent 0 goes to "b"
    assert a.offers(2.0) == [("b", 0, res - used)]
    check_accounting(a)


def test_release_of_more_than_held_is_refused_and_changes_nothing() -> None:
    a = cluster(1, {"a": 1.0})
    [(fid, aid, res)] = a.offers(0.0)
    with pytest.raises(ResourceError):
        a.release(fid, aid, res + Res(cpus=1))
    assert a.allocated(fid, aid) == res and a.free(aid).is_empty()
    # unknown ids: a late release after removal is harmless
    assert a.release("gone", aid, res) is False
    assert a.release(fid, 99, res) is False
    check_accounting(a)


def reference_round(a: Allocator, now: float, weights: dict[str, float],
                    eligible: list[str], filters: dict[tuple[str, int], float],
                    ) -> list[tuple[str, int, Res]]:
    """The round done the obvious way, in exact fractions: every agent, in offer order, goes to
    the eligible framework not filtering it with the lowest weighted dominant share (ties by
    fid), and the shares grow as it goes. Reads `a` before its round, changes nothing."""
    def micro(q: dict[str, float]) -> dict[str, int]:
        return {k: round(v * 1_000_000) for k, v in q.items()}

    total = micro(a.total_quantities())
    held = {fid: micro(a.allocated_quantities(fid)) for fid in eligible}

    def key(fid: str) -> tuple[Fraction, str]:
        dom = max((Fraction(v, total[k]) for k, v in held[fid].items() if total.get(k)),
                  default=Fraction(0))
        return dom / Fraction(weights[fid]), fid

    out = []
    for aid in a._offerable:  # noqa: SLF001 - the order agents became offerable in
        free = a.free(aid)
        candidates = [f for f in eligible if filters.get((f, aid), -1.0) <= now]
        if not candidates:
            continue
        fid = min(candidates, key=key)
        for k, v in micro(free.quantities()).items():
            held[fid][k] = held[fid].get(k, 0) + v
        out.append((fid, aid, free))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_round_matches_a_straightforward_exact_drf(seed: int) -> None:
    # A mixed fleet in shuffled order (so runs of agents going to one framework vary), weights,
    # frameworks holding things already, refuse filters (live and expired), a suppressed and an
    # inactive framework, an inactive agent, partly used agents.
    rng = random.Random(seed)
    shapes = [
        pb.Resources(cpus=4, mem_mb=8192, disk_mb=32000, ports=[pb.Range(begin=31000, end=32000)]),
        pb.Resources(cpus=4, mem_mb=2048, disk_mb=16000, ports=[pb.Range(begin=8000, end=8099)],
                     devices=[pb.Device(name="cam", kind=pb.OTHER, shares=0)]),
        pb.Resources(cpus=1, mem_mb=0.25, devices=[
            pb.Device(name="temp", kind=pb.SENSOR, shares=4, unit="Cel"),
            pb.Device(name="humidity", kind=pb.SENSOR, shares=4, unit="%RH")]),
        pb.Resources(cpus=2, mem_mb=1024, disk_mb=500),
    ]
    weights = {f"f{i:02d}": w for i, w in enumerate([1, 2, 3, 0.5, 1, 2, 3, 1.5, 1, 1, 2, 3])}
    a = Allocator()
    for fid, w in weights.items():
        a.add_framework(fid, "*", w)
    n = 600
    for aid in range(n):
        a.add_agent(aid, Res.from_pb(rng.choice(shapes)))
    # some holdings before the round: whole agents and parts of agents
    for aid in rng.sample(range(n), 60):
        a.allocate(rng.choice(list(weights)), aid, Res(cpus=1))
    a.suppress("f03")
    a.set_framework_active("f05", False)
    a.set_agent_active(7, False)
    filters: dict[tuple[str, int], float] = {}
    for _ in range(150):
        fid, aid = rng.choice(list(weights)), rng.randrange(n)
        until = rng.choice([5.0, 20.0, 50.0])
        a.filter(fid, aid, until)
        filters[fid, aid] = max(until, filters.get((fid, aid), -1.0))
    for aid in rng.sample(range(n), 3):  # filtered by every eligible framework: kept
        for fid in weights:
            a.filter(fid, aid, 50.0)
            filters[fid, aid] = 50.0
    eligible = sorted(set(weights) - {"f03", "f05"})
    for now in (10.0, 30.0):
        expected = reference_round(a, now, weights, eligible, filters)
        got = a.offers(now)
        assert got == expected
        assert len(got) > (450 if now == 10.0 else 0)
        check_accounting(a)
        # half the offers come back (declined without a filter): the next round is mixed
        for fid, aid, res in got[::2]:
            a.release(fid, aid, res)


# ------------------------------------------------------------------ filters, suppression


def test_refuse_filters_expire() -> None:
    a = cluster(1, {"a": 1.0, "b": 5.0})
    [(fid, aid, res)] = a.offers(0.0)
    assert fid == "a"
    assert a.decline("a", aid, res, now=0.0, refuse_s=10.0)
    [(fid, _, _)] = a.offers(1.0)
    assert fid == "b"  # a filters it
    a.decline("b", aid, res, now=1.0, refuse_s=100.0)
    assert a.offers(5.0) == []  # everyone filters it; it stays free
    assert a.free(aid) == res
    [(fid, _, _)] = a.offers(10.0)  # a's filter has expired at 10
    assert fid == "a"
    check_accounting(a)


def test_decline_uses_the_default_refuse_seconds() -> None:
    a = Allocator(refuse_default_s=5.0)
    a.add_framework("a", "*", 1.0)
    a.add_agent(1, NODE)
    [(_, _, res)] = a.offers(0.0)
    a.decline("a", 1, res, now=0.0)
    assert a.offers(4.9) == []
    assert len(a.offers(5.0)) == 1


def test_suppress_and_revive_which_clears_filters() -> None:
    a = cluster(2, {"a": 1.0})
    a.suppress("a")
    assert a.offers(0.0) == []
    a.revive("a")
    offers = a.offers(0.0)
    assert len(offers) == 2
    for fid, aid, res in offers:
        a.decline(fid, aid, res, now=0.0, refuse_s=60.0)
    assert a.offers(1.0) == []
    a.revive("a")
    assert len(a.offers(1.0)) == 2


def test_inactive_frameworks_and_agents_get_and_give_nothing() -> None:
    a = cluster(3, {"a": 1.0, "b": 1.0})
    a.set_framework_active("a", False)
    a.set_agent_active(1, False)
    offers = a.offers(0.0)
    assert sorted((f, x) for f, x, _ in offers) == [("b", 0), ("b", 2)]
    assert a.total_quantities()["cpus"] == 8  # the inactive agent left the cluster total
    assert a.free(1) == NODE
    a.set_agent_active(1, True)
    a.set_framework_active("a", True)
    assert [(f, x) for f, x, _ in a.offers(1.0)] == [("a", 1)]
    a.set_framework_active("a", False)
    a.set_framework_active("b", False)
    a.release("a", 1, NODE)
    assert a.offers(2.0) == []
    check_accounting(a)


# ------------------------------------------------------------------ devices and ports


def test_exclusive_device_is_offered_to_one_framework_only() -> None:
    inv = Res.from_pb(pb.Resources(cpus=2, devices=[pb.Device(name="cam", shares=0)]))
    a = Allocator()
    a.add_framework("a", "*", 1.0)
    a.add_framework("b", "*", 1.0)
    a.add_agent(1, inv)
    [(fid, aid, res)] = a.offers(0.0)
    assert fid == "a" and res.devices == {"cam": 1}
    cam = Res.claim_from_pb(pb.Resources(cpus=1, devices=[pb.Device(name="cam")]), inv)
    a.release("a", aid, res - cam)  # launch with the camera, give back the rest
    [(fid, _, res_b)] = a.offers(1.0)
    assert fid == "b" and "cam" not in res_b.devices and res_b.cpus == 1
    with pytest.raises(ResourceError):
        a.allocate("b", aid, cam)
    check_accounting(a)


def test_shared_device_capacity() -> None:
    inv = Res.from_pb(pb.Resources(devices=[pb.Device(name="temp", shares=3)]))
    one = Res.claim_from_pb(pb.Resources(devices=[pb.Device(name="temp", shares=1)]), inv)
    a = Allocator()
    for fid in "abcd":
        a.add_framework(fid, "*", 1.0)
    a.add_agent(1, inv)
    holders = []
    for t in range(4):
        offers = a.offers(float(t))
        if not offers:
            break
        [(fid, aid, res)] = offers
        assert res.contains(one)
        a.release(fid, aid, res - one)  # each takes one share
        holders.append(fid)
    assert holders == ["a", "b", "c"]  # capacity 3: the fourth gets nothing
    assert a.free(1).is_empty()
    assert a.dominant_share("a") == pytest.approx(1 / 3)
    check_accounting(a)


def test_ports_ranges_split_by_launches() -> None:
    a = cluster(1, {"a": 1.0}, Res(cpus=1, ports=[(8000, 8009)]))
    [(fid, aid, res)] = a.offers(0.0)
    launched = Res(ports=[(8003, 8004)])
    a.release(fid, aid, res - launched)
    assert a.free(aid).ports == ((8000, 8002), (8005, 8009))
    [(_, _, again)] = a.offers(1.0)
    assert again.ports == ((8000, 8002), (8005, 8009))
    a.release(fid, aid, again + launched)
    assert a.free(aid).ports == ((8000, 8009),)
    check_accounting(a)


# ------------------------------------------------------------------ agent lifecycle, errors


def test_update_agent_total_must_hold_what_is_held() -> None:
    a = cluster(1, {"a": 1.0})
    a.allocate("a", 0, Res(cpus=3))
    with pytest.raises(ResourceError, match="cannot hold"):
        a.update_agent_total(0, Res(cpus=2))
    assert a.free(0) == NODE - Res(cpus=3)
    a.update_agent_total(0, Res(cpus=8))
    assert a.free(0) == Res(cpus=5)
    assert a.total_quantities() == {"cpus": 8.0}
    check_accounting(a)


def test_remove_agent_and_framework_release_everything() -> None:
    a = cluster(2, {"a": 1.0, "b": 1.0})
    offers = a.offers(0.0)
    a.remove_agent(0)
    assert a.agents() == [1]
    holder = next(f for f, x, _ in offers if x == 1)
    a.remove_framework(holder)
    assert a.free(1) == NODE
    check_accounting(a)


def test_bad_calls_are_refused_with_clear_errors() -> None:
    a = cluster(1, {"a": 1.0})
    with pytest.raises(ValueError):
        a.add_framework("a", "*", 1.0)
    with pytest.raises(ValueError):
        a.add_agent(0, NODE)
    for w in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            a.add_framework("x", "*", w)
    with pytest.raises(UnknownFramework):
        a.suppress("nope")
    with pytest.raises(UnknownAgent):
        a.set_agent_active(7, False)
    with pytest.raises(ResourceError):
        a.allocate("a", 0, NODE + Res(cpus=1))
    assert a.free(0) == NODE


# ------------------------------------------------------------------ random sequences


class AllocatorMachine(RuleBasedStateMachine):
    """Random event sequences; after each, the books must balance exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.a = Allocator(refuse_default_s=3.0)
        self.now = 0.0
        self.next_aid = 0
        self.outstanding: list[tuple[str, int, Res]] = []  # offers not yet answered

    @initialize()
    def start(self) -> None:
        for fid, w in (("f1", 1.0), ("f2", 2.0), ("f3", 0.5)):
            self.a.add_framework(fid, "r", w)

    @rule(cpus=st.integers(0, 8), temp=st.integers(0, 3), exclusive=st.booleans())
    def add_agent(self, cpus: int, temp: int, exclusive: bool) -> None:
        msg = pb.Resources(cpus=cpus, mem_mb=cpus * 512.5, ports=[pb.Range(begin=1, end=9)])
        if temp:
            msg.devices.add(name="temp", shares=0 if exclusive else temp)
        self.a.add_agent(self.next_aid, Res.from_pb(msg))
        self.next_aid += 1

    @rule(dt=st.floats(0, 5))
    def round(self, dt: float) -> None:
        self.now += dt
        offers = self.a.offers(self.now)
        seen = {aid for _, aid, _ in offers}
        assert len(seen) == len(offers)  # one offer per agent per round
        for fid, aid, res in offers:
            assert self.a.allocated(fid, aid).contains(res)
        self.outstanding += offers

    @precondition(lambda self: self.outstanding)
    @rule(data=st.data())
    def answer_offer(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.outstanding) - 1))
        fid, aid, res = self.outstanding.pop(i)
        how = data.draw(st.sampled_from(["decline", "launch", "expire"]))
        if how == "decline":
            self.a.decline(fid, aid, res, self.now)
        elif how == "expire":
            self.a.release(fid, aid, res)
        else:  # launch part: half the cpus and the first port, keep that held
            part = Res(cpus=res.cpus // 2, ports=res.ports[:1] and [(res.ports[0][0],) * 2])
            self.a.release(fid, aid, res - part)

    @precondition(lambda self: self.a.agents())
    @rule(data=st.data())
    def task_ends(self, data: st.DataObject) -> None:
        aid = data.draw(st.sampled_from(self.a.agents()))
        alloc = self.a.allocation(aid)
        if alloc:
            fid = data.draw(st.sampled_from(sorted(alloc)))
            offered = sum((r for f, x, r in self.outstanding if f == fid and x == aid),
                          Res.EMPTY)
            tasks = alloc[fid] - offered
            self.a.release(fid, aid, tasks)

    @precondition(lambda self: self.a.agents())
    @rule(data=st.data(), active=st.booleans())
    def agent_flaps(self, data: st.DataObject, active: bool) -> None:
        self.a.set_agent_active(data.draw(st.sampled_from(self.a.agents())), active)

    @precondition(lambda self: self.a.agents())
    @rule(data=st.data())
    def agent_removed(self, data: st.DataObject) -> None:
        aid = data.draw(st.sampled_from(self.a.agents()))
        self.a.remove_agent(aid)
        self.outstanding = [o for o in self.outstanding if o[1] != aid]

    @rule(fid=st.sampled_from(["f1", "f2", "f3"]), what=st.sampled_from(
        ["suppress", "revive", "inactive", "active"]))
    def framework_event(self, fid: str, what: str) -> None:
        if what == "suppress":
            self.a.suppress(fid)
        elif what == "revive":
            self.a.revive(fid)
        else:
            self.a.set_framework_active(fid, what == "active")

    @rule(fid=st.sampled_from(["f1", "f2", "f3"]))
    def framework_fails_over(self, fid: str) -> None:
        self.a.remove_framework(fid)
        self.a.add_framework(fid, "r", 1.0)
        self.outstanding = [o for o in self.outstanding if o[0] != fid]

    @invariant()
    def books_balance(self) -> None:
        check_accounting(self.a)


AllocatorMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=30,
                                              deadline=None)
TestAllocatorMachine = AllocatorMachine.TestCase
