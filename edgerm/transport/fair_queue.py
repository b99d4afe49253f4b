"""A fair queue of requests waiting for a fixed pool of Trio worker tasks.

Why it exists: the CoAP server hands requests to ``handler_workers`` long-lived tasks, and the
queue in front of them is the one place a flood could crowd out a well-behaved peer. So it is
fair to peers: one peer (address and port) may have at most ``per_peer`` requests waiting or
running, all ports of one address together ``per_ip``, and when the queue is full a request
from a peer holding fewer displaces the newest request of the peer holding the most. A flood
from a few sources therefore delays a well-behaved client by at most one queue's worth of work
and does not get it refused; a flood from many ports of one address takes at most its share.

It never makes the caller wait: :meth:`FairQueue.put` admits or refuses at once (the receive
loop must not await anything a peer controls). :meth:`FairQueue.get` is what a worker awaits;
a request is handed straight to an idle worker, like a memory channel does.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any, Generic, TypeVar

import outcome
import trio

from edgerm.coap.events import Addr


class Queued:
    """One item of a :class:`FairQueue`: whose it is, and whether it was displaced."""

    __slots__ = ("peer", "displaced")

    def __init__(self, peer: Addr) -> None:
        self.peer = peer
        #: Dropped from the queue to make room for a fairer peer; skipped by ``get()``.
        self.displaced = False


W = TypeVar("W", bound=Queued)


class FairQueue(Generic[W]):
    """Requests waiting for a handler worker: FIFO, bounded in total and per peer.

    ``held`` counts each peer's requests from admission until ``done()`` (waiting or running),
    ``held_ip`` the same per source address.
    Queued requests per peer are also bucketed by count, so the peer with the most waiting is
    known in O(1) when the queue is full and someone has to give way.
    """

    def __init__(self, limit: int, per_peer: int, per_ip: int) -> None:
        self._limit = limit
        self._per_peer = per_peer
        self._per_ip = per_ip
        self.held_ip: dict[Any, int] = {}
        self._queue: deque[W] = deque()
        self._queued = 0  # live entries of _queue (displaced ones are skipped lazily)
        self.held: dict[Addr, int] = {}
        self._waiting: dict[Addr, deque[W]] = {}
        # _buckets[n]: peers with exactly n requests waiting; _top: the largest such n.
        self._buckets: list[set[Addr]] = [set() for _ in range(per_peer + 1)]
        self._top = 0
        # Idle workers, longest idle first. A request is handed straight to one (as a memory
        # channel does), so no worker is woken for a request another one took meanwhile.
        self._idle: OrderedDict[trio.lowlevel.Task, None] = OrderedDict()

    def __len__(self) -> int:
        return self._queued

    def put(self, work: W) -> tuple[bool, W | None]:
        """Admit ``work`` if its peer's quota and the queue allow it; never waits.

        Returns (admitted, displaced): ``displaced`` is a waiting request of the biggest holder
        dropped to make room; the caller answers it (and the refused one) 5.03.
        """
        peer = work.peer
        held = self.held.get(peer, 0)
        ip = peer[0]
        held_ip = self.held_ip.get(ip, 0)
        if held >= self._per_peer or held_ip >= self._per_ip:
            return False, None
        displaced = None
        if self._queued >= self._limit:
            waiting = self._waiting.get(peer)
            mine = len(waiting) if waiting is not None else 0
            # Give way only to someone strictly fairer off, so the displacement converges.
            if self._top <= mine + 1:
                return False, None
            victim_peer = next(iter(self._buckets[self._top]))
            displaced = self._waiting[victim_peer][-1]
            self._unqueue(victim_peer, last=True)
            displaced.displaced = True
            self._release(victim_peer)
            held_ip = self.held_ip.get(ip, 0)  # the victim may share our address
        self.held[peer] = held + 1
        self.held_ip[ip] = held_ip + 1
        if self._idle:
            task, _ = self._idle.popitem(last=False)
            trio.lowlevel.reschedule(task, outcome.Value(work))
            return True, displaced
        waiting = self._waiting.get(peer)
        if waiting is None:
            waiting = self._waiting[peer] = deque()
        n = len(waiting)
        waiting.append(work)
        buckets = self._buckets
        if n:
            buckets[n].discard(peer)
        buckets[n + 1].add(peer)
        if n + 1 > self._top:
            self._top = n + 1
        self._queue.append(work)
        self._queued += 1
        return True, displaced

    async def get(self) -> W:
        # Like a memory channel's receive: a checkpoint when a request is already waiting (so
        # a worker whose handlers never yield still lets the receive loop run); otherwise wait
        # to be handed one by put().
        await trio.lowlevel.checkpoint_if_cancelled()
        work = self._pop()
        if work is not None:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return work
        task = trio.lowlevel.current_task()
        self._idle[task] = None

        def abort(_: Any) -> trio.lowlevel.Abort:
            del self._idle[task]
            return trio.lowlevel.Abort.SUCCEEDED

        result: W = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    def _pop(self) -> W | None:
        queue = self._queue
        while queue:
            work = queue.popleft()
            if not work.displaced:
                self._unqueue(work.peer, last=False)
                return work
        return None

    def done(self, work: W) -> None:
        """The request was answered: its peer's quota is free again."""
        self._release(work.peer)

    def _release(self, peer: Addr) -> None:
        held = self.held
        n = held[peer] - 1
        if n:
            held[peer] = n
        else:
            del held[peer]
        held_ip = self.held_ip
        ip = peer[0]
        n = held_ip[ip] - 1
        if n:
            held_ip[ip] = n
        else:
            del held_ip[ip]

    def _unqueue(self, peer: Addr, *, last: bool) -> None:
        waiting = self._waiting[peer]
        n = len(waiting)
        if last:
            waiting.pop()
        else:
            waiting.popleft()
        self._queued -= 1
        buckets = self._buckets
        buckets[n].discard(peer)
        if n > 1:
            buckets[n - 1].add(peer)
        else:
            del self._waiting[peer]
        while self._top and not buckets[self._top]:
            self._top -= 1


__all__ = ["FairQueue", "Queued"]
