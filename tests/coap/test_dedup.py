"""The dedup table alone: its bounds hold under any sequence of operations (fake clock)."""

from __future__ import annotations

import random

import pytest

from edgerm.coap.dedup import DedupTable


def check(t: DedupTable, max_entries: int, per_peer: int) -> None:
    counts: dict[object, int] = {}
    for remote, _ in t.entries:
        counts[remote] = counts.get(remote, 0) + 1
    assert len(t) <= max_entries
    assert all(n <= per_peer for n in counts.values())
    assert all(t.peer_count(r) == n for r, n in counts.items())
    assert t.peers == len(counts)  # no empty peer records are left behind
    deadlines = [d for d, _ in t.entries.values()]
    assert deadlines == sorted(deadlines)  # insertion order is expiry order


@pytest.mark.parametrize("seed", range(5))
def test_bounds_hold_under_random_operations(seed: int) -> None:
    rng = random.Random(seed)
    t = DedupTable(max_entries=50, max_per_peer=8, lifetime=10.0)
    now = 0.0
    keys: list[tuple[tuple[str, int], int]] = []
    for step in range(5000):
        now += rng.random() * 0.05
        op = rng.random()
        peer = ("10.0.0.1", rng.randrange(12 if seed % 2 else 200))
        if op < 0.6:
            key = (peer, rng.randrange(65536))
            if key not in t:
                t.add(key, now)
                keys.append(key)
                assert key in t  # a new entry is always admitted
        elif op < 0.8 and keys:
            t.answer(rng.choice(keys), b"x")
        elif op < 0.9 and keys:
            t.forget(rng.choice(keys))
        else:
            t.expire(now)
        if step % 50 == 0:
            check(t, 50, 8)
    t.expire(now + 10.0)
    assert len(t) == 0 and t.peers == 0 and t.next_deadline() is None


def test_answer_and_forget_of_unknown_keys_change_nothing() -> None:
    t = DedupTable(max_entries=4, max_per_peer=2, lifetime=1.0)
    t.answer((("a", 1), 1), b"x")
    t.forget((("a", 1), 1))
    assert len(t) == 0 and t.peers == 0
    with pytest.raises(ValueError):
        DedupTable(max_entries=0, max_per_peer=1, lifetime=1.0)
