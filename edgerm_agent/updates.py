"""The agent's outgoing updates: one numbered queue of StatusUpdates and Publishes (sans-IO).

Part of the agent's core (`edgerm_agent.core.AgentCore` owns one queue): updates are numbered
from one counter (`next_id`), kept oldest first until the master's `update_ack` covers them, and
sent one per call, the oldest first (docs/protocol.md). The queue knows nothing of calls, seqs
or the checkpoint file; it only gives its checkpoint form (`to_json()` / `load()`) to the core's
`snapshot()`.

Renumbering: a master that lost what it had acknowledged (its `Registered.update_ack` is not the
head's id minus one) takes updates from `update_ack + 1` on, so the queue is renumbered from
there (`renumber()`), keeping its order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from edgerm.wire import decode, encode, pb

__all__ = ["Update", "UpdateQueue"]


@dataclass
class Update:
    """One queued update: exactly one of `status` and `publish` is set."""

    update_id: int
    status: pb.StatusUpdate | None = None
    publish: pb.Publish | None = None

    def call(self) -> pb.AgentCall:
        """The AgentCall that carries this update (unsigned, no seq yet)."""
        call = pb.AgentCall()
        if self.status is not None:
            call.status.CopyFrom(self.status)
        else:
            assert self.publish is not None
            call.publish.CopyFrom(self.publish)
        return call


class UpdateQueue:
    """Updates not yet acknowledged by the master, oldest first."""

    def __init__(self) -> None:
        #: the id the next new update gets.
        self.next_id = 1
        self._queue: deque[Update] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def head(self) -> Update | None:
        """The oldest unacknowledged update: the one to send next."""
        return self._queue[0] if self._queue else None

    def first_unacked(self) -> int:
        """The id of the oldest unacknowledged update, or of the next new one: the master
        may take every id below it as delivered (Register.update_next)."""
        return self._queue[0].update_id if self._queue else self.next_id

    def publishes(self) -> int:
        """How many queued updates are Publishes (they have their own limit)."""
        return sum(1 for u in self._queue if u.publish is not None)

    def add_status(self, task: int, state: int, reason: int, message: str,
                   exit_code: int) -> int:
        """Queue a StatusUpdate; returns its update_id."""
        uid = self._take_id()
        self._queue.append(Update(uid, status=pb.StatusUpdate(
            update_id=uid, task=task, state=cast(Any, state), reason=cast(Any, reason),
            message=message, exit_code=exit_code)))
        return uid

    def add_publish(self, task: int, data: bytes, topic: str) -> int:
        """Queue a Publish; returns its update_id."""
        uid = self._take_id()
        self._queue.append(Update(uid, publish=pb.Publish(
            update_id=uid, task=task, data=data, topic=topic)))
        return uid

    def drop_acked(self, update_ack: int) -> bool:
        """Forget every update up to `update_ack`; True when one was dropped."""
        dropped = False
        while self._queue and self._queue[0].update_id <= update_ack:
            self._queue.popleft()
            dropped = True
        return dropped

    def drop_refused(self, update_id: int) -> bool:
        """The master will never take update `update_id`: drop it if it is the head (only the
        head is ever in flight). True when dropped."""
        if self._queue and self._queue[0].update_id == update_id:
            self._queue.popleft()
            return True
        return False

    def renumber(self, first: int) -> list[pb.StatusUpdate]:
        """Give the queued updates the ids `first`, `first + 1`, ... in order, and go on
        numbering after them. Returns the StatusUpdates renumbered, for the caller's records."""
        uid = first
        statuses = []
        for u in self._queue:
            u.update_id = uid
            if u.status is not None:
                u.status.update_id = uid
                statuses.append(u.status)
            else:
                assert u.publish is not None
                u.publish.update_id = uid
            uid += 1
        self.next_id = uid
        return statuses

    def reset(self) -> None:
        """A new identity at the master: nothing queued, numbering starts again at 1."""
        self._queue.clear()
        self.next_id = 1

    # -- checkpoint form -----------------------------------------------------------------------

    def to_json(self) -> list[dict[str, str]]:
        """The queued updates, JSON-ready (each message encoded, in hex)."""
        out = []
        for u in self._queue:
            if u.status is not None:
                out.append({"status": encode(u.status).hex()})
            else:
                assert u.publish is not None
                out.append({"publish": encode(u.publish).hex()})
        return out

    def load(self, raws: Iterable[dict[str, str]], next_id: int) -> None:
        """Restore what `to_json()` gave (and `next_id`), after the queue's present content."""
        self.next_id = next_id
        for raw in raws:
            if "status" in raw:
                st = decode(pb.StatusUpdate, bytes.fromhex(raw["status"]))
                self._queue.append(Update(st.update_id, status=st))
            else:
                p = decode(pb.Publish, bytes.fromhex(raw["publish"]))
                self._queue.append(Update(p.update_id, publish=p))

    def _take_id(self) -> int:
        uid = self.next_id
        self.next_id += 1
        return uid
