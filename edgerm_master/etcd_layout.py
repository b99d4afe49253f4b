"""How the registrar's records become etcd keys (sans-IO: no etcd here; etcd_store.py does
the I/O): the key layout, the in-memory `Mirror` of every record, the translation of a record
into key writes against it, and the cutting of a batch's writes into transactions within etcd's
limits (docs/ha.md, "The store on etcd").

Key layout under `<prefix>` (ids in fixed-width hex so keys sort like numbers, framework and
task ids percent-quoted so "/" stays a separator):

    leader                                  election key (election.py), under the leader's lease
    members/<name>                          members registry (election.py), under each lease
    data/meta/epoch, data/meta/next_agent_id, data/meta/schema, data/meta/oscore_seq_bound
    data/agents/<id>                        CBOR [secret, info, state, unreachable_since,
                                              update_ack, command_ack, next_command, next_task,
                                              admitted, seq]
    data/frameworks/<fw>                    CBOR [name, role, failover_s, removing, digest]
    data/tasks/<fw>/<task>                  CBOR [agent, number, spec, resources, state,
                                              prev_state, reason, message, exit_code, output_seq]
    data/commands/<agent>/<id>              encoded pb.Command
    data/updates/<seq>                      CBOR [fw, task, uuid, body]; seq orders them
    data/outputs/<fw>/<task>/<seq>          CBOR [data, topic]
    data/modules/<sha256 hex>               CBOR [size, format, name, created, chunk count]
    blobs/<sha256 hex>/<n>                  module bytes, CHUNK_BYTES each

A record is turned into key writes against the mirror (an ack deletes the keys the mirror
knows, so a transaction never needs a range delete, whose ranges etcd refuses to mix with
puts); the mirror changes as it goes. The same mirror, fed key by key (`load`, `drop`), is what
a standby rebuilds from a watch: the two agree (tests/master/test_etcd_layout.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import cbor2

from edgerm_master import records
from edgerm_master.agent_states import AGENT_ACTIVE, AGENT_LOST, AGENT_UNREACHABLE
from edgerm_master.store import (
    AgentRow,
    FrameworkRow,
    ModuleRow,
    OutputRow,
    Snapshot,
    TaskRow,
    UpdateRow,
)

__all__ = ["Mirror", "Write", "translate", "plan_transactions", "RecordTooLarge", "MAX_TXN_OPS",
           "MAX_TXN_BYTES", "CHUNK_BYTES", "MODULE_MAX_BYTES", "hex_id"]

# etcd's defaults: --max-txn-ops 128 operations per transaction, --max-request-bytes 1.5 MiB per
# request. A transaction here stays under both with room to spare: the request also carries the
# compare, keys and protobuf framing, and the JSON gateway's base64 does not count (it is
# decoded before the limit applies).
MAX_TXN_OPS = 128
MAX_TXN_BYTES = 1024 * 1024
# Module bytes go in chunks of this size: three fit in one transaction with other records.
CHUNK_BYTES = 256 * 1024
# The largest module etcd holds for us. etcd keeps its whole database in memory-mapped pages
# (2 GiB quota by default) and replicates each write to every member: big blobs belong in an
# object store, not here. 16 MiB is 64 chunks; the master's module_max_bytes (1 MiB by default)
# must not exceed it with the etcd backend (config.py checks).
MODULE_MAX_BYTES = 16 * 1024 * 1024
# What one etcd write costs beyond its key and value, for the size budget.
_OP_OVERHEAD = 32

Write = tuple[str, bytes | None]   # key below <prefix>, value (None: delete)


class RecordTooLarge(ValueError):
    """One record's value is larger than one etcd request may carry (a task spec near
    MAX_TXN_BYTES: the framework's message limit allows more than etcd does)."""


def _q(text: str) -> str:
    return quote(text, safe="")


def hex_id(n: int, width: int = 16) -> str:
    return f"{n:0{width}x}"


@dataclass
class Mirror:
    """Every `data/` record of the prefix, decoded: what etcd holds (or will, once the writes
    computed from it commit). `revision` is the etcd revision it reflects."""

    meta: dict[str, int] = field(default_factory=dict)
    agents: dict[int, list[Any]] = field(default_factory=dict)
    frameworks: dict[str, list[Any]] = field(default_factory=dict)
    tasks: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    commands: dict[int, dict[int, bytes]] = field(default_factory=dict)
    updates: dict[int, list[Any]] = field(default_factory=dict)
    update_by_uuid: dict[bytes, int] = field(default_factory=dict)
    outputs: dict[tuple[str, str], dict[int, list[Any]]] = field(default_factory=dict)
    modules: dict[bytes, list[Any]] = field(default_factory=dict)
    revision: int = 0
    last_update_seq: int = 0    # the highest update seq seen: a new update's is above it

    # --- keys in (from etcd: a load, a watch) ----------------------------------------------

    def load(self, key: str, value: bytes) -> None:
        """Take one `data/...` key (without the prefix) and its value. Unknown keys are
        ignored (written by a newer master)."""
        parts = key.split("/")
        kind = parts[1] if len(parts) > 1 else ""
        try:
            if kind == "meta" and len(parts) == 3:
                self.meta[parts[2]] = int(value)
            elif kind == "agents" and len(parts) == 3:
                self.agents[int(parts[2], 16)] = list(cbor2.loads(value))
            elif kind == "frameworks" and len(parts) == 3:
                self.frameworks[unquote(parts[2])] = list(cbor2.loads(value))
            elif kind == "tasks" and len(parts) == 4:
                self.tasks[unquote(parts[2]), unquote(parts[3])] = list(cbor2.loads(value))
            elif kind == "commands" and len(parts) == 4:
                self.commands.setdefault(int(parts[2], 16), {})[int(parts[3], 16)] = value
            elif kind == "updates" and len(parts) == 3:
                seq = int(parts[2], 16)
                row = list(cbor2.loads(value))
                self.updates[seq] = row
                self.update_by_uuid[row[2]] = seq
                self.last_update_seq = max(self.last_update_seq, seq)
            elif kind == "outputs" and len(parts) == 5:
                task = unquote(parts[2]), unquote(parts[3])
                self.outputs.setdefault(task, {})[int(parts[4], 16)] = list(cbor2.loads(value))
            elif kind == "modules" and len(parts) == 3:
                self.modules[bytes.fromhex(parts[2])] = list(cbor2.loads(value))
        except (ValueError, TypeError, IndexError, cbor2.CBORDecodeError):
            pass  # not a record this master wrote: leave it alone

    def drop(self, key: str) -> None:
        parts = key.split("/")
        kind = parts[1] if len(parts) > 1 else ""
        try:
            if kind == "meta" and len(parts) == 3:
                self.meta.pop(parts[2], None)
            elif kind == "agents" and len(parts) == 3:
                self.agents.pop(int(parts[2], 16), None)
            elif kind == "frameworks" and len(parts) == 3:
                self.frameworks.pop(unquote(parts[2]), None)
            elif kind == "tasks" and len(parts) == 4:
                self.tasks.pop((unquote(parts[2]), unquote(parts[3])), None)
            elif kind == "commands" and len(parts) == 4:
                agent = int(parts[2], 16)
                queue = self.commands.get(agent)
                if queue is not None:
                    queue.pop(int(parts[3], 16), None)
                    if not queue:
                        del self.commands[agent]
            elif kind == "updates" and len(parts) == 3:
                row = self.updates.pop(int(parts[2], 16), None)
                if row is not None:
                    self.update_by_uuid.pop(row[2], None)
            elif kind == "outputs" and len(parts) == 5:
                task = unquote(parts[2]), unquote(parts[3])
                outs = self.outputs.get(task)
                if outs is not None:
                    outs.pop(int(parts[4], 16), None)
                    if not outs:
                        del self.outputs[task]
            elif kind == "modules" and len(parts) == 3:
                self.modules.pop(bytes.fromhex(parts[2]), None)
        except (ValueError, IndexError):
            pass

    # --- the snapshot out ---------------------------------------------------------------------

    def snapshot(self, epoch: int) -> Snapshot:
        snap = Snapshot(epoch=epoch, next_agent_id=self.meta.get("next_agent_id", 1),
                        oscore_seq_bound=self.meta.get("oscore_seq_bound", 0))
        snap.agents = [AgentRow(i, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[9])
                       for i, r in sorted(self.agents.items())]
        snap.frameworks = [FrameworkRow(f, r[0], r[1], r[2], bool(r[3]), r[4])
                           for f, r in sorted(self.frameworks.items())]
        # Records of a framework removed in a batch cut short by a crash (its key goes first)
        # are left over: they belong to nobody.
        known = self.frameworks
        snap.tasks = [TaskRow(f, t, *r) for (f, t), r in sorted(self.tasks.items()) if f in known]
        snap.commands = [(a, i, body) for a, queue in sorted(self.commands.items())
                         for i, body in sorted(queue.items())]
        snap.updates = [UpdateRow(*r) for _, r in sorted(self.updates.items()) if r[0] in known]
        snap.outputs = [OutputRow(f, t, s, r[0], r[1])
                        for (f, t), outs in sorted(self.outputs.items()) if f in known
                        for s, r in sorted(outs.items())]
        snap.modules = [ModuleRow(sha, r[0], r[1], r[2], r[3])
                        for sha, r in sorted(self.modules.items())]
        return snap


class _Translator:
    """Turns records into key writes against a mirror, changing the mirror as it goes (the
    same rules as store.Store's SQL: an update of a row that is not there changes nothing)."""

    def __init__(self, mirror: Mirror) -> None:
        self.m = mirror
        self.out: list[Write] = []

    def _agent(self, agent_id: int) -> list[Any] | None:
        return self.m.agents.get(agent_id)

    def _put_agent(self, agent_id: int, row: list[Any]) -> None:
        self.out.append((f"data/agents/{hex_id(agent_id)}", cbor2.dumps(row)))

    def _task_key(self, fw: str, task: str) -> str:
        return f"data/tasks/{_q(fw)}/{_q(task)}"

    def _put_task(self, fw: str, task: str, row: list[Any]) -> None:
        self.out.append((self._task_key(fw, task), cbor2.dumps(row)))

    def _delete_outputs(self, fw: str, task: str, upto: int | None = None) -> None:
        outs = self.m.outputs.get((fw, task))
        if not outs:
            return
        for seq in sorted(outs):
            if upto is None or seq <= upto:
                del outs[seq]
                self.out.append((f"data/outputs/{_q(fw)}/{_q(task)}/{hex_id(seq)}", None))
        if not outs:
            del self.m.outputs[fw, task]

    def admit_agent(self, rec: records.AdmitAgent) -> None:
        row = [rec.secret, rec.info, 0, 0.0, 0, 0, 1, 1, rec.now, 0]
        self.m.agents[rec.agent_id] = row
        self._put_agent(rec.agent_id, row)
        nxt = max(self.m.meta.get("next_agent_id", 1), rec.agent_id + 1)
        self.m.meta["next_agent_id"] = nxt
        self.out.append(("data/meta/next_agent_id", str(nxt).encode()))

    def set_oscore_seq_bound(self, rec: records.SetOscoreSeqBound) -> None:
        bound = max(self.m.meta.get("oscore_seq_bound", 0), rec.bound)
        self.m.meta["oscore_seq_bound"] = bound
        self.out.append(("data/meta/oscore_seq_bound", str(bound).encode()))

    def _set_agent(self, agent_id: int, index: int, value: Any, keep_max: bool = False) -> None:
        row = self._agent(agent_id)
        if row is None:
            return
        row[index] = max(row[index], value) if keep_max else value
        self._put_agent(agent_id, row)

    def reregister_agent(self, rec: records.ReregisterAgent) -> None:
        self._set_agent(rec.agent_id, 9, rec.seq, keep_max=True)

    def update_agent_info(self, rec: records.UpdateAgentInfo) -> None:
        self._set_agent(rec.agent_id, 1, rec.info)

    def _agent_state(self, agent_id: int, state: int, since: float) -> None:
        row = self._agent(agent_id)
        if row is not None:
            row[2], row[3] = state, since
            self._put_agent(agent_id, row)

    def mark_unreachable(self, rec: records.MarkAgentUnreachable) -> None:
        self._agent_state(rec.agent_id, AGENT_UNREACHABLE, rec.since)

    def mark_reachable(self, rec: records.MarkAgentReachable) -> None:
        self._agent_state(rec.agent_id, AGENT_ACTIVE, 0.0)

    def mark_lost(self, rec: records.MarkAgentLost) -> None:
        self._agent_state(rec.agent_id, AGENT_LOST, 0.0)

    def ack_updates(self, rec: records.AckAgentUpdates) -> None:
        self._set_agent(rec.agent_id, 4, rec.update_ack)

    def enqueue_command(self, rec: records.EnqueueCommand) -> None:
        self.m.commands.setdefault(rec.agent_id, {})[rec.command_id] = rec.body
        self.out.append((f"data/commands/{hex_id(rec.agent_id)}/{hex_id(rec.command_id)}",
                         rec.body))
        self._set_agent(rec.agent_id, 6, rec.command_id + 1, keep_max=True)

    def ack_commands(self, rec: records.AckCommands) -> None:
        queue = self.m.commands.get(rec.agent_id)
        if queue:
            for cid in sorted(c for c in queue if c <= rec.command_ack):
                del queue[cid]
                self.out.append((f"data/commands/{hex_id(rec.agent_id)}/{hex_id(cid)}", None))
            if not queue:
                del self.m.commands[rec.agent_id]
        self._set_agent(rec.agent_id, 5, rec.command_ack)

    def drop_command(self, rec: records.DropCommand) -> None:
        queue = self.m.commands.get(rec.agent_id)
        if queue and queue.pop(rec.command_id, None) is not None:
            self.out.append((f"data/commands/{hex_id(rec.agent_id)}/{hex_id(rec.command_id)}",
                             None))
            if not queue:
                del self.m.commands[rec.agent_id]

    def add_framework(self, rec: records.AddFramework) -> None:
        row = [rec.name, rec.role, rec.failover_s, False, rec.secret_digest]
        self.m.frameworks[rec.framework_id] = row
        self.out.append((f"data/frameworks/{_q(rec.framework_id)}", cbor2.dumps(row)))

    def _set_framework(self, fw: str, **changes: Any) -> None:
        row = self.m.frameworks.get(fw)
        if row is None:
            return
        for index, value in changes.items():
            row[int(index[1:])] = value
        self.out.append((f"data/frameworks/{_q(fw)}", cbor2.dumps(row)))

    def update_framework(self, rec: records.UpdateFramework) -> None:
        self._set_framework(rec.framework_id, i0=rec.name, i2=rec.failover_s)

    def framework_removing(self, rec: records.MarkFrameworkRemoving) -> None:
        self._set_framework(rec.framework_id, i3=True)

    def remove_framework(self, rec: records.RemoveFramework) -> None:
        fw = rec.framework_id
        # The framework's own key first: if a crash cuts this record's writes in two, what is
        # left names a framework that is gone, and recovery ignores it (Mirror.snapshot).
        if self.m.frameworks.pop(fw, None) is not None:
            self.out.append((f"data/frameworks/{_q(fw)}", None))
        for seq in sorted(s for s, r in self.m.updates.items() if r[0] == fw):
            row = self.m.updates.pop(seq)
            self.m.update_by_uuid.pop(row[2], None)
            self.out.append((f"data/updates/{hex_id(seq)}", None))
        for f, t in sorted(k for k in self.m.tasks if k[0] == fw):
            del self.m.tasks[f, t]
            self.out.append((self._task_key(f, t), None))
        for f, t in sorted(k for k in self.m.outputs if k[0] == fw):
            self._delete_outputs(f, t)

    def add_task(self, rec: records.AddTask) -> None:
        row = [rec.agent_id, rec.number, rec.spec, rec.resources, rec.state, 0, 0, "", 0, 0]
        self.m.tasks[rec.framework_id, rec.task_id] = row
        self._put_task(rec.framework_id, rec.task_id, row)
        self._set_agent(rec.agent_id, 7, rec.number + 1, keep_max=True)

    def update_task(self, rec: records.UpdateTaskState) -> None:
        row = self.m.tasks.get((rec.framework_id, rec.task_id))
        if row is None:
            return
        row[4:9] = [rec.state, rec.prev_state, rec.reason, rec.message, rec.exit_code]
        self._put_task(rec.framework_id, rec.task_id, row)

    def remove_task(self, rec: records.RemoveTask) -> None:
        if self.m.tasks.pop((rec.framework_id, rec.task_id), None) is not None:
            self.out.append((self._task_key(rec.framework_id, rec.task_id), None))
        self._delete_outputs(rec.framework_id, rec.task_id)

    def add_output(self, rec: records.AddOutput) -> None:
        row = [rec.data, rec.topic]
        self.m.outputs.setdefault((rec.framework_id, rec.task_id), {})[rec.seq] = row
        self.out.append((f"data/outputs/{_q(rec.framework_id)}/{_q(rec.task_id)}/"
                         f"{hex_id(rec.seq)}", cbor2.dumps(row)))
        task = self.m.tasks.get((rec.framework_id, rec.task_id))
        if task is not None and rec.seq > task[9]:
            task[9] = rec.seq
            self._put_task(rec.framework_id, rec.task_id, task)

    def release_outputs(self, rec: records.ReleaseOutputs) -> None:
        self._delete_outputs(rec.framework_id, rec.task_id, rec.upto)

    def add_update(self, rec: records.AddStatusUpdate) -> None:
        if rec.uuid in self.m.update_by_uuid:
            return  # applied already (a batch applied again after a timeout)
        seq = self.m.last_update_seq = self.m.last_update_seq + 1
        row = [rec.framework_id, rec.task_id, rec.uuid, rec.body]
        self.m.updates[seq] = row
        self.m.update_by_uuid[rec.uuid] = seq
        self.out.append((f"data/updates/{hex_id(seq)}", cbor2.dumps(row)))

    def ack_update(self, rec: records.AckStatusUpdate) -> None:
        seq = self.m.update_by_uuid.pop(rec.uuid, None)
        if seq is not None:
            del self.m.updates[seq]
            self.out.append((f"data/updates/{hex_id(seq)}", None))

    def store_module(self, rec: records.StoreModule) -> None:
        if rec.sha256 in self.m.modules:
            return
        chunks = max(1, math.ceil(len(rec.data) / CHUNK_BYTES))
        # The bytes before the row that names them (in order, possibly in earlier
        # transactions): a module row never names bytes that are not there.
        for n in range(chunks):
            self.out.append((f"blobs/{rec.sha256.hex()}/{hex_id(n, 8)}",
                             rec.data[n * CHUNK_BYTES:(n + 1) * CHUNK_BYTES]))
        row = [len(rec.data), rec.fmt, rec.name, rec.now, chunks]
        self.m.modules[rec.sha256] = row
        self.out.append((f"data/modules/{rec.sha256.hex()}", cbor2.dumps(row)))

    def remove_module(self, rec: records.RemoveModule) -> None:
        row = self.m.modules.pop(rec.sha256, None)
        if row is None:
            return
        self.out.append((f"data/modules/{rec.sha256.hex()}", None))
        for n in range(row[4]):
            self.out.append((f"blobs/{rec.sha256.hex()}/{hex_id(n, 8)}", None))


_T = _Translator
_TRANSLATE: dict[type, Callable[[_Translator, Any], None]] = {
    records.AdmitAgent: _T.admit_agent,
    records.SetOscoreSeqBound: _T.set_oscore_seq_bound,
    records.ReregisterAgent: _T.reregister_agent,
    records.UpdateAgentInfo: _T.update_agent_info,
    records.MarkAgentUnreachable: _T.mark_unreachable,
    records.MarkAgentReachable: _T.mark_reachable,
    records.MarkAgentLost: _T.mark_lost,
    records.AckAgentUpdates: _T.ack_updates,
    records.EnqueueCommand: _T.enqueue_command,
    records.AckCommands: _T.ack_commands,
    records.DropCommand: _T.drop_command,
    records.AddFramework: _T.add_framework,
    records.UpdateFramework: _T.update_framework,
    records.MarkFrameworkRemoving: _T.framework_removing,
    records.RemoveFramework: _T.remove_framework,
    records.AddTask: _T.add_task,
    records.UpdateTaskState: _T.update_task,
    records.MarkTaskUnreachable: _T.update_task,
    records.MarkTaskLost: _T.update_task,
    records.MarkTaskKilled: _T.update_task,
    records.RemoveTask: _T.remove_task,
    records.AddStatusUpdate: _T.add_update,
    records.AckStatusUpdate: _T.ack_update,
    records.AddOutput: _T.add_output,
    records.ReleaseOutputs: _T.release_outputs,
    records.StoreModule: _T.store_module,
    records.RemoveModule: _T.remove_module,
}


def translate(mirror: Mirror, record: records.Record) -> list[Write]:
    """The key writes that make `record` durable, changing `mirror` to match."""
    t = _Translator(mirror)
    _TRANSLATE[type(record)](t, record)
    return t.out


def plan_transactions(groups: Iterable[list[Write]], max_ops: int = MAX_TXN_OPS,
                      max_bytes: int = MAX_TXN_BYTES) -> list[dict[str, bytes | None]]:
    """Cut the writes of consecutive records (one list per record, in order) into
    transactions within the limits (one op of `max_ops` is kept for nothing: the compare is
    separate, but a spare op costs little). Records are kept whole when they fit: a cut falls
    between two records, so what a crash between two transactions leaves is the state after
    some prefix of the records. A record too big for one transaction (a large module, a
    framework removal with many keys) is cut between its own writes, in their order."""
    txns: list[dict[str, bytes | None]] = []
    cur: dict[str, bytes | None] = {}
    size = 0

    def cost(key: str, value: bytes | None) -> int:
        return len(key) + (len(value) if value else 0) + _OP_OVERHEAD

    for writes in groups:
        if not writes:
            continue
        costs = [cost(k, v) for k, v in writes]
        extra = sum(costs)
        if extra > max_bytes and max(costs) > max_bytes:
            key = writes[costs.index(max(costs))][0]
            raise RecordTooLarge(
                f"etcd store: {key} would hold {max(costs)} bytes, more than one etcd request "
                f"may carry ({max_bytes}); nothing of the batch was written")
        new_keys = {k for k, _ in writes if k not in cur}
        if cur and (len(cur) + len(new_keys) > max_ops or size + extra > max_bytes):
            txns.append(cur)
            cur, size = {}, 0
        for (key, value), c in zip(writes, costs, strict=True):
            if cur and ((key not in cur and len(cur) + 1 > max_ops) or size + c > max_bytes):
                txns.append(cur)
                cur, size = {}, 0
            if key in cur:
                # A later write of the same key in the same transaction wins (etcd refuses
                # one key twice in a transaction). Moving it to the end keeps the order.
                del cur[key]
            cur[key] = value
            size += c
    if cur:
        txns.append(cur)
    return txns
