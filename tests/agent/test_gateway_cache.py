"""The gateway's module cache: hash checked on the way in and out, bounded, LRU across restarts."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from edgerm_agent.gateway_cache import ModuleCache


def mod(n: int, size: int = 100) -> tuple[bytes, bytes]:
    data = bytes([n]) * size
    return hashlib.sha256(data).digest(), data


def test_put_get_and_a_wrong_hash_is_refused(tmp_path: Path) -> None:
    cache = ModuleCache(tmp_path, 1000)
    sha, data = mod(1)
    with pytest.raises(ValueError):
        cache.put(sha, data + b"x")
    assert cache.get(sha) is None
    assert cache.put(sha, data)
    assert cache.get(sha) == data and sha in cache


def test_least_recently_used_goes_first_and_the_order_survives_a_restart(tmp_path: Path) -> None:
    cache = ModuleCache(tmp_path, 300)
    (s1, d1), (s2, d2), (s3, d3), (s4, d4) = mod(1), mod(2), mod(3), mod(4)
    for s, d in ((s1, d1), (s2, d2), (s3, d3)):
        cache.put(s, d)
    os.utime(tmp_path / s1.hex(), (1, 1))
    os.utime(tmp_path / s2.hex(), (2, 2))
    os.utime(tmp_path / s3.hex(), (3, 3))
    cache = ModuleCache(tmp_path, 300)     # a restart reads the use order from the files
    assert cache.get(s1) == d1             # s1 used: s2 is now the oldest
    cache.put(s4, d4)
    assert s2 not in cache and not (tmp_path / s2.hex()).exists()
    assert cache.get(s1) == d1 and cache.get(s3) == d3 and cache.get(s4) == d4
    assert cache.size <= 300 and cache.evicted == 1


def test_larger_than_the_cache_is_not_kept_and_a_corrupt_file_is_dropped(tmp_path: Path) -> None:
    cache = ModuleCache(tmp_path, 50)
    sha, data = mod(1)
    assert not cache.put(sha, data) and cache.get(sha) is None
    cache = ModuleCache(tmp_path, 500)
    cache.put(sha, data)
    (tmp_path / sha.hex()).write_bytes(b"tampered")
    assert cache.get(sha) is None and not (tmp_path / sha.hex()).exists()
