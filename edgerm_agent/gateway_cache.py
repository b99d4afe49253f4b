"""The gateway's module cache: content-addressed files, bounded, least recently used out.

A device behind the gateway downloads a module (CoAP GET `m/<sha256 hex>`, Block2) from the
gateway; the gateway fetches it across the uplink once, checks its SHA-256 and keeps it here, so
N devices cost the uplink one download. The bound (`[gateway] cache_mb`) counts file bytes; a
module larger than the whole cache is served but not kept. Use order survives a restart through
the files' modification times.

Blocking: file I/O; the shell calls it with `trio.to_thread.run_sync`.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

__all__ = ["ModuleCache"]


class ModuleCache:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.max_bytes = max_bytes
        self._order: OrderedDict[str, int] = OrderedDict()   # hex -> size, oldest use first
        found = []
        for p in directory.iterdir():
            if len(p.name) == 64 and all(c in "0123456789abcdef" for c in p.name):
                st = p.stat()
                found.append((st.st_mtime, p.name, st.st_size))
            elif p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)  # a write cut short by a crash
        for _, name, size in sorted(found):
            self._order[name] = size
        self.evicted = 0

    @property
    def size(self) -> int:
        return sum(self._order.values())

    def __contains__(self, sha256: bytes) -> bool:
        return sha256.hex() in self._order

    def get(self, sha256: bytes) -> bytes | None:
        """The module's bytes if cached and intact (a corrupt file is dropped), marking it used."""
        name = sha256.hex()
        if name not in self._order:
            return None
        path = self.directory / name
        try:
            data = path.read_bytes()
        except OSError:
            self._order.pop(name, None)
            return None
        if hashlib.sha256(data).digest() != sha256:
            self._order.pop(name, None)
            path.unlink(missing_ok=True)
            return None
        self._order.move_to_end(name)
        try:
            os.utime(path)
        except OSError:
            pass
        return data

    def put(self, sha256: bytes, data: bytes) -> bool:
        """Keep `data` as module `sha256`. Raises ValueError when the hash does not match.
        Returns False when it is larger than the whole cache (not kept)."""
        if hashlib.sha256(data).digest() != sha256:
            raise ValueError("module bytes do not match their SHA-256")
        name = sha256.hex()
        if len(data) > self.max_bytes:
            return False
        self._order.pop(name, None)
        while self._order and self.size + len(data) > self.max_bytes:
            old, _ = self._order.popitem(last=False)
            (self.directory / old).unlink(missing_ok=True)
            self.evicted += 1
        tmp = self.directory / (name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.directory / name)
        self._order[name] = len(data)
        return True
