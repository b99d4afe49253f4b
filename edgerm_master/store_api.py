"""The store the master's shell talks to: one async interface, two backends.

    snap = await store.recover()          # everything durable (and a new boot epoch)
    await store.apply(records)            # durable when it returns: then act on them
    data = await store.read_module(sha256, offset, length)
    await store.aclose()

`SqliteStore` wraps the embedded SQLite registrar (`store.Store`, one master) and runs its
blocking calls in a worker thread; `EtcdStore` (`etcd_store.py`) keeps the records in an etcd
cluster that several masters share, one of them leading (`election.py`). `open_store(config)`
picks the backend that `[store] backend` names.

Errors every backend raises the same way:
- `NotLeader`: this master does not (or no longer) lead; nothing of the batch was written by it
  after it lost the lead. It must not act on the batch.
- `StoreUnavailable`: the store cannot be reached (no etcd quorum). Nothing of the batch may be
  acted on; the same batch may be applied again later (every record is idempotent on retry).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import trio

from edgerm_master import records
from edgerm_master.store import Snapshot, Store

if TYPE_CHECKING:
    from edgerm_master.config import MasterConfig
    from edgerm_master.etcd_client import EtcdClient

__all__ = ["MasterStore", "SqliteStore", "NotLeader", "StoreUnavailable", "Fence", "open_store",
           "ModuleTooLarge"]


class NotLeader(Exception):
    """A write was refused because this master's election key is no longer its own (deposed,
    lease expired), or it never led. Stop acting; become a standby."""


class StoreUnavailable(Exception):
    """The store cannot be reached or has no quorum; the message says which endpoints failed and
    what to do. Nothing of the batch may be acted on until a later `apply` of it succeeds."""


class ModuleTooLarge(ValueError):
    """A module larger than the backend can hold (etcd: `etcd_store.MODULE_MAX_BYTES`)."""


@dataclass(frozen=True, slots=True)
class Fence:
    """What every write is conditioned on: the election key and the revision at which this
    master created it. A later leader's key has another create_revision (revisions never
    repeat), so a deposed master's compare fails whatever it tries."""

    key: bytes
    create_revision: int


class MasterStore(Protocol):
    """What MasterService uses (both backends)."""

    module_max_bytes: int

    async def recover(self) -> Snapshot: ...

    async def apply(self, batch: Iterable[records.Record]) -> None: ...

    async def read_module(self, sha256: bytes, offset: int = 0, length: int = -1) -> bytes: ...

    async def aclose(self) -> None: ...


class SqliteStore:
    """The SQLite registrar behind the async interface. A single master always leads it, so it
    never raises NotLeader; its sqlite3 errors escape as before (fatal: see store.py)."""

    # No backend limit of its own beyond the master's module_max_bytes.
    module_max_bytes = 1 << 62

    def __init__(self, store: Store) -> None:
        self.sync = store
        self.module_dir = store.module_dir

    @classmethod
    async def open(cls, data_dir: str, synchronous: str = "FULL") -> SqliteStore:
        return cls(await trio.to_thread.run_sync(Store, data_dir, synchronous))

    @property
    def commits(self) -> int:
        return self.sync.commits

    async def recover(self) -> Snapshot:
        return await trio.to_thread.run_sync(self.sync.recover)

    async def apply(self, batch: Iterable[records.Record]) -> None:
        batch = list(batch)
        if batch:
            await trio.to_thread.run_sync(self.sync.apply, batch)

    async def read_module(self, sha256: bytes, offset: int = 0, length: int = -1) -> bytes:
        return await trio.to_thread.run_sync(self.sync.read_module, sha256, offset, length)

    async def aclose(self) -> None:
        self.sync.close()


async def open_store(config: MasterConfig, *, client: EtcdClient | None = None) -> MasterStore:
    """The backend `config.store_backend` names. For etcd, `client` is the caller's (shared with
    the election); without one a client on `config.store_endpoints` is made and closed with the
    store. An EtcdStore writes nothing until it is given a `Fence` (see etcd_store.py)."""
    if config.store_backend == "sqlite":
        return await SqliteStore.open(config.data_dir, config.sqlite_synchronous)
    from edgerm_master.etcd_client import EtcdClient
    from edgerm_master.etcd_store import EtcdStore
    own = client is None
    if client is None:
        client = EtcdClient(config.store_endpoints, timeout_s=config.store_timeout_s,
                            ca_file=config.store_ca_file, cert_file=config.store_cert_file,
                            key_file=config.store_key_file)
    return EtcdStore(client, config.store_prefix, own_client=own)
