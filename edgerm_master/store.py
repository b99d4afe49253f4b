"""The registrar: makes records durable in SQLite (WAL) and reads them all back on start.

Two verbs, as Mesos's registrar: `recover() -> Snapshot` and `apply(records)`. `apply` writes one
batch in one transaction; when it returns, the batch is durable (synchronous=FULL by default) and
the shell may send the messages the batch allows. Module bytes live in files named by their
SHA-256 under `<data_dir>/modules/`, written and fsynced before the row that names them commits.

Resource handling: one `sqlite3.Connection` per Store, opened with `check_same_thread=False`
because the shell calls `apply` through `trio.to_thread.run_sync`; the shell never runs two calls
at once (one flusher task), so the connection is never shared concurrently. `close()` closes it.

Error handling: sqlite3 errors escape `apply`; the shell treats them as fatal (a master that
cannot persist must stop rather than act on what it could not write).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from edgerm_master import records
from edgerm_master.agent_states import AGENT_ACTIVE, AGENT_LOST, AGENT_UNREACHABLE

__all__ = ["Store", "Snapshot", "AgentRow", "FrameworkRow", "TaskRow", "UpdateRow", "OutputRow",
           "ModuleRow"]

SCHEMA_VERSION = 2   # 2: tasks.output_seq and the outputs table

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS agents (
    id INTEGER PRIMARY KEY, secret BLOB NOT NULL, info BLOB NOT NULL,
    state INTEGER NOT NULL DEFAULT 0, unreachable_since REAL NOT NULL DEFAULT 0,
    update_ack INTEGER NOT NULL DEFAULT 0, command_ack INTEGER NOT NULL DEFAULT 0,
    next_command INTEGER NOT NULL DEFAULT 1, next_task INTEGER NOT NULL DEFAULT 1,
    admitted REAL NOT NULL DEFAULT 0, seq INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS frameworks (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, failover_s REAL NOT NULL,
    removing INTEGER NOT NULL DEFAULT 0, secret_digest BLOB NOT NULL DEFAULT x'');
CREATE TABLE IF NOT EXISTS tasks (
    framework_id TEXT NOT NULL, task_id TEXT NOT NULL, agent_id INTEGER NOT NULL,
    number INTEGER NOT NULL, spec BLOB NOT NULL, resources BLOB NOT NULL, state INTEGER NOT NULL,
    prev_state INTEGER NOT NULL DEFAULT 0, reason INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '', exit_code INTEGER NOT NULL DEFAULT 0,
    output_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (framework_id, task_id));
CREATE TABLE IF NOT EXISTS commands (
    agent_id INTEGER NOT NULL, id INTEGER NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (agent_id, id));
CREATE TABLE IF NOT EXISTS updates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, framework_id TEXT NOT NULL, task_id TEXT NOT NULL,
    uuid BLOB NOT NULL UNIQUE, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS outputs (
    framework_id TEXT NOT NULL, task_id TEXT NOT NULL, seq INTEGER NOT NULL,
    data BLOB NOT NULL, topic TEXT NOT NULL,
    PRIMARY KEY (framework_id, task_id, seq));
CREATE TABLE IF NOT EXISTS modules (
    sha256 BLOB PRIMARY KEY, size INTEGER NOT NULL, format INTEGER NOT NULL,
    name TEXT NOT NULL, created REAL NOT NULL);
"""


@dataclass(slots=True)
class AgentRow:
    agent_id: int
    secret: bytes
    info: bytes
    state: int
    unreachable_since: float
    update_ack: int
    command_ack: int
    next_command: int
    next_task: int
    seq: int = 0         # the seq of the last registration accepted (ReregisterAgent)


@dataclass(slots=True)
class FrameworkRow:
    framework_id: str
    name: str
    role: str
    failover_s: float
    removing: bool
    secret_digest: bytes


@dataclass(slots=True)
class TaskRow:
    framework_id: str
    task_id: str
    agent_id: int
    number: int
    spec: bytes
    resources: bytes
    state: int
    prev_state: int
    reason: int
    message: str
    exit_code: int
    output_seq: int = 0


@dataclass(slots=True)
class OutputRow:
    framework_id: str
    task_id: str
    seq: int
    data: bytes
    topic: str


@dataclass(slots=True)
class UpdateRow:
    framework_id: str
    task_id: str
    uuid: bytes
    body: bytes


@dataclass(slots=True)
class ModuleRow:
    sha256: bytes
    size: int
    fmt: int
    name: str
    created: float


@dataclass
class Snapshot:
    """Everything durable, in the order the core needs it."""

    epoch: int = 0
    next_agent_id: int = 1
    # Where the master's OSCORE sequence number starts (records.SetOscoreSeqBound; 0: never).
    oscore_seq_bound: int = 0
    agents: list[AgentRow] = field(default_factory=list)
    frameworks: list[FrameworkRow] = field(default_factory=list)
    tasks: list[TaskRow] = field(default_factory=list)
    commands: list[tuple[int, int, bytes]] = field(default_factory=list)  # agent, id, body
    updates: list[UpdateRow] = field(default_factory=list)  # oldest first
    outputs: list[OutputRow] = field(default_factory=list)  # by task, oldest first
    modules: list[ModuleRow] = field(default_factory=list)


class Store:
    """SQLite registrar under `data_dir` (created if missing)."""

    def __init__(self, data_dir: str, synchronous: str = "FULL") -> None:
        self.data_dir = data_dir
        self.module_dir = os.path.join(data_dir, "modules")
        os.makedirs(self.module_dir, exist_ok=True)
        self.path = os.path.join(data_dir, "master.sqlite3")
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"sqlite_synchronous must be FULL, NORMAL or EXTRA, not {synchronous}")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.executescript(_SCHEMA)
        self._migrate()
        self._unlink_after: list[str] = []
        self.commits = 0

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        """Bring a store written by an older master up to SCHEMA_VERSION (new tables are made
        by _SCHEMA; new columns here)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(agents)")}
        if "seq" not in columns:
            # 0: no registration seq known, so the first re-registration after the upgrade is
            # taken at any seq, as before; from then on the agent's seq must move forward.
            self._db.execute("ALTER TABLE agents ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(frameworks)")}
        if "secret_digest" not in columns:
            # A store from before framework secrets: its frameworks get an empty digest, which
            # no re-subscription matches (they must subscribe anew; nobody can take them over).
            self._db.execute("ALTER TABLE frameworks ADD COLUMN secret_digest BLOB NOT NULL"
                             " DEFAULT x''")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(tasks)")}
        if "output_seq" not in columns:
            self._db.execute(
                "ALTER TABLE tasks ADD COLUMN output_seq INTEGER NOT NULL DEFAULT 0")
        self._db.execute("INSERT INTO meta VALUES ('schema', ?) ON CONFLICT(key) DO UPDATE SET"
                         " value = max(value, excluded.value)", (SCHEMA_VERSION,))

    # --- recover ------------------------------------------------------------------------------

    def recover(self) -> Snapshot:
        """Read everything back and start a new boot epoch (it prefixes offer ids)."""
        db = self._db
        snap = Snapshot()
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        snap.epoch = int(meta.get("epoch", 0)) + 1
        snap.next_agent_id = int(meta.get("next_agent_id", 1))
        snap.oscore_seq_bound = int(meta.get("oscore_seq_bound", 0))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('epoch', ?)", (snap.epoch,))
        db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        snap.agents = [AgentRow(*row) for row in db.execute(
            "SELECT id, secret, info, state, unreachable_since, update_ack, command_ack,"
            " next_command, next_task, seq FROM agents ORDER BY id")]
        snap.frameworks = [FrameworkRow(a, b, c, d, bool(e), bytes(f))
                           for a, b, c, d, e, f in db.execute(
            "SELECT id, name, role, failover_s, removing, secret_digest FROM frameworks")]
        snap.tasks = [TaskRow(*row) for row in db.execute(
            "SELECT framework_id, task_id, agent_id, number, spec, resources, state, prev_state,"
            " reason, message, exit_code, output_seq FROM tasks")]
        snap.commands = list(db.execute(
            "SELECT agent_id, id, body FROM commands ORDER BY agent_id, id"))
        snap.updates = [UpdateRow(*row) for row in db.execute(
            "SELECT framework_id, task_id, uuid, body FROM updates ORDER BY seq")]
        snap.outputs = [OutputRow(*row) for row in db.execute(
            "SELECT framework_id, task_id, seq, data, topic FROM outputs"
            " ORDER BY framework_id, task_id, seq")]
        snap.modules = [ModuleRow(*row) for row in db.execute(
            "SELECT sha256, size, format, name, created FROM modules")]
        # Files without a row are leftovers of a crash between file write and commit.
        known = {m.sha256.hex() for m in snap.modules}
        for name in os.listdir(self.module_dir):
            if name not in known:
                try:
                    os.unlink(os.path.join(self.module_dir, name))
                except OSError:
                    pass
        return snap

    # --- apply --------------------------------------------------------------------------------

    def apply(self, batch: Iterable[records.Record]) -> None:
        """Make every record of `batch` durable, all or nothing."""
        batch = list(batch)
        if not batch:
            return
        db = self._db
        # Module bytes first: a row never names a file that is not on disk.
        for rec in batch:
            if isinstance(rec, records.StoreModule):
                self._write_module(rec)
        db.execute("BEGIN IMMEDIATE")
        try:
            for rec in batch:
                _APPLY[type(rec)](self, rec)
        except BaseException:
            db.execute("ROLLBACK")
            self._unlink_after.clear()
            raise
        db.execute("COMMIT")
        self.commits += 1
        for path in self._unlink_after:
            try:
                os.unlink(path)
            except OSError:
                pass
        self._unlink_after.clear()

    def module_path(self, sha256: bytes) -> str:
        return os.path.join(self.module_dir, sha256.hex())

    def read_module(self, sha256: bytes, offset: int = 0, length: int = -1) -> bytes:
        """Bytes of a stored module (blocking: call through trio.to_thread in the shell)."""
        with open(self.module_path(sha256), "rb") as f:
            f.seek(offset)
            return f.read(length)

    def _write_module(self, rec: records.StoreModule) -> None:
        final = self.module_path(rec.sha256)
        if os.path.exists(final):
            return
        tmp = final + ".tmp"
        with open(tmp, "wb") as f:
            f.write(rec.data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)

    # One small function per record type; `_APPLY` maps them.

    def _admit_agent(self, rec: records.AdmitAgent) -> None:
        self._db.execute(
            "INSERT INTO agents (id, secret, info, admitted) VALUES (?, ?, ?, ?)",
            (rec.agent_id, rec.secret, rec.info, rec.now))
        self._db.execute(
            "INSERT INTO meta VALUES ('next_agent_id', ?) ON CONFLICT(key) DO UPDATE SET"
            " value = max(value, excluded.value)", (rec.agent_id + 1,))

    def _set_oscore_seq_bound(self, rec: records.SetOscoreSeqBound) -> None:
        self._db.execute(
            "INSERT INTO meta VALUES ('oscore_seq_bound', ?) ON CONFLICT(key) DO UPDATE SET"
            " value = max(value, excluded.value)", (rec.bound,))

    def _reregister_agent(self, rec: records.ReregisterAgent) -> None:
        self._db.execute("UPDATE agents SET seq = max(seq, ?) WHERE id = ?",
                         (rec.seq, rec.agent_id))

    def _update_agent_info(self, rec: records.UpdateAgentInfo) -> None:
        self._db.execute("UPDATE agents SET info = ? WHERE id = ?", (rec.info, rec.agent_id))

    def _set_agent_state(self, agent_id: int, state: int, since: float) -> None:
        self._db.execute("UPDATE agents SET state = ?, unreachable_since = ? WHERE id = ?",
                         (state, since, agent_id))

    def _mark_unreachable(self, rec: records.MarkAgentUnreachable) -> None:
        self._set_agent_state(rec.agent_id, AGENT_UNREACHABLE, rec.since)

    def _mark_reachable(self, rec: records.MarkAgentReachable) -> None:
        self._set_agent_state(rec.agent_id, AGENT_ACTIVE, 0.0)

    def _mark_lost(self, rec: records.MarkAgentLost) -> None:
        self._set_agent_state(rec.agent_id, AGENT_LOST, 0.0)

    def _ack_updates(self, rec: records.AckAgentUpdates) -> None:
        self._db.execute("UPDATE agents SET update_ack = ? WHERE id = ?",
                         (rec.update_ack, rec.agent_id))

    def _enqueue_command(self, rec: records.EnqueueCommand) -> None:
        self._db.execute("INSERT INTO commands VALUES (?, ?, ?)",
                         (rec.agent_id, rec.command_id, rec.body))
        self._db.execute("UPDATE agents SET next_command = max(next_command, ?) WHERE id = ?",
                         (rec.command_id + 1, rec.agent_id))

    def _ack_commands(self, rec: records.AckCommands) -> None:
        self._db.execute("DELETE FROM commands WHERE agent_id = ? AND id <= ?",
                         (rec.agent_id, rec.command_ack))
        self._db.execute("UPDATE agents SET command_ack = ? WHERE id = ?",
                         (rec.command_ack, rec.agent_id))

    def _drop_command(self, rec: records.DropCommand) -> None:
        self._db.execute("DELETE FROM commands WHERE agent_id = ? AND id = ?",
                         (rec.agent_id, rec.command_id))

    def _add_framework(self, rec: records.AddFramework) -> None:
        self._db.execute(
            "INSERT INTO frameworks (id, name, role, failover_s, secret_digest)"
            " VALUES (?,?,?,?,?)",
            (rec.framework_id, rec.name, rec.role, rec.failover_s, rec.secret_digest))

    def _update_framework(self, rec: records.UpdateFramework) -> None:
        self._db.execute("UPDATE frameworks SET name = ?, failover_s = ? WHERE id = ?",
                         (rec.name, rec.failover_s, rec.framework_id))

    def _framework_removing(self, rec: records.MarkFrameworkRemoving) -> None:
        self._db.execute("UPDATE frameworks SET removing = 1 WHERE id = ?", (rec.framework_id,))

    def _remove_framework(self, rec: records.RemoveFramework) -> None:
        self._db.execute("DELETE FROM frameworks WHERE id = ?", (rec.framework_id,))
        self._db.execute("DELETE FROM updates WHERE framework_id = ?", (rec.framework_id,))
        self._db.execute("DELETE FROM tasks WHERE framework_id = ?", (rec.framework_id,))
        self._db.execute("DELETE FROM outputs WHERE framework_id = ?", (rec.framework_id,))

    def _add_task(self, rec: records.AddTask) -> None:
        self._db.execute(
            "INSERT INTO tasks (framework_id, task_id, agent_id, number, spec, resources, state)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rec.framework_id, rec.task_id, rec.agent_id, rec.number, rec.spec, rec.resources,
             rec.state))
        self._db.execute("UPDATE agents SET next_task = max(next_task, ?) WHERE id = ?",
                         (rec.number + 1, rec.agent_id))

    def _update_task(self, rec: records.UpdateTaskState) -> None:
        self._db.execute(
            "UPDATE tasks SET state = ?, prev_state = ?, reason = ?, message = ?, exit_code = ?"
            " WHERE framework_id = ? AND task_id = ?",
            (rec.state, rec.prev_state, rec.reason, rec.message, rec.exit_code,
             rec.framework_id, rec.task_id))

    def _remove_task(self, rec: records.RemoveTask) -> None:
        self._db.execute("DELETE FROM tasks WHERE framework_id = ? AND task_id = ?",
                         (rec.framework_id, rec.task_id))
        self._db.execute("DELETE FROM outputs WHERE framework_id = ? AND task_id = ?",
                         (rec.framework_id, rec.task_id))

    def _add_output(self, rec: records.AddOutput) -> None:
        self._db.execute("INSERT OR REPLACE INTO outputs VALUES (?, ?, ?, ?, ?)",
                         (rec.framework_id, rec.task_id, rec.seq, rec.data, rec.topic))
        self._db.execute("UPDATE tasks SET output_seq = max(output_seq, ?)"
                         " WHERE framework_id = ? AND task_id = ?",
                         (rec.seq, rec.framework_id, rec.task_id))

    def _release_outputs(self, rec: records.ReleaseOutputs) -> None:
        self._db.execute("DELETE FROM outputs WHERE framework_id = ? AND task_id = ? AND seq <= ?",
                         (rec.framework_id, rec.task_id, rec.upto))

    def _add_update(self, rec: records.AddStatusUpdate) -> None:
        self._db.execute(
            "INSERT INTO updates (framework_id, task_id, uuid, body) VALUES (?, ?, ?, ?)",
            (rec.framework_id, rec.task_id, rec.uuid, rec.body))

    def _ack_update(self, rec: records.AckStatusUpdate) -> None:
        self._db.execute("DELETE FROM updates WHERE uuid = ?", (rec.uuid,))

    def _store_module(self, rec: records.StoreModule) -> None:
        self._db.execute("INSERT OR IGNORE INTO modules VALUES (?, ?, ?, ?, ?)",
                         (rec.sha256, len(rec.data), rec.fmt, rec.name, rec.now))

    def _remove_module(self, rec: records.RemoveModule) -> None:
        self._db.execute("DELETE FROM modules WHERE sha256 = ?", (rec.sha256,))
        self._unlink_after.append(self.module_path(rec.sha256))

    # Introspection for tests: the rows as they are on disk.
    def rows(self, table: str) -> list[tuple[Any, ...]]:
        if table not in ("meta", "agents", "frameworks", "tasks", "commands", "updates",
                         "outputs", "modules"):
            raise ValueError(table)
        return list(self._db.execute(f"SELECT * FROM {table}"))


_APPLY: dict[type, Callable[[Store, Any], None]] = {
    records.AdmitAgent: Store._admit_agent,
    records.SetOscoreSeqBound: Store._set_oscore_seq_bound,
    records.ReregisterAgent: Store._reregister_agent,
    records.UpdateAgentInfo: Store._update_agent_info,
    records.MarkAgentUnreachable: Store._mark_unreachable,
    records.MarkAgentReachable: Store._mark_reachable,
    records.MarkAgentLost: Store._mark_lost,
    records.AckAgentUpdates: Store._ack_updates,
    records.EnqueueCommand: Store._enqueue_command,
    records.AckCommands: Store._ack_commands,
    records.DropCommand: Store._drop_command,
    records.AddFramework: Store._add_framework,
    records.UpdateFramework: Store._update_framework,
    records.MarkFrameworkRemoving: Store._framework_removing,
    records.RemoveFramework: Store._remove_framework,
    records.AddTask: Store._add_task,
    records.UpdateTaskState: Store._update_task,
    records.MarkTaskUnreachable: Store._update_task,
    records.MarkTaskLost: Store._update_task,
    records.MarkTaskKilled: Store._update_task,
    records.RemoveTask: Store._remove_task,
    records.AddStatusUpdate: Store._add_update,
    records.AckStatusUpdate: Store._ack_update,
    records.AddOutput: Store._add_output,
    records.ReleaseOutputs: Store._release_outputs,
    records.StoreModule: Store._store_module,
    records.RemoveModule: Store._remove_module,
}
