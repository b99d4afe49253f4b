"""The registrar on etcd: the records of `records.py` as keys under one prefix (etcd_layout.py),
written by the leading master only, in transactions fenced on its election key (docs/ha.md,
"The store on etcd").

The store keeps every `data/` record in memory (`etcd_layout.Mirror`), as the core does, and
turns each record into key writes against it; a standby keeps its mirror current from a watch
(`follow()`), so that winning the election needs only the events since, not a full reload.

Transactions: one per flush batch, `compare: create_revision(leader) == fence` first, so a
deposed leader writes nothing. A batch larger than etcd's limits (MAX_TXN_OPS operations,
MAX_TXN_BYTES bytes per request) is cut into several transactions at record boundaries, in
order; `apply` returns only after the last one, so the shell acts only when all are durable.

Errors: an etcd that does not answer raises `StoreUnavailable`; a failed fence `NotLeader`.
Either way the mirror may be ahead of etcd, so it is marked stale and read back from etcd
before the next use; applying the same batch again is safe (each record's writes are
idempotent: the same keys with the same values).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import cbor2
import trio

from edgerm_master import records
from edgerm_master.etcd_client import (
    EtcdClient,
    EtcdError,
    cmp_create_revision,
    op_delete,
    op_put,
    prefix_end,
)
from edgerm_master.etcd_layout import (
    CHUNK_BYTES,
    MAX_TXN_BYTES,
    MAX_TXN_OPS,
    MODULE_MAX_BYTES,
    Mirror,
    RecordTooLarge,
    Write,
    hex_id,
    plan_transactions,
    translate,
)
from edgerm_master.store import SCHEMA_VERSION, Snapshot
from edgerm_master.store_api import Fence, ModuleTooLarge, NotLeader, StoreUnavailable

__all__ = ["EtcdStore", "Mirror", "MAX_TXN_OPS", "MAX_TXN_BYTES", "CHUNK_BYTES",
           "MODULE_MAX_BYTES", "RecordTooLarge", "plan_transactions"]

log = logging.getLogger("edgerm.master.store")

# A range read of the whole prefix comes back in pages of this many keys.
_PAGE = 1000


class EtcdStore:
    """The registrar on etcd under `prefix`. Writes need a `Fence` (`set_fence`, after winning
    the election); reads and `follow()` do not.

    Resource handling: the client is the caller's unless `own_client` (then `aclose` closes it).
    """

    module_max_bytes = MODULE_MAX_BYTES

    def __init__(self, client: EtcdClient, prefix: str = "/edgerm/", *,
                 own_client: bool = False) -> None:
        if not prefix.endswith("/"):
            prefix += "/"
        self.client = client
        self.prefix = prefix
        self._p = prefix.encode()
        self._own_client = own_client
        self.fence: Fence | None = None
        self.mirror = Mirror()
        self._mirror_ok = False     # the mirror is what etcd holds (loaded, not stale)
        self._leading = False       # recover() done under a fence: follow() must stop
        self._follow_scope: trio.CancelScope | None = None
        self._caught_up = trio.Event()
        self.commits = 0            # batches applied
        self.transactions = 0       # etcd transactions (more than commits when split)
        self.loads = 0              # full reads of the prefix (a warm recover() makes none)
        self._lock = trio.Lock()

    def key(self, suffix: str) -> bytes:
        return self._p + suffix.encode()

    def set_fence(self, fence: Fence | None) -> None:
        """Condition every write on `fence` (None: write nothing; a standby)."""
        self.fence = fence
        if fence is None:
            self._leading = False

    async def aclose(self) -> None:
        if self._follow_scope is not None:
            self._follow_scope.cancel()
        if self._own_client:
            await self.client.aclose()

    def _unavailable(self, e: EtcdError, doing: str) -> StoreUnavailable:
        return StoreUnavailable(
            f"etcd store: cannot {doing}: {e}. The master accepts no work until a majority of "
            f"the etcd members answers again (check them: etcdctl --endpoints "
            f"{','.join(self.client.endpoints)} endpoint health)")

    # --- reading everything -------------------------------------------------------------------

    async def _load(self) -> None:
        """Read every data/ key into a new mirror, at one revision, page by page."""
        self.loads += 1
        mirror = Mirror()
        start, end = self.key("data/"), prefix_end(self.key("data/"))
        revision = 0
        cut = len(self._p)
        try:
            while True:
                page = await self.client.range(start, end, limit=_PAGE, revision=revision)
                revision = revision or page.revision
                for kv in page.kvs:
                    mirror.load(kv.key[cut:].decode(), kv.value)
                if not page.more or not page.kvs:
                    break
                start = page.kvs[-1].key + b"\0"
        except EtcdError as e:
            if e.unavailable:
                raise self._unavailable(e, "read the state") from None
            raise
        mirror.revision = revision
        self.mirror = mirror
        self._mirror_ok = True

    async def recover(self) -> Snapshot:
        """Everything durable, and a new boot epoch (written under the fence: raises NotLeader
        without one). After `follow()` kept the mirror warm, only the events up to this
        master's own election key are awaited; otherwise everything is read."""
        async with self._lock:
            fence = self.fence
            if fence is None:
                raise NotLeader("etcd store: recover() needs the lead (win the election first)")
            warm = self._mirror_ok and self._follow_scope is not None
            if warm:
                # The watch delivers the election key's creation after every write of the
                # previous leader (whose writes were fenced on its own, older key).
                with trio.move_on_after(10.0):
                    while self.mirror.revision < fence.create_revision:
                        await self._caught_up.wait()
                warm = self.mirror.revision >= fence.create_revision
            self._leading = True
            if self._follow_scope is not None:
                self._follow_scope.cancel()
            if not warm:
                # Not kept by follow(): another leader may have written since it was read.
                await self._load()
            epoch = self.mirror.meta.get("epoch", 0) + 1
            writes: list[Write] = [("data/meta/epoch", str(epoch).encode()),
                                    ("data/meta/schema", str(SCHEMA_VERSION).encode())]
            writes += await self._orphan_blobs()
            await self._commit(plan_transactions([writes]))
            self.mirror.meta["epoch"] = epoch
            self.mirror.meta["schema"] = SCHEMA_VERSION
            return self.mirror.snapshot(epoch)

    async def _orphan_blobs(self) -> list[Write]:
        """Deletes for module bytes no module row names (a crash between the bytes and the
        row, as store.py's leftover files)."""
        start = self.key("blobs/")
        try:
            page = await self.client.range(start, prefix_end(start), keys_only=True)
        except EtcdError as e:
            raise self._unavailable(e, "list module chunks") from None
        cut = len(self._p)
        out: list[Write] = []
        for kv in page.kvs:
            key = kv.key[cut:].decode()
            parts = key.split("/")
            try:
                sha = bytes.fromhex(parts[1])
            except (ValueError, IndexError):
                continue
            if sha not in self.mirror.modules:
                out.append((key, None))
        return out

    # --- applying -----------------------------------------------------------------------------

    async def apply(self, batch: Iterable[records.Record]) -> None:
        """Make every record of `batch` durable, in as few fenced transactions as etcd's limits
        allow; returns when all are committed."""
        batch = list(batch)
        if not batch:
            return
        for rec in batch:
            if isinstance(rec, records.StoreModule) and len(rec.data) > MODULE_MAX_BYTES:
                raise ModuleTooLarge(
                    f"module {rec.sha256.hex()} has {len(rec.data)} bytes; the etcd store "
                    f"holds modules up to {MODULE_MAX_BYTES} bytes (module_max_bytes must not "
                    "exceed it)")
        async with self._lock:
            if self.fence is None:
                raise NotLeader("etcd store: this master does not lead; it writes nothing")
            if not self._mirror_ok:
                await self._load()
            groups = [translate(self.mirror, rec) for rec in batch]
            try:
                txns = plan_transactions(groups)
            except RecordTooLarge:
                self._mirror_ok = False  # it holds the batch; etcd does not
                raise
            await self._commit(txns)
            self.commits += 1

    async def _commit(self, txns: list[dict[str, bytes | None]]) -> None:
        fence = self.fence
        if fence is None:
            raise NotLeader("etcd store: this master does not lead; it writes nothing")
        compare = [cmp_create_revision(fence.key, fence.create_revision)]
        try:
            for txn in txns:
                ops = [op_put(self.key(k), v) if v is not None else op_delete(self.key(k))
                       for k, v in txn.items()]
                try:
                    result = await self.client.txn(compare, ops)
                except EtcdError as e:
                    if e.unavailable:
                        raise self._unavailable(e, "write") from None
                    raise
                if not result.succeeded:
                    self.set_fence(None)
                    raise NotLeader(
                        "etcd store: the election key is no longer this master's (lease "
                        "expired or deposed); nothing more was written")
                self.transactions += 1
                self.mirror.revision = result.revision
        except BaseException:
            # The mirror holds the batch's changes, etcd maybe not (or part): read it back
            # before the next use.
            self._mirror_ok = False
            raise

    # --- module bytes -------------------------------------------------------------------------

    async def read_module(self, sha256: bytes, offset: int = 0, length: int = -1) -> bytes:
        """Bytes [offset, offset + length) of a stored module (length -1: to the end).
        FileNotFoundError if no such module is stored (as the SQLite store's missing file)."""
        row = self.mirror.modules.get(sha256)
        if row is None and not self._leading:
            row = await self._module_row(sha256)
        if row is None:
            raise FileNotFoundError(f"module {sha256.hex()} is not in the etcd store")
        size, chunks = row[0], row[4]
        end = size if length < 0 else min(size, offset + length)
        if offset >= end:
            return b""
        first, last = offset // CHUNK_BYTES, (end - 1) // CHUNK_BYTES
        base = f"blobs/{sha256.hex()}/"
        try:
            page = await self.client.range(self.key(base + hex_id(first, 8)),
                                           self.key(base + hex_id(min(last, chunks - 1) + 1, 8)))
        except EtcdError as e:
            if e.unavailable:
                raise self._unavailable(e, "read module bytes") from None
            raise
        data = b"".join(kv.value for kv in page.kvs)
        if len(page.kvs) != last - first + 1:
            raise FileNotFoundError(f"module {sha256.hex()}: chunks missing in the etcd store")
        skip = offset - first * CHUNK_BYTES
        return data[skip:skip + (end - offset)]

    async def _module_row(self, sha256: bytes) -> list[Any] | None:
        try:
            kv = await self.client.get(self.key(f"data/modules/{sha256.hex()}"))
        except EtcdError as e:
            raise self._unavailable(e, "read a module") from None
        return list(cbor2.loads(kv.value)) if kv is not None else None

    # --- warm standby -------------------------------------------------------------------------

    async def follow(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                     ) -> None:
        """Keep the mirror current from a watch on the prefix (a standby runs this in its
        nursery). Returns when `recover()` took over (this master leads). Reconnects after a
        lost endpoint; reads everything again if etcd compacted the history it needed."""
        with trio.CancelScope() as scope:
            self._follow_scope = scope
            try:
                await self._follow(task_status)
            finally:
                self._follow_scope = None

    async def _follow(self, task_status: trio.TaskStatus[None]) -> None:
        started = False
        failing = False
        cut = len(self._p)
        data = b"data/"
        while not self._leading:
            try:
                if not self._mirror_ok:
                    await self._load()
                    self._wake()
                if not started:
                    task_status.started()
                    started = True
                async with self.client.watch(self._p, prefix_end(self._p),
                                             start_revision=self.mirror.revision + 1) as watch:
                    async for events, _revision in watch:
                        if failing:
                            failing = False
                            log.warning("etcd: following the state again (revision %d)",
                                        self.mirror.revision,
                                        extra={"event": "etcd-available"})
                        mirror = self.mirror
                        for ev in events:
                            key = ev.kv.key[cut:]
                            if key.startswith(data):
                                if ev.kind == "DELETE":
                                    mirror.drop(key.decode())
                                else:
                                    mirror.load(key.decode(), ev.kv.value)
                            mirror.revision = max(mirror.revision, ev.kv.mod_revision)
                        # (Not the header's revision: on a watch's first answer it is etcd's
                        # current revision, with the events up to it still to come.)
                        self._wake()
            except (EtcdError, StoreUnavailable) as e:
                if isinstance(e, EtcdError) and not e.unavailable:
                    self._mirror_ok = False  # compacted or refused: read everything again
                if not failing:
                    failing = True
                    log.warning("etcd: following the state stopped (%s); resuming from "
                                "revision %d when etcd answers", e, self.mirror.revision + 1,
                                extra={"event": "etcd-unavailable"})
                await trio.sleep(0.2)

    def _wake(self) -> None:
        event, self._caught_up = self._caught_up, trio.Event()
        event.set()
