"""The agent's module cache: WASM modules by sha256, fetched from the master once.

A module is fetched through the link (CoAP GET `m/<hex>` with Block2, or WebSocket module
chunks), verified against its sha256 and stored as `<work_dir>/modules/<hex>.wasm` (written to a
temporary name, then renamed). Concurrent launches of one module share one fetch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

__all__ = ["ModuleStore", "ModuleUnavailable", "ModuleHashMismatch", "MAX_MODULE_SIZE"]

# Larger than any sensible edge task; a bigger `size` is refused before anything is fetched.
MAX_MODULE_SIZE = 16 * 1024 * 1024


class ModuleUnavailable(Exception):
    """The master could not provide the module (unknown, too large, link down)."""


class ModuleHashMismatch(Exception):
    """The bytes fetched do not hash to the module's name."""


Fetcher = Callable[[bytes, int], Awaitable[bytes]]


class ModuleStore:
    def __init__(self, directory: Path, fetch: Fetcher) -> None:
        self.dir = directory
        self._fetch = fetch
        self._verified: set[bytes] = set()
        self._fetching: dict[bytes, trio.Event] = {}

    def path_for(self, sha256: bytes) -> Path:
        return self.dir / f"{sha256.hex()}.wasm"

    async def get(self, sha256: bytes, size: int) -> Path:
        """The path of the verified module, fetching it first if needed.

        Raises: ModuleUnavailable, ModuleHashMismatch.
        """
        if len(sha256) != 32:
            raise ModuleUnavailable("sha256 must be 32 bytes")
        if size > MAX_MODULE_SIZE:
            raise ModuleUnavailable(f"module of {size} bytes over the agent's limit")
        path = self.path_for(sha256)
        while True:
            if sha256 in self._verified and path.exists():
                return path
            if path.exists() and await trio.to_thread.run_sync(_hash_file, path) == sha256:
                self._verified.add(sha256)
                return path
            pending = self._fetching.get(sha256)
            if pending is None:
                break
            await pending.wait()
            if sha256 not in self._verified:
                break  # the other fetch failed: try ourselves
        done = self._fetching[sha256] = trio.Event()
        try:
            data = await self._fetch(sha256, size)
            if hashlib.sha256(data).digest() != sha256:
                raise ModuleHashMismatch(
                    f"fetched {len(data)} bytes hash to {hashlib.sha256(data).hexdigest()}, "
                    f"not {sha256.hex()}")
            await trio.to_thread.run_sync(_write_atomic, path, data)
            self._verified.add(sha256)
            return path
        finally:
            del self._fetching[sha256]
            done.set()


def _hash_file(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
