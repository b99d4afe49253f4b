"""Server-side block-wise state (RFC 7959): Block1 reassembly and the Block2 representation cache.

Both are bounded and time-limited, because both hold memory on behalf of peers:

* :class:`Block1Assembler` reassembles uploads. Blocks must arrive in order (offset equal to
  what we hold; 4.08 Request Entity Incomplete otherwise), non-final blocks must be full
  (4.00), the total is capped (4.13 with Size1), the number of concurrent uploads is capped
  (5.03), and an upload idle for ``block_lifetime`` is forgotten. The block size is
  negotiated down: we answer 2.31 with our smaller SZX and the client continues at
  ``offset / new_size`` (RFC 7959 §2.5).
* :class:`Block2Cache` keeps a large response so the following block requests are served
  from one consistent representation without calling the handler again. Oldest entries are
  evicted beyond the count or byte limits.

Deadlines are absolute times given by the caller; this module never reads a clock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import NamedTuple

from edgerm.coap.codes import Code
from edgerm.coap.config import CoapConfig
from edgerm.coap.message import Option
from edgerm.coap.options import BlockValue

# Outcomes of Block1Assembler.receive.
CONTINUE = 0
COMPLETE = 1
ERROR = 2


class Block1Result(NamedTuple):
    status: int
    #: For COMPLETE the whole body; for ERROR the diagnostic payload.
    payload: bytes
    #: For CONTINUE the SZX to answer with; for ERROR the response code.
    value: int


class _Upload:
    __slots__ = ("buf", "deadline")

    def __init__(self, buf: bytearray, deadline: float) -> None:
        self.buf = buf
        self.deadline = deadline


class Block1Assembler:
    def __init__(self, config: CoapConfig) -> None:
        self._config = config
        # Insertion order == deadline order (constant lifetime, refreshed entries moved to end).
        self._uploads: OrderedDict[Hashable, _Upload] = OrderedDict()
        self.refused = 0

    def __len__(self) -> int:
        return len(self._uploads)

    def receive(self, key: Hashable, block: BlockValue, payload: bytes, size1: int | None,
                now: float) -> Block1Result:
        cfg = self._config
        limit = cfg.max_request_payload
        szx = min(block.szx, cfg.block_szx)
        if block.more and len(payload) != block.size:
            self._uploads.pop(key, None)
            return Block1Result(ERROR, b"non-final block is not full", Code.BAD_REQUEST)
        if block.num == 0:
            self._uploads.pop(key, None)
            if (size1 is not None and size1 > limit) or len(payload) > limit:
                return Block1Result(ERROR, b"", Code.REQUEST_ENTITY_TOO_LARGE)
            if not block.more:
                return Block1Result(COMPLETE, payload, szx)
            self.expire(now)
            if len(self._uploads) >= cfg.max_block1_transfers:
                self.refused += 1
                return Block1Result(ERROR, b"too many uploads", Code.SERVICE_UNAVAILABLE)
            self._uploads[key] = _Upload(bytearray(payload), now + cfg.block_lifetime)
            return Block1Result(CONTINUE, b"", szx)
        upload = self._uploads.get(key)
        if upload is None or block.offset != len(upload.buf):
            self._uploads.pop(key, None)
            return Block1Result(ERROR, b"block out of order", Code.REQUEST_ENTITY_INCOMPLETE)
        if len(upload.buf) + len(payload) > limit:
            del self._uploads[key]
            return Block1Result(ERROR, b"", Code.REQUEST_ENTITY_TOO_LARGE)
        upload.buf += payload
        if not block.more:
            del self._uploads[key]
            return Block1Result(COMPLETE, bytes(upload.buf), szx)
        upload.deadline = now + cfg.block_lifetime
        self._uploads.move_to_end(key)
        return Block1Result(CONTINUE, b"", szx)

    def expire(self, now: float) -> None:
        uploads = self._uploads
        while uploads:
            key, upload = next(iter(uploads.items()))
            if upload.deadline > now:
                break
            del uploads[key]

    def next_deadline(self) -> float | None:
        if not self._uploads:
            return None
        return next(iter(self._uploads.values())).deadline


class Representation(NamedTuple):
    code: int
    payload: bytes
    options: list[Option]
    deadline: float


class Block2Cache:
    def __init__(self, config: CoapConfig) -> None:
        self._config = config
        self._entries: OrderedDict[Hashable, Representation] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: Hashable, code: int, payload: bytes, options: list[Option],
            now: float) -> None:
        cfg = self._config
        self._pop(key)
        self._entries[key] = Representation(code, payload, options, now + cfg.block_lifetime)
        self._bytes += len(payload)
        while self._entries and (len(self._entries) > cfg.max_block2_entries
                                 or self._bytes > cfg.max_block2_bytes):
            self._pop(next(iter(self._entries)))

    def get(self, key: Hashable, now: float) -> Representation | None:
        rep = self._entries.get(key)
        if rep is not None and rep.deadline <= now:
            self._pop(key)
            return None
        return rep

    def _pop(self, key: Hashable) -> None:
        rep = self._entries.pop(key, None)
        if rep is not None:
            self._bytes -= len(rep.payload)

    def expire(self, now: float) -> None:
        # Entries are not refreshed, so insertion order is deadline order.
        while self._entries:
            key, rep = next(iter(self._entries.items()))
            if rep.deadline > now:
                break
            self._pop(key)

    def next_deadline(self) -> float | None:
        if not self._entries:
            return None
        return next(iter(self._entries.values())).deadline


def slice_block(payload: bytes, num: int, szx: int) -> tuple[bytes, bool] | None:
    """Block ``num`` of size 2**(szx+4) and whether more follow; ``None`` if past the end."""
    size = 1 << (szx + 4)
    start = num * size
    if start >= len(payload) and not (start == 0 and not payload):
        return None
    end = start + size
    return payload[start:end], end < len(payload)


def block(num: int, more: bool, szx: int) -> BlockValue:
    return BlockValue(num, more, szx)


__all__ = ["Block1Assembler", "Block1Result", "Block2Cache", "Representation", "slice_block",
           "CONTINUE", "COMPLETE", "ERROR"]
