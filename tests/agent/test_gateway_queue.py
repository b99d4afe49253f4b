"""The gateway's SQLite queue: rows and names survive reopening; readings as files."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from edgerm_agent.gateway import Row
from edgerm_agent.gateway_queue import GatewayQueue, reading_path, reading_value


def test_rows_and_names_survive_a_reopen_in_order(tmp_path: Path) -> None:
    q = GatewayQueue(tmp_path / "q.sqlite", tmp_path / "readings")
    for i in (3, 1, 2):
        q.add(Row(i, 7, 10 + i, bytes([i])))
    q.forget((2,))
    q.name(7, "mote")
    q.close()
    q = GatewayQueue(tmp_path / "q.sqlite", tmp_path / "readings")
    rows, names = q.load()
    assert [r.row_id for r in rows] == [1, 3] and rows[1] == Row(3, 7, 13, b"\x03")
    assert names == {7: "mote"}
    q.close()


def test_readings_are_files_whose_names_cannot_escape(tmp_path: Path) -> None:
    q = GatewayQueue(tmp_path / "q.sqlite", tmp_path / "readings")
    q.reading("../etc", "..", b"21.5")
    q.reading("mote", "", b"1")
    q.close()
    p = reading_path(tmp_path / "readings", "../etc", "..")
    assert p.read_bytes() == b"21.5"
    assert p.resolve().is_relative_to((tmp_path / "readings").resolve())
    assert reading_path(tmp_path / "readings", "mote", "data").read_bytes() == b"1"


def test_reading_values() -> None:
    assert reading_value(b"21.5") == 21.5
    assert reading_value(b" 7 \n") == 7.0
    assert reading_value(struct.pack("<d", -3.25)) == -3.25
    with pytest.raises(ValueError):
        reading_value(b"warm")
