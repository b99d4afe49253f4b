"""Message deduplication state (RFC 7252 §4.5), bounded per peer and in total.

One entry per (peer, message id) we received a request (or a separate response) with, kept for
EXCHANGE_LIFETIME together with the bytes we answered (``None`` while the handler runs), so a
retransmission is answered again and not processed twice.

Why it is shaped like this: the state is held on behalf of peers nobody authenticated, so no
peer may be able to crowd out another. The rules, in the order they apply:

* **Only answers worth repeating are remembered.** The endpoint does not keep an entry for a
  request it answered with an error (4.xx/5.xx): a duplicate of it is processed again and gets
  the same error, which is what RFC 7252 §4.5 allows for requests handled idempotently. A flood
  of requests to unknown paths or with garbage payloads therefore holds no state at all.
* **Per-peer quota** (``max_per_peer``, peer = address and port): a peer at its quota loses its
  own oldest entry to make room for its new one. It never takes anyone else's room, and for a
  peer that sends fewer than ``max_per_peer`` requests per EXCHANGE_LIFETIME (an agent sends a
  few dozen) nothing changes.
* **Global bound** (``max_entries``): when the table is full a new entry is never refused;
  room is made by evicting the oldest entry of the peer holding the most entries (among the
  "heavy" peers holding at least half their quota), or else the oldest entry of all. A
  well-behaved peer therefore always gets its request processed; what an attacker can cost it
  at worst is that one of its old entries is forgotten, and a retransmission of that old
  request, if any still comes, is processed again.

Expiry: entries are kept in insertion order, which is the order of their deadlines, so expiry
pops from the front. Every operation is O(1) except choosing among heavy peers, which scans at
most ``max_entries / (max_per_peer / 2)`` peers and only happens when the table is full.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

Key = tuple[Any, int]


class DedupTable:
    """(peer, message id) -> (deadline, answer bytes or ``None`` while the handler runs).

    Args:
      max_entries: total entries; beyond it an old entry is evicted (see the module docstring).
      max_per_peer: entries one peer (address, port) may hold; its oldest is evicted beyond.
      lifetime: how long an entry is kept (EXCHANGE_LIFETIME).
    """

    __slots__ = ("entries", "_peers", "_heavy", "_heavy_at", "_max", "_max_per_peer",
                 "_lifetime", "evicted")

    def __init__(self, max_entries: int, max_per_peer: int, lifetime: float) -> None:
        if max_entries < 1 or max_per_peer < 1:
            raise ValueError("dedup limits must be at least 1")
        #: Read directly by the endpoint's hot path (``key in table.entries``).
        self.entries: OrderedDict[Key, tuple[float, bytes | None]] = OrderedDict()
        # Message ids per peer, oldest first: the per-peer quota and whom to evict.
        self._peers: dict[Any, OrderedDict[int, None]] = {}
        # Peers holding at least _heavy_at entries: the candidates for eviction when full.
        self._heavy: set[Any] = set()
        self._heavy_at = max(1, max_per_peer // 2)
        self._max = max_entries
        self._max_per_peer = max_per_peer
        self._lifetime = lifetime
        #: Entries dropped before their time to make room (per-peer quota or full table).
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: Key) -> bool:
        return key in self.entries

    def peer_count(self, remote: Any) -> int:
        """Entries ``remote`` holds now."""
        peer = self._peers.get(remote)
        return 0 if peer is None else len(peer)

    @property
    def peers(self) -> int:
        return len(self._peers)

    def add(self, key: Key, now: float, data: bytes | None = None) -> None:
        """Remember ``key`` from ``now`` for the lifetime; makes room if needed, never fails."""
        entries = self.entries
        if key in entries:
            return  # already remembered (the caller checks for duplicates first)
        remote, mid = key
        peer = self._peers.get(remote)
        if peer is not None and len(peer) >= self._max_per_peer:
            self._evict_oldest_of(remote, peer)
        if len(entries) >= self._max:
            self.expire(now)
            if len(entries) >= self._max:
                self._make_room()
            peer = self._peers.get(remote)  # making room may have emptied and dropped it
        if peer is None:
            peer = self._peers[remote] = OrderedDict()
        peer[mid] = None
        entries[key] = (now + self._lifetime, data)
        if len(peer) == self._heavy_at:
            self._heavy.add(remote)

    def answer(self, key: Key, data: bytes) -> None:
        """Store the answer to repeat for duplicates (no-op if the entry is gone)."""
        entries = self.entries
        entry = entries.get(key)
        if entry is not None:
            entries[key] = (entry[0], data)

    def forget(self, key: Key) -> None:
        """Drop ``key`` (its request was answered with an error: nothing worth repeating)."""
        if self.entries.pop(key, None) is not None:
            self._drop_from_peer(key)

    def expire(self, now: float) -> None:
        """Drop every entry whose deadline is ``now`` or earlier."""
        entries = self.entries
        while entries:
            key = next(iter(entries))
            if entries[key][0] > now:
                break
            del entries[key]
            self._drop_from_peer(key)

    def next_deadline(self) -> float | None:
        entries = self.entries
        if not entries:
            return None
        return entries[next(iter(entries))][0]

    # ------------------------------------------------------------------ internals
    def _drop_from_peer(self, key: Key) -> None:
        remote, mid = key
        peer = self._peers.get(remote)
        if peer is None:
            return
        peer.pop(mid, None)
        n = len(peer)
        if n < self._heavy_at:
            self._heavy.discard(remote)
            if not n:
                del self._peers[remote]

    def _evict_oldest_of(self, remote: Any, peer: OrderedDict[int, None]) -> None:
        mid, _ = peer.popitem(last=False)
        del self.entries[(remote, mid)]
        self.evicted += 1
        n = len(peer)
        if n < self._heavy_at:
            self._heavy.discard(remote)
            if not n:
                del self._peers[remote]

    def _make_room(self) -> None:
        heavy = self._heavy
        if heavy:
            peers = self._peers
            remote = max(heavy, key=lambda r: len(peers[r]))
            self._evict_oldest_of(remote, peers[remote])
            return
        # Nobody holds much: the oldest entry of all goes (it is the nearest to expiry).
        key, _ = self.entries.popitem(last=False)
        self.evicted += 1
        self._drop_from_peer(key)


__all__ = ["DedupTable"]
