"""Crash recovery: the core's state rebuilt from what the store kept (`Store.recover()`).

Agents come back unsynced (`synced=False`: only a signed re-registration with a fresh seq is
trusted, `agents.agent_call`), frameworks disconnected with their failover clocks started now,
tasks with their unacknowledged updates and kept outputs, each agent with its command queue.
What the store kept is exactly what anyone was told (persist, then act), so nothing told is
lost; what was not yet told is recomputed (an allocation round is due at once).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from edgerm.resources import Res
from edgerm.wire import decode, pb
from edgerm_master import frameworks, tasks
from edgerm_master import records as rec
from edgerm_master.agent_states import AGENT_ACTIVE, AGENT_LOST, AGENT_UNREACHABLE
from edgerm_master.oscore_calls import MASTER_SEQ_RESERVE
from edgerm_master.state import (
    T_AGENT_CHECK,
    T_AGENT_LOST,
    T_FAILOVER,
    T_MODULE,
    Agent,
    Framework,
    MasterState,
    ModuleInfo,
    Task,
)
from edgerm_master.task_states import TERMINAL
from edgerm_master.validation import module_of

if TYPE_CHECKING:  # (the core never imports the store: the shell hands it the snapshot)
    from edgerm_master.store import Snapshot

__all__ = ["recover"]


def recover(st: MasterState, snap: Snapshot, now: float) -> None:
    """Rebuild the state from the store. Agents are unsynced until they re-register,
    frameworks disconnected until they re-subscribe (their failover clocks start now)."""
    cfg = st.config
    st.epoch = snap.epoch
    st.next_agent_id = max(st.next_agent_id, snap.next_agent_id)
    # The master's OSCORE sequence number goes on from the stored bound (every number below
    # it may have been used by the master before); the next bound is durable (lead() commits
    # what recovery emits) before any is used.
    st.master_seq = max(st.master_seq, snap.oscore_seq_bound, 1)
    st.master_seq_bound = st.master_seq + MASTER_SEQ_RESERVE
    st.record(rec.SetOscoreSeqBound(st.master_seq_bound))
    for m in snap.modules:
        st.modules[m.sha256] = ModuleInfo(m.size, m.fmt, m.name, now)
        st.module_sizes[m.sha256] = m.size
        st.modules_total += m.size
    for f in snap.frameworks:
        fw = Framework(f.framework_id, f.name, f.role, st.weight(f.role), f.failover_s,
                       f.secret_digest)
        fw.disconnected_at = now
        fw.removing = f.removing
        st.frameworks[fw.framework_id] = fw
        st.allocator.add_framework(fw.framework_id, fw.role, fw.weight)
        st.allocator.set_framework_active(fw.framework_id, False)
        st.timer(now + fw.failover_s, T_FAILOVER, fw.framework_id)
    for a in snap.agents:
        reg = decode(pb.Register, a.info)
        agent = Agent(a.agent_id, a.secret, a.info, reg, st.inventory(reg.resources))
        agent.state = a.state  # as stored: not a transition
        agent.synced = False
        agent.last_seen = now
        agent.unreachable_since = a.unreachable_since
        agent.update_ack = a.update_ack
        agent.command_ack = a.command_ack
        agent.next_command = a.next_command
        agent.next_task = a.next_task
        agent.seq = a.seq  # the last registration's: a replayed one is refused (check_seq)
        st.agents[agent.agent_id] = agent
        st.next_agent_id = max(st.next_agent_id, agent.agent_id + 1)
        if agent.state != AGENT_LOST:
            st.allocator.add_agent(agent.agent_id, agent.total)
            st.allocator.set_agent_active(agent.agent_id, False)
        if agent.state == AGENT_ACTIVE:
            st.timer(now + cfg.unreachable_after_s, T_AGENT_CHECK, agent.agent_id)
        elif agent.state == AGENT_UNREACHABLE:
            st.timer(agent.unreachable_since + cfg.lost_after_s, T_AGENT_LOST, agent.agent_id)
    for aid, cid, body in snap.commands:
        holder = st.agents.get(aid)
        if holder is None:
            continue
        if holder.commands is None:
            holder.commands = {}
        holder.commands[cid] = body
        if decode(pb.Command, body).WhichOneof("command") == "reregister":
            holder.rereg_cid = cid
    for t in snap.tasks:
        owner = st.frameworks.get(t.framework_id)
        host = st.agents.get(t.agent_id)
        if owner is None or host is None:
            continue
        fw, agent = owner, host
        res = Res.from_pb(decode(pb.Resources, t.resources))
        task = Task(t.framework_id, t.task_id, t.agent_id, t.number, t.spec, res, t.state)
        task.prev_state = t.prev_state
        task.reason = t.reason
        task.message = t.message
        task.exit_code = t.exit_code
        task.output_seq = t.output_seq
        fw.tasks[task.task_id] = task
        if t.state in TERMINAL:
            continue
        if agent.tasks is None:
            agent.tasks = {}
        agent.tasks[task.number] = task
        mod = module_of(decode(pb.TaskSpec, t.spec))
        if mod is not None and mod[0] in st.modules:
            task.module = mod[0]
            st.modules[mod[0]].refs += 1
        if agent.state != AGENT_LOST:
            st.allocator.allocate(fw.framework_id, agent.agent_id, res)
        for cid, body in (agent.commands or {}).items():
            cmd = decode(pb.Command, body)
            if cmd.WhichOneof("command") == "launch" and cmd.launch.task == task.number:
                task.launch_cid = cid
    for u in snap.updates:
        owner = st.frameworks.get(u.framework_id)
        known = owner.tasks.get(u.task_id) if owner else None
        if owner is None or known is None:
            continue
        if known.updates is None:
            known.updates = deque()
        status = decode(pb.TaskStatus, u.body)
        known.updates.append(status)
        known.told = status.state
        owner.pending.add(known.task_id)
    for o in snap.outputs:
        owner = st.frameworks.get(o.framework_id)
        known = owner.tasks.get(o.task_id) if owner else None
        if owner is None or known is None or owner.removing:
            continue
        if known.outputs is None:
            known.outputs = deque()
        known.outputs.append((pb.TaskOutput(task_id=o.task_id, seq=o.seq, data=o.data,
                                            topic=o.topic), None))
        known.output_seq = max(known.output_seq, o.seq)
        owner.outputs_held.add(known.task_id)
    for fw in list(st.frameworks.values()):
        for task in list(fw.tasks.values()):
            if task.state in TERMINAL and not task.updates:
                tasks.forget(st, fw, task)
        if fw.removing:
            frameworks.finish_removal(st, fw)
    for sha, info in st.modules.items():
        if info.refs == 0:
            st.timer(now + cfg.module_grace_s, T_MODULE, sha)
    st.alloc_due = now
