"""The fair queue in front of the CoAP handler workers: quotas, displacement, hand-off."""

from __future__ import annotations

import trio
import trio.testing

from edgerm.transport.fair_queue import FairQueue, Queued

A1, A2 = ("10.0.0.1", 1000), ("10.0.0.1", 2000)  # one address, two ports
B = ("10.0.0.2", 1000)
C = ("10.0.0.3", 1000)


class Item(Queued):
    __slots__ = ("name",)

    def __init__(self, peer: tuple[str, int], name: str) -> None:
        super().__init__(peer)
        self.name = name


async def drain(q: FairQueue[Item]) -> list[str]:
    names = []
    while len(q):
        item = await q.get()
        names.append(item.name)
        q.done(item)
    return names


async def test_fifo_across_peers_and_done_frees_the_quota() -> None:
    q: FairQueue[Item] = FairQueue(limit=10, per_peer=2, per_ip=10)
    for peer, name in ((A1, "a1"), (B, "b1"), (A1, "a2"), (B, "b2")):
        assert q.put(Item(peer, name)) == (True, None)
    assert q.held == {A1: 2, B: 2} and len(q) == 4
    assert await drain(q) == ["a1", "b1", "a2", "b2"]
    assert q.held == {} and q.held_ip == {}


async def test_peer_and_address_quotas_refuse_without_waiting() -> None:
    q: FairQueue[Item] = FairQueue(limit=10, per_peer=2, per_ip=3)
    assert q.put(Item(A1, "1"))[0] and q.put(Item(A1, "2"))[0]
    assert q.put(Item(A1, "3")) == (False, None)  # A1 at its own quota
    assert q.put(Item(A2, "4"))[0]
    assert q.put(Item(A2, "5")) == (False, None)  # the address at its quota
    assert q.put(Item(B, "6"))[0]  # others are unaffected
    assert q.held_ip == {"10.0.0.1": 3, "10.0.0.2": 1}
    first = await q.get()
    q.done(first)
    assert q.put(Item(A2, "7"))[0]  # room again for that address


async def test_full_queue_displaces_the_newest_of_the_biggest_holder() -> None:
    q: FairQueue[Item] = FairQueue(limit=4, per_peer=4, per_ip=8)
    flood = [Item(A1, f"f{i}") for i in range(3)]
    for item in flood:
        assert q.put(item)[0]
    assert q.put(Item(B, "b1"))[0]  # the queue is now full
    admitted, displaced = q.put(Item(C, "c1"))
    assert admitted and displaced is flood[-1] and displaced.displaced
    assert q.held[A1] == 2 and len(q) == 4
    # B holds 1 and the biggest holder 2: giving way would not make it fairer.
    assert q.put(Item(B, "b2")) == (False, None)
    assert await drain(q) == ["f0", "f1", "b1", "c1"]


async def test_idle_worker_is_handed_the_request_directly() -> None:
    q: FairQueue[Item] = FairQueue(limit=1, per_peer=1, per_ip=1)
    got: list[str] = []

    async def worker() -> None:
        got.append((await q.get()).name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker)
        await trio.testing.wait_all_tasks_blocked()
        assert q.put(Item(A1, "x")) == (True, None)
        assert len(q) == 0  # never queued: the waiting worker has it
    assert got == ["x"] and q.held == {A1: 1}


async def test_cancelled_waiter_is_not_handed_anything() -> None:
    q: FairQueue[Item] = FairQueue(limit=2, per_peer=2, per_ip=2)
    with trio.move_on_after(0.01):
        await q.get()
    assert q.put(Item(A1, "kept"))[0]
    assert len(q) == 1  # queued, not lost to the cancelled task
    assert await drain(q) == ["kept"]
