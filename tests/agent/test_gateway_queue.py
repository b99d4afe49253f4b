"""The gateway's SQLite queue: kept rows survive reopening, in order; a queue written before
issue 16 (column `update_id`) still loads. The readings helpers the WASM executor reads with."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import pytest

from edgerm_agent.gateway import Row
from edgerm_agent.gateway_queue import GatewayQueue
from edgerm_agent.sensors import reading_path, reading_value


def test_rows_survive_a_reopen_in_order(tmp_path: Path) -> None:
    q = GatewayQueue(tmp_path / "q.sqlite")
    for i in (3, 1, 2):
        q.add(Row(i, 7, 10 + i, bytes([i])))
    q.forget((2,))
    q.close()
    q = GatewayQueue(tmp_path / "q.sqlite")
    rows = q.load()
    assert [r.row_id for r in rows] == [1, 3] and rows[1] == Row(3, 7, 13, b"\x03")
    q.close()


def test_a_queue_from_before_oscore_loads(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "q.sqlite")
    db.executescript("CREATE TABLE rows (row_id INTEGER PRIMARY KEY, agent_id INTEGER NOT NULL,"
                     " update_id INTEGER NOT NULL, data BLOB NOT NULL);"
                     "CREATE TABLE devices (agent_id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
                     "INSERT INTO rows VALUES (4, 7, 2, x'a1');")
    db.commit()
    db.close()
    q = GatewayQueue(tmp_path / "q.sqlite")
    assert q.load() == (Row(4, 7, 2, b"\xa1"),)
    q.add(Row(5, 7, 9, b"\x02"))
    assert [r.row_id for r in q.load()] == [4, 5]
    q.close()


def test_reading_names_cannot_escape_and_values_parse(tmp_path: Path) -> None:
    p = reading_path(tmp_path / "readings", "../etc", "..")
    assert p.resolve().is_relative_to((tmp_path / "readings").resolve())
    assert reading_path(tmp_path / "r", "mote", "").name == "data"
    assert reading_value(b"21.5") == 21.5
    assert reading_value(b" 7 \n") == 7.0
    assert reading_value(struct.pack("<d", -3.25)) == -3.25
    with pytest.raises(ValueError):
        reading_value(b"warm")
