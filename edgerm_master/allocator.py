"""The DRF allocator: fed agents, frameworks and resource events, it answers with offers.

Like Mesos's hierarchical allocator with its DRF sorter, it only decides. The master core tells
it what happened (`add_agent`, `allocate`, `release`, `suppress`, `filter`, ...) and calls
`offers(now)` for one allocation round; it never does I/O, never reads a clock and never sees a
protobuf message, so it is benchmarked on its own (`bench/allocator.py`).

Theory of operation
-------------------
Per agent it keeps ``total``, ``free`` and what each framework holds there (outstanding offers
plus launched tasks; `_Agent.holdings`). The invariant, checked by the stateful test::

    free + sum(holdings.values()) == total          for every agent, always

An allocation round hands every active agent's free resources, whole, to the eligible framework
(active, not suppressed, not filtering that agent) with the lowest *weighted dominant share*
(dominant share / weight; ties by framework id), then counts them as used by it. What a round
returns stays allocated until the master `release`s it (decline, expiry, rescind, the unused part
of an accepted offer, terminal tasks). So nothing is ever offered to two frameworks at once.

Why it is fast (100,000 agents x 100 frameworks in one round):

* Agents with something free and active sit in `_offerable` (insertion-ordered, so rounds are
  deterministic); a round touches only them, and a steady-state round touches few.
* Frameworks sit in a binary heap keyed ``(weighted share, fid)`` (one int each). The top
  framework keeps taking consecutive agents while its key stays below the runner-up's, so a run
  of agents costs one heap update (on the benchmark fleet, 100,000 agents make ~44,000 runs).
* What one framework holds on an agent sits in two slots of the agent (the common case), not a
  dict per agent: the round writes to an object it reads anyway. Free vectors are interned and
  hash by identity, so the round scales each shape once and counts what each framework got
  without hashing vector contents.
* Shares are kept per framework as integer micro-unit amounts per resource *kind* (the keys of
  `Res.quantities`, numbered on first sight), and each agent caches its free resources in that
  form when they change (an event, not the round). Giving an agent to a framework adds a few
  integers and raises the framework's share with the touched kinds only: amounts only grow
  within a round. Integer micro-units make every add and subtract exact, so releasing what was
  offered restores the previous share bit for bit.
* Cluster totals count active agents only. When they change, or a framework's amounts shrink,
  the affected shares are recomputed once, at the start of the next round.

Refuse filters live on the agent (``filtered_by[fid] = until``); expired ones are dropped when
met. `revive` clears all of a framework's filters.
"""

from __future__ import annotations

import gc
import heapq
import math
from collections import Counter
from collections.abc import Iterable

from edgerm.resources import Res, ResourceError

__all__ = ["Allocator", "UnknownAgent", "UnknownFramework"]

# Amounts are counted in integer millionths: the same quantum as `Res` scalars, so exact.
_MICRO = 1_000_000


class _Vec(tuple[tuple[int, int], ...]):
    """``((kind index, micro-units), ...)`` of a `Res`'s non-zero kinds.

    Equal vectors are one object (see `Allocator._vec`), so vectors hash and compare by
    identity: a round looks up and counts each agent's vector without hashing its contents.
    (Past `_MAX_SHARED_VECS` shapes equal vectors may be distinct objects; they are then just
    scaled and counted separately.)
    """

    __slots__ = ()
    __hash__ = object.__hash__
    __eq__ = object.__eq__  # type: ignore[assignment]


_NO_VEC = _Vec()

# Equal vectors are shared (interned) so a round scales each distinct shape once; agents of one
# inventory kind all share one. Bounded: past this many shapes new ones are simply not shared.
_MAX_SHARED_VECS = 4096
# Round heap keys are ints: (weighted share quantised to 2^-40) << rank bits | rank. Ints compare
# at C speed where (share, fid, fw) tuples did not; rank is the fid order, so ties break as before.
_KEY_QUANTUM = float(1 << 40)
# A heap key above any framework's: pads the round's heap.
_NO_RIVAL = 1 << 200


class UnknownFramework(KeyError):
    """A framework id the allocator was never told about (or was told to remove)."""


class UnknownAgent(KeyError):
    """An agent id the allocator was never told about (or was told to remove)."""


class _Agent:
    __slots__ = ("aid", "total", "free", "holder", "held", "others", "active", "free_vec",
                 "total_vec", "filtered_by")

    def __init__(self, aid: int, total: Res) -> None:
        self.aid = aid
        self.total = total
        self.free = total
        # What frameworks hold here (offers and tasks), by fid: `holder` holds `held`, any
        # others are in `others`. One framework per agent is the common case, and a round
        # then records an offer in two slots of an object it reads anyway, where a dict per
        # agent cost a store into memory the round does not otherwise touch. `holder` is not
        # a key of `others`, and `others` is None whenever `holder` is.
        self.holder: str | None = None
        self.held: Res = Res.EMPTY
        self.others: dict[str, Res] | None = None
        self.active = True
        self.free_vec = _NO_VEC
        self.total_vec = _NO_VEC
        # fid -> time before which this agent is not offered to that framework
        self.filtered_by: dict[str, float] = {}

    def holding(self, fid: str) -> Res | None:
        if fid == self.holder:
            return self.held
        return None if self.others is None else self.others.get(fid)

    def hold(self, fid: str, res: Res) -> None:
        """`fid` now holds `res` (non-empty) here, instead of what it held before."""
        if self.holder is None or fid == self.holder:
            self.holder = fid
            self.held = res
        elif self.others is None:
            self.others = {fid: res}
        else:
            self.others[fid] = res

    def release(self, fid: str) -> Res | None:
        """`fid` holds nothing here any more; what it held, if anything."""
        others = self.others
        if fid == self.holder:
            res = self.held
            if others is None:
                self.holder = None
                self.held = Res.EMPTY
            else:  # keep `holder` set while anyone holds anything
                self.holder, self.held = others.popitem()
                if not others:
                    self.others = None
            return res
        if others is None:
            return None
        if fid not in others:
            return None
        res = others.pop(fid)
        if not others:
            self.others = None
        return res

    def holdings(self) -> dict[str, Res]:
        """fid -> what it holds here (a new dict)."""
        out = {} if self.holder is None else {self.holder: self.held}
        if self.others is not None:
            out.update(self.others)
        return out


class _Framework:
    __slots__ = ("fid", "role", "weight", "inv_weight", "active", "suppressed", "amounts",
                 "share", "dirty", "filtering")

    def __init__(self, fid: str, role: str, weight: float) -> None:
        self.fid = fid
        self.role = role
        self.weight = weight
        self.inv_weight = 1.0 / weight  # heap keys multiply: cheaper than dividing
        self.active = True
        self.suppressed = False
        self.amounts: list[int] = []  # micro-units held, by kind index
        self.share = 0.0  # dominant share over the active cluster total (unweighted)
        self.dirty = False  # amounts shrank: share must be recomputed
        self.filtering: set[int] = set()  # agents it has refuse filters on


def _check_weight(weight: float) -> float:
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) \
            or not math.isfinite(weight) or weight <= 0:
        raise ValueError(f"weight must be a finite number > 0, got {weight!r}")
    return float(weight)


class Allocator:
    """Dominant Resource Fairness over agents' free resources. Pure: time is an argument.

    Args:
        refuse_default_s: how long `decline` filters an agent when no refuse_seconds is given.

    Error handling: unknown ids raise `UnknownFramework` / `UnknownAgent` (KeyErrors), duplicate
    ids and bad weights `ValueError`, accounting that does not add up `ResourceError`; a call
    that raises has changed nothing.
    """

    def __init__(self, refuse_default_s: float = 5.0) -> None:
        self.refuse_default_s = refuse_default_s
        self._frameworks: dict[str, _Framework] = {}
        self._agents: dict[int, _Agent] = {}
        # Active agents with non-empty free resources, in the order they became so.
        self._offerable: dict[int, _Agent] = {}
        self._kinds: dict[str, int] = {}
        self._kind_names: list[str] = []
        self._totals: list[int] = []  # micro-units over active agents, by kind index
        self._inv: list[float] = []  # 1 / totals (0 where the total is 0)
        self._totals_changed = False
        self._shared_vecs: dict[tuple[tuple[int, int], ...], _Vec] = {}

    # ------------------------------------------------------------------ frameworks

    def add_framework(self, fid: str, role: str = "*", weight: float = 1.0) -> None:
        """A subscribed framework: active, not suppressed, holding nothing."""
        if fid in self._frameworks:
            raise ValueError(f"framework {fid!r} already added")
        fw = _Framework(fid, role, _check_weight(weight))
        fw.amounts = [0] * len(self._kind_names)
        self._frameworks[fid] = fw

    def remove_framework(self, fid: str) -> None:
        """Forget a framework; everything it held goes back to free."""
        fw = self._fw(fid)
        # A scan of all agents: rare, and it keeps the round from maintaining an index.
        for ag in self._agents.values():
            held = ag.release(fid)
            if held is not None:
                self._set_free(ag, ag.free + held)
        for aid in fw.filtering:
            self._agents[aid].filtered_by.pop(fid, None)
        del self._frameworks[fid]

    def set_framework_active(self, fid: str, active: bool) -> None:
        """Disconnected frameworks keep what they hold but get no offers."""
        self._fw(fid).active = active

    def suppress(self, fid: str) -> None:
        """No more offers to this framework until `revive`."""
        self._fw(fid).suppressed = True

    def revive(self, fid: str) -> None:
        """Offers again, and none of its refuse filters hold any more."""
        fw = self._fw(fid)
        fw.suppressed = False
        for aid in fw.filtering:
            self._agents[aid].filtered_by.pop(fid, None)
        fw.filtering.clear()

    def frameworks(self) -> list[str]:
        return list(self._frameworks)

    # ------------------------------------------------------------------ agents

    def add_agent(self, aid: int, total: Res) -> None:
        """A registered agent, active, everything free."""
        if aid in self._agents:
            raise ValueError(f"agent {aid} already added")
        ag = _Agent(aid, total)
        ag.total_vec = self._vec(total)
        ag.free_vec = ag.total_vec
        self._agents[aid] = ag
        self._add_totals(ag.total_vec, 1)
        if not total.is_empty():
            self._offerable[aid] = ag

    def update_agent_total(self, aid: int, total: Res) -> None:
        """The agent's total changed. It must still hold everything frameworks hold there.

        Raises `ResourceError` (changing nothing) otherwise: rescind the agent's outstanding
        offers (`release`) first; if its tasks alone exceed it, the agent is overcommitted.
        """
        ag = self._ag(aid)
        held = _sum(ag.holdings().values())
        if not total.contains(held):
            raise ResourceError(f"agent {aid}: new total cannot hold what frameworks hold: "
                                + "; ".join(total.missing(held)))
        new_vec = self._vec(total)
        if ag.active:
            self._add_totals(ag.total_vec, -1)
            self._add_totals(new_vec, 1)
        ag.total = total
        ag.total_vec = new_vec
        self._set_free(ag, total - held)

    def set_agent_active(self, aid: int, active: bool) -> None:
        """Unreachable agents are not offered and leave the cluster total; holdings stay."""
        ag = self._ag(aid)
        if ag.active == active:
            return
        ag.active = active
        self._add_totals(ag.total_vec, 1 if active else -1)
        if active and not ag.free.is_empty():
            self._offerable[aid] = ag
        else:
            self._offerable.pop(aid, None)

    def remove_agent(self, aid: int) -> None:
        """Forget an agent and everything anyone held on it."""
        ag = self._ag(aid)
        for fid, res in ag.holdings().items():
            fw = self._frameworks[fid]
            self._fw_add(fw, self._vec(res), -1)
        for fid in ag.filtered_by:
            self._frameworks[fid].filtering.discard(aid)
        if ag.active:
            self._add_totals(ag.total_vec, -1)
        self._offerable.pop(aid, None)
        del self._agents[aid]

    def agents(self) -> list[int]:
        return list(self._agents)

    # ------------------------------------------------------------------ resource events

    def allocate(self, fid: str, aid: int, res: Res) -> None:
        """Mark `res` (free on `aid`) as held by `fid`: recovered tasks, or a direct launch."""
        fw = self._fw(fid)
        ag = self._ag(aid)
        if res.is_empty():
            return
        if not ag.free.contains(res):
            raise ResourceError(f"agent {aid}: cannot allocate to {fid!r}: "
                                + "; ".join(ag.free.missing(res)))
        self._set_free(ag, ag.free - res)
        prev = ag.holding(fid)
        ag.hold(fid, res if prev is None else prev + res)
        self._fw_add(fw, self._vec(res), 1)

    def release(self, fid: str, aid: int, res: Res) -> bool:
        """`res`, held by `fid` on `aid`, is free again (declined, expired, rescinded, unused,
        or a terminal task's).

        Returns False, changing nothing, when the agent or framework is already gone (its
        holdings were released then). Raises `ResourceError` if `fid` does not hold `res` there.
        """
        fw = self._frameworks.get(fid)
        ag = self._agents.get(aid)
        if fw is None or ag is None:
            return False
        if res.is_empty():
            return True
        held = ag.holding(fid)
        if held is None:
            held = Res.EMPTY
        if not held.contains(res):
            raise ResourceError(f"agent {aid}: {fid!r} does not hold that: "
                                + "; ".join(held.missing(res)))
        left = held - res
        if left.is_empty():
            ag.release(fid)
        else:
            ag.hold(fid, left)
        self._set_free(ag, ag.free + res)
        self._fw_add(fw, self._vec(res), -1)
        return True

    def filter(self, fid: str, aid: int, until: float) -> None:
        """Do not offer `aid` to `fid` before `until` (a decline's refuse_seconds)."""
        fw = self._fw(fid)
        ag = self._ag(aid)
        if until > ag.filtered_by.get(fid, -math.inf):
            ag.filtered_by[fid] = until
        fw.filtering.add(aid)

    def decline(self, fid: str, aid: int, res: Res, now: float,
                refuse_s: float | None = None) -> bool:
        """`release` plus a refuse filter of `refuse_s` (default `refuse_default_s`)."""
        if not self.release(fid, aid, res):
            return False
        secs = self.refuse_default_s if refuse_s is None else refuse_s
        if secs > 0:
            self.filter(fid, aid, now + secs)
        return True

    # ------------------------------------------------------------------ the round

    def offers(self, now: float) -> list[tuple[str, int, Res]]:
        """One allocation round: ``[(fid, aid, res), ...]``, each now held by that framework.

        Each offerable agent's free resources go, whole, to the eligible framework with the
        lowest weighted dominant share that does not filter it; shares grow as the round goes.
        """
        if not self._offerable:
            return []
        # The round allocates hundreds of thousands of small acyclic objects (tuples, heap
        # keys): letting the cyclic GC scan the whole heap over and over meanwhile costs as much
        # as the round itself. The round is synchronous, so pausing it is invisible to others.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._round(now)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _round(self, now: float) -> list[tuple[str, int, Res]]:
        offerable = self._offerable
        self._refresh_shares()
        ranked = sorted((fw for fw in self._frameworks.values()
                         if fw.active and not fw.suppressed), key=lambda fw: fw.fid)
        if not ranked:
            return []
        inv = self._inv
        bits = max(1, (len(ranked) - 1).bit_length())
        mask = (1 << bits) - 1
        fids = [fw.fid for fw in ranked]
        # Weighted share x 2^40 as one factor per framework: 2^40 is a power of two, so
        # share * (w * 2^40) rounds exactly as (share * w) * 2^40 does.
        scale = [fw.inv_weight * _KEY_QUANTUM for fw in ranked]
        shares = [fw.share for fw in ranked]
        # Per-kind shares (amounts x 1/total) as floats for ordering during the round; the
        # exact integer amounts are brought up to date once at the end, from what each got.
        kind_shares = [[a * i for a, i in zip(fw.amounts, inv, strict=True)] for fw in ranked]
        got: list[list[_Vec]] = [[] for _ in ranked]
        got_appends = [vecs.append for vecs in got]
        # Two keys above any framework's pad the heap: the runner-up is min(heap[1], heap[2]).
        heap = [(int(shares[r] * scale[r]) << bits) | r for r in range(len(ranked))]
        heap += (_NO_RIVAL, _NO_RIVAL)
        heapq.heapify(heap)
        heapreplace = heapq.heapreplace
        scaled: dict[_Vec, tuple[tuple[int, float], ...]] = {}  # vec -> per-kind shares
        out: list[tuple[str, int, Res]] = []
        append = out.append
        empty = Res.EMPTY

        def take(agents: list[_Agent]) -> None:
            # Each agent goes, in order, to the lowest framework on the heap. That framework
            # keeps taking agents while its key stays below the runner-up's, so a run of
            # agents costs one heap update instead of one each.
            i = 0
            n = len(agents)
            while i < n:
                r = heap[0] & mask
                h1 = heap[1]
                h2 = heap[2]
                second = h1 if h1 < h2 else h2
                # Its key stays below `second` while share * sc < limit: int() truncates, and
                # equal quantised shares go by rank. Past 2^53 float() may round limit; that
                # can only end a run early (the heap update after it compares exact keys, and
                # the same framework starts the next run), never let one run late.
                limit = float((second + mask - r) >> bits)
                fid = fids[r]
                ks = kind_shares[r]
                share = shares[r]
                sc = scale[r]
                got_vec = got_appends[r]
                while True:
                    ag = agents[i]
                    i += 1
                    free = ag.free
                    if ag.holder is None:
                        ag.holder = fid
                        ag.held = free
                    else:
                        prev = ag.holding(fid)
                        ag.hold(fid, free if prev is None else prev + free)
                    ag.free = empty
                    # ag.free_vec is left stale: it is only read while ag is offerable, and ag
                    # becomes offerable again only through _set_free, which recomputes it.
                    vec = ag.free_vec
                    got_vec(vec)
                    sv = scaled.get(vec)
                    if sv is None:
                        sv = scaled[vec] = tuple((k, v * inv[k]) for k, v in vec)
                    for k, x in sv:
                        y = ks[k] + x
                        ks[k] = y
                        if y > share:
                            share = y
                    append((fid, ag.aid, free))
                    if i == n or share * sc >= limit:
                        break
                shares[r] = share
                key = (int(share * sc) << bits) | r
                if key < second:
                    heap[0] = key  # still below both children: the heap holds
                else:
                    heapreplace(heap, key)

        # Agents with refuse filters (maybe expired) go one by one; fw.filtering finds them
        # without reading every agent's filter dict.
        filtering = set().union(*(fw.filtering for fw in self._frameworks.values()))
        if not filtering:
            take(list(offerable.values()))
            self._offerable = {}
        else:
            kept: dict[int, _Agent] = {}
            plain: list[_Agent] = []
            eligible = len(ranked)
            for aid, ag in offerable.items():
                if aid not in filtering:
                    plain.append(ag)
                    continue
                take(plain)
                plain = []
                if self._filtered_by_all(ag, now, eligible):
                    kept[aid] = ag
                    continue
                # Set aside frameworks that filter this agent; one that does not is left.
                fb = ag.filtered_by
                stash = []
                while True:
                    until = fb.get(fids[heap[0] & mask])
                    if until is None or until <= now:
                        break
                    stash.append(heapq.heappop(heap))
                take([ag])
                for entry in stash:
                    heapq.heappush(heap, entry)
            take(plain)
            self._offerable = kept
        for r, vecs in enumerate(got):
            if vecs:
                fw = ranked[r]
                amounts = fw.amounts
                for vec, n in Counter(vecs).items():
                    for k, v in vec:
                        amounts[k] += n * v
                fw.share = max((a * i for a, i in zip(amounts, inv, strict=True) if a),
                               default=0.0)
        return out

    def _filtered_by_all(self, ag: _Agent, now: float, eligible: int) -> bool:
        # Drops expired filters as a side effect; True if every eligible framework filters ag.
        live = 0
        expired = None
        frameworks = self._frameworks
        for fid, until in ag.filtered_by.items():
            if until <= now:
                if expired is None:
                    expired = []
                expired.append(fid)
                continue
            fw = frameworks[fid]
            if fw.active and not fw.suppressed:
                live += 1
        if expired is not None:
            for fid in expired:
                del ag.filtered_by[fid]
                frameworks[fid].filtering.discard(ag.aid)
        return live >= eligible

    # ------------------------------------------------------------------ queries

    def free(self, aid: int) -> Res:
        return self._ag(aid).free

    def allocation(self, aid: int) -> dict[str, Res]:
        """What each framework holds on `aid` (a copy)."""
        return self._ag(aid).holdings()

    def allocated(self, fid: str, aid: int | None = None) -> Res:
        """What `fid` holds, on `aid` or summed over all agents (ranges merged across agents,
        so use `allocated_quantities` to count ports cluster-wide)."""
        self._fw(fid)
        if aid is not None:
            held = self._ag(aid).holding(fid)
            return Res.EMPTY if held is None else held
        return _sum(res for ag in self._agents.values()
                    if (res := ag.holding(fid)) is not None)

    def allocated_quantities(self, fid: str) -> dict[str, float]:
        fw = self._fw(fid)
        return {self._kind_names[k]: v / _MICRO for k, v in enumerate(fw.amounts) if v}

    def dominant_share(self, fid: str) -> float:
        """`fid`'s dominant share of the active cluster (unweighted)."""
        fw = self._fw(fid)
        self._refresh_shares()
        return fw.share

    def total(self) -> Res:
        """Sum of the active agents' totals (O(agents); ranges and sets are unioned)."""
        return _sum(ag.total for ag in self._agents.values() if ag.active)

    def total_quantities(self) -> dict[str, float]:
        """Cluster total of active agents as summable quantities (ports counted per agent)."""
        return {self._kind_names[k]: v / _MICRO for k, v in enumerate(self._totals) if v}

    # ------------------------------------------------------------------ internals

    def _fw(self, fid: str) -> _Framework:
        try:
            return self._frameworks[fid]
        except KeyError:
            raise UnknownFramework(f"unknown framework {fid!r}") from None

    def _ag(self, aid: int) -> _Agent:
        try:
            return self._agents[aid]
        except KeyError:
            raise UnknownAgent(f"unknown agent {aid!r}") from None

    def _vec(self, res: Res) -> _Vec:
        kinds = self._kinds
        out = []
        for name, amount in res.quantities().items():
            k = kinds.get(name)
            if k is None:
                k = len(self._kind_names)
                kinds[name] = k
                self._kind_names.append(name)
                self._totals.append(0)
                self._inv.append(0.0)
                for fw in self._frameworks.values():
                    fw.amounts.append(0)
            out.append((k, round(amount * _MICRO)))
        key = tuple(out)
        vec = self._shared_vecs.get(key)
        if vec is None:
            vec = _Vec(key)
            if len(self._shared_vecs) < _MAX_SHARED_VECS:
                self._shared_vecs[key] = vec
        return vec

    def _set_free(self, ag: _Agent, free: Res) -> None:
        ag.free = free
        ag.free_vec = self._vec(free)
        if ag.active and not free.is_empty():
            self._offerable.setdefault(ag.aid, ag)
        else:
            self._offerable.pop(ag.aid, None)

    def _add_totals(self, vec: _Vec, sign: int) -> None:
        totals = self._totals
        for k, v in vec:
            totals[k] += sign * v
        if vec:
            self._totals_changed = True

    def _fw_add(self, fw: _Framework, vec: _Vec, sign: int) -> None:
        amounts = fw.amounts
        inv = self._inv
        for k, v in vec:
            x = amounts[k] + sign * v
            amounts[k] = x
            if sign > 0 and not fw.dirty and not self._totals_changed:
                s = x * inv[k]
                if s > fw.share:
                    fw.share = s
        if sign < 0 and vec:
            fw.dirty = True

    def _refresh_shares(self) -> None:
        if self._totals_changed:
            self._inv = [1.0 / t if t > 0 else 0.0 for t in self._totals]
            self._totals_changed = False
            for fw in self._frameworks.values():
                fw.dirty = True
        inv = self._inv
        for fw in self._frameworks.values():
            if fw.dirty:
                fw.share = max((a * i for a, i in zip(fw.amounts, inv, strict=True) if a),
                               default=0.0)
                fw.dirty = False


def _sum(items: Iterable[Res]) -> Res:
    out = Res.EMPTY
    for r in items:
        out = out + r
    return out
