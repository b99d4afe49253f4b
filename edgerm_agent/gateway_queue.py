"""The gateway's on-disk queue (SQLite): kept device updates, device names, latest readings.

What the gateway accepted from a device survives a crash of the gateway (SIGKILL, power): a kept
update is committed (synchronous=FULL, WAL) before it goes upstream, and deleted only once the
master answered it (docs/gateway.md, "Store and forward"). The latest readings are also written
as one small file per device and topic under `readings/`, where the gateway's WASM tasks read
them (`read_sensor("<device>/<topic>")`, proto/wasm_abi.md) without a round trip to the agent.

Blocking: every method does file I/O; the shell calls them with `trio.to_thread.run_sync`. One
connection, used from one worker thread at a time (the shell serialises calls with a lock).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from edgerm_agent.gateway import Row
from edgerm_agent.sensors import reading_path, reading_value

__all__ = ["GatewayQueue", "reading_path", "reading_value"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (row_id INTEGER PRIMARY KEY, agent_id INTEGER NOT NULL,
                                 update_id INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS devices (agent_id INTEGER PRIMARY KEY, name TEXT NOT NULL);
"""


class GatewayQueue:
    """Open (and create) the queue at `path`; readings go under `readings`."""

    def __init__(self, path: Path, readings: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        readings.mkdir(parents=True, exist_ok=True)
        self.readings = readings
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def load(self) -> tuple[tuple[Row, ...], dict[int, str]]:
        rows = tuple(Row(r[0], r[1], r[2], bytes(r[3])) for r in self.db.execute(
            "SELECT row_id, agent_id, update_id, data FROM rows ORDER BY row_id"))
        names = {a: n for a, n in self.db.execute("SELECT agent_id, name FROM devices")}
        return rows, names

    def add(self, row: Row) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?)",
                            (row.row_id, row.agent_id, row.update_id, row.data))

    def forget(self, row_ids: tuple[int, ...]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM rows WHERE row_id = ?", [(i,) for i in row_ids])

    def name(self, agent_id: int, name: str) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR REPLACE INTO devices VALUES (?, ?)", (agent_id, name))

    def reading(self, device: str, topic: str, data: bytes) -> None:
        """Replace the device's latest reading under `topic` (atomically: write, then rename)."""
        path = reading_path(self.readings, device, topic)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def close(self) -> None:
        self.db.close()
