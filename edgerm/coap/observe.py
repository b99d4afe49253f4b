"""Server-side Observe bookkeeping (RFC 7641): who observes what, bounded.

An observer is identified on the wire by (peer address, token) and in our API by an integer
id. The registry only records; the server side in :mod:`edgerm.coap.server` decides when
an observer is gone (RST, unacknowledged CON notification, Observe=1) and sends notifications.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any


class Observer:
    __slots__ = ("id", "remote", "token", "cache_key", "szx", "pending")

    def __init__(self, oid: int, remote: Any, token: bytes, cache_key: Hashable,
                 szx: int) -> None:
        self.id = oid
        self.remote = remote
        self.token = token
        #: Key of the Block2 cache entry a large notification is stored under, so the
        #: client's follow-up block requests for the registering request find it.
        self.cache_key = cache_key
        self.szx = szx
        #: The in-flight CON notification (a message-layer ``Pending``), if any.
        self.pending: Any = None


class ObserverRegistry:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._next_id = 1
        self.by_id: dict[int, Observer] = {}
        self._by_key: dict[tuple[Any, bytes], Observer] = {}
        self.refused = 0

    def __len__(self) -> int:
        return len(self.by_id)

    def add(self, remote: Any, token: bytes, cache_key: Hashable, szx: int) -> Observer | None:
        """Register; ``None`` when full (the caller then answers without Observe, §4.1)."""
        if len(self.by_id) >= self._limit:
            self.refused += 1
            return None
        ob = Observer(self._next_id, remote, token, cache_key, szx)
        self._next_id += 1
        self.by_id[ob.id] = ob
        self._by_key[(remote, token)] = ob
        return ob

    def find(self, remote: Any, token: bytes) -> Observer | None:
        return self._by_key.get((remote, token))

    def remove(self, oid: int) -> Observer | None:
        ob = self.by_id.pop(oid, None)
        if ob is not None:
            self._by_key.pop((ob.remote, ob.token), None)
        return ob


__all__ = ["Observer", "ObserverRegistry"]
