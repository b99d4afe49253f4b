"""The gateway's on-disk queue (SQLite): the devices' protected requests kept during a cut.

What the gateway accepted from a device survives a crash of the gateway (SIGKILL, power): a kept
request is committed (synchronous=FULL, WAL) before it goes upstream, and deleted only once the
master answered it (docs/gateway.md, "Store and forward"). The rows are opaque: each is the
device's OSCORE-protected request as relayed (`gateway_entry.py`), with its kid and Partial IV.

Blocking: every method does file I/O; the shell calls them with `trio.to_thread.run_sync`. One
connection, used from one worker thread at a time (the shell serialises calls with a lock).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edgerm_agent.gateway import Row

__all__ = ["GatewayQueue"]

# `piv` was `update_id` before issue 16 (a queue from then holds plain calls, which the master
# now refuses as a downgrade: they are relayed once and forgotten). Rows are read by position.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (row_id INTEGER PRIMARY KEY, agent_id INTEGER NOT NULL,
                                 piv INTEGER NOT NULL, data BLOB NOT NULL);
"""


class GatewayQueue:
    """Open (and create) the queue at `path`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def load(self) -> tuple[Row, ...]:
        return tuple(Row(r[0], r[1], r[2], bytes(r[3])) for r in self.db.execute(
            "SELECT * FROM rows ORDER BY row_id"))

    def add(self, row: Row) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?)",
                            (row.row_id, row.agent_id, row.piv, row.data))

    def forget(self, row_ids: tuple[int, ...]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM rows WHERE row_id = ?", [(i,) for i in row_ids])

    def close(self) -> None:
        self.db.close()
