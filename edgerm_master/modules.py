"""The module store (issue 5.3): task modules (WASM, MicroPython source or .mpy), content-addressed
by SHA-256.

Who does what:
- the core keeps the catalogue (sha256 -> size, format, how many tasks refer to it), checks
  uploads with `check_module` and size limits, and emits `StoreModule` / `RemoveModule` records
  (a module no task refers to is removed after `module_grace_s`);
- the store writes the bytes (SQLite backend: to `<data_dir>/modules/<hex>`, fsynced before the
  row commits; etcd backend: as chunks, before the row) and reads them back (`read_module`);
- `ModuleReader` here serves them to agents: CoAP GET `m/<hex>` (Block2 by the transport) and
  WebSocket `AgentCall.module` chunks, reading through the store's async `read_module`; a small
  LRU keeps the hot modules in memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

from edgerm.tasks import parse_sha256_hex as parse_hex  # what service.py imports from here
from edgerm.wire import pb

__all__ = ["check_module", "parse_hex", "ModuleReader", "ModuleError"]


class ModuleError(ValueError):
    """An upload that is not what its format says."""


def check_module(fmt: int, data: bytes) -> None:
    """Raise `ModuleError` unless `data` looks like a module of format `fmt`."""
    if fmt == pb.WASM_MODULE:
        if not data.startswith(b"\0asm"):
            raise ModuleError("UploadModule.data is not a WASM module (no \\0asm magic)")
    elif fmt == pb.MICROPYTHON_MPY:
        if not data.startswith(b"M"):
            raise ModuleError("UploadModule.data is not .mpy bytecode (no 'M' header)")
    elif fmt == pb.MICROPYTHON_SOURCE:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise ModuleError("MicroPython source must be UTF-8") from None
    else:
        raise ModuleError("UploadModule.format must be WASM_MODULE, MICROPYTHON_SOURCE or "
                          "MICROPYTHON_MPY")


class ModuleReader:
    """Reads whole modules with `read_module(sha256)` (the store's), keeping up to `cache_bytes`
    of them in memory."""

    def __init__(self, read_module: Callable[[bytes], Awaitable[bytes]],
                 cache_bytes: int = 8 * 1024 * 1024) -> None:
        self._read_module = read_module
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._cached = 0

    def cached(self, sha256: bytes) -> bytes | None:
        data = self._cache.get(sha256)
        if data is not None:
            self._cache.move_to_end(sha256)
        return data

    async def read(self, sha256: bytes) -> bytes:
        """The whole module. Raises what the store's read raises (OSError: not stored;
        store_api.StoreUnavailable: the store cannot be reached)."""
        data = self.cached(sha256)
        if data is not None:
            return data
        data = await self._read_module(sha256)
        if len(data) <= self.cache_bytes:
            self._cache[sha256] = data
            self._cached += len(data)
            while self._cached > self.cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._cached -= len(old)
        return data

    def forget(self, sha256: bytes) -> None:
        data = self._cache.pop(sha256, None)
        if data is not None:
            self._cached -= len(data)
