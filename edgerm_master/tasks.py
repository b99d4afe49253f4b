"""Tasks: launch, status, kill and the end of a task, on the `task_states` table.

A task is born in an Accept (`accept`: the claims are checked by `validation.check_accept`, the
launch is queued for the agent) and moves on three inputs (task_states.py, "Theory of
operation"): a framework's kill, an agent's StatusUpdate (`agent_status`) and the clock
(UNREACHABLE, LOST: `agents`). Every move goes through `set_state`, which checks the table,
emits the durable record and hands the update to `frameworks.status_update` for delivery. A
terminal task gives its resources back to the allocator and its module reference to `uploads`.
"""

from __future__ import annotations

import logging

from edgerm.resources import Res
from edgerm.wire import encode, pb
from edgerm_master import commands, frameworks, offers, uploads
from edgerm_master import records as rec
from edgerm_master import validation as check
from edgerm_master.logs import log_tasks, reason_name
from edgerm_master.state import Agent, Framework, MasterState, Task, journal_of
from edgerm_master.task_states import TERMINAL, IllegalTransition, check_transition, state_name
from edgerm_master.validation import module_of

__all__ = ["accept", "kill", "reconcile", "kill_task", "set_state", "restore",
           "missing_on_agent", "agent_status", "forget", "AGENT_REPORTABLE"]

TS = pb.TaskState
R = pb.Reason

# What an agent may report in a StatusUpdate; the rest are the master's to decide.
AGENT_REPORTABLE = frozenset({TS.STARTING, TS.RUNNING, TS.FINISHED, TS.FAILED, TS.KILLED,
                              TS.ERROR})


# --------------------------------------------------------------------------------------------
# Framework calls


def accept(st: MasterState, fw: Framework, call: pb.FrameworkCall, now: float) -> None:
    acc = call.accept
    used, agent, claims, rest, refuse = check.check_accept(st, fw, acc, now)
    # Valid: from here on nothing raises.
    for o in used:
        offers.drop(st, o)
    if not rest.is_empty():
        st.allocator.release(fw.framework_id, agent.agent_id, rest)
    if refuse > 0:
        st.allocator.filter(fw.framework_id, agent.agent_id, now + refuse)
    for ti, claim in zip(acc.launch, claims, strict=True):
        _launch(st, fw, agent, ti, claim, now)
    st.send(fw, pb.FrameworkEvent(call_id=call.call_id, accepted=pb.Accepted(
        task_ids=[ti.task_id for ti in acc.launch])))
    st.alloc_soon(now)


def _launch(st: MasterState, fw: Framework, agent: Agent, ti: pb.TaskInfo, claim: Res,
            now: float) -> None:
    number = agent.next_task
    agent.next_task += 1
    spec = ti.spec
    mod = module_of(spec)
    if mod is not None:
        size = st.module_sizes[mod[0]]
        if spec.WhichOneof("kind") == "wasm":
            spec.wasm.size = size
        else:
            spec.micropython.size = size
    spec_bytes = encode(spec)
    task = Task(fw.framework_id, ti.task_id, agent.agent_id, number, spec_bytes, claim,
                TS.STAGING)
    journal_of(task).add_state(now, TS.STAGING, 0, "")
    st.record(rec.AddTask(fw.framework_id, ti.task_id, agent.agent_id, number,
                          spec_bytes, encode(claim.to_pb()), TS.STAGING))
    fw.tasks[ti.task_id] = task
    if agent.tasks is None:
        agent.tasks = {}
    agent.tasks[number] = task
    if mod is not None:
        uploads.hold(st, task, mod[0])
    commands.enqueue_launch(st, agent, task)
    st.stats["tasks_launched"] += 1
    if log_tasks.isEnabledFor(logging.INFO):
        log_tasks.info("task %r of %s launched on agent %d: STAGING", ti.task_id,
                       fw.framework_id, agent.agent_id,
                       extra={"event": "task_state", "framework_id": fw.framework_id,
                              "task_id": ti.task_id, "agent_id": agent.agent_id,
                              "state": "STAGING", "reason": ""})


def kill(st: MasterState, fw: Framework, call: pb.FrameworkCall, now: float) -> None:
    task = check.known_task(fw, call.kill.task_id)
    if task.state in TERMINAL:
        _answer_status(st, fw, task, call.call_id, now)
        return
    kill_task(st, task, now)


def _view_status(task: Task, now: float, reason: int = 0) -> pb.TaskStatus:
    """A status without uuid: informational, not to be acknowledged."""
    return pb.TaskStatus(task_id=task.task_id, state=task.state,  # type: ignore[arg-type]
                         reason=reason or task.reason, message=task.message,  # type: ignore[arg-type]
                         agent_id=task.agent_id, timestamp=now, exit_code=task.exit_code)


def reconcile(st: MasterState, fw: Framework, call: pb.FrameworkCall, now: float) -> None:
    ids = list(call.reconcile.task_ids)
    if ids:
        for tid in ids:
            task = fw.tasks.get(tid) or fw.completed.get(tid)
            if task is None:
                status = pb.TaskStatus(task_id=tid, state=TS.LOST, reason=R.TASK_UNKNOWN,
                                       message="the master has no such task", timestamp=now)
                st.send(fw, pb.FrameworkEvent(call_id=call.call_id, update=status))
            else:
                _answer_status(st, fw, task, call.call_id, now)
    else:
        for task in fw.tasks.values():
            _answer_status(st, fw, task, call.call_id, now)


def _answer_status(st: MasterState, fw: Framework, task: Task, call_id: int, now: float
                   ) -> None:
    """A reconciliation's answer for one task. With updates not yet acknowledged, the
    oldest of them again (uuid and all: the framework sees it once, and the rest follow in
    order); the current state instead would overtake them (FINISHED before the RUNNING
    still to come) and repeat the end. Otherwise the state as it is, RECONCILIATION."""
    if task.updates:
        st.send(fw, pb.FrameworkEvent(call_id=call_id, update=task.updates[0]))
    else:
        st.send(fw, pb.FrameworkEvent(call_id=call_id, update=_view_status(
            task, now, R.RECONCILIATION)))


def kill_task(st: MasterState, task: Task, now: float, removing: bool = False) -> None:
    """Kill a non-terminal task: cancel its launch if the agent never got it, else KILLING
    and a Kill for the agent. `removing`: its framework is being removed."""
    agent = st.agents.get(task.agent_id)
    assert agent is not None
    queued = bool(agent.commands) and task.launch_cid in agent.commands  # type: ignore[operator]
    was = task.prev_state if task.state == TS.UNREACHABLE else task.state
    if was == TS.STAGING and queued:
        # The agent never got the launch: cancel it (the prototype sent both and ran it).
        if removing:
            set_state(st, task, TS.DROPPED, R.FRAMEWORK_REMOVED,
                      "the framework was removed before the launch was delivered", 0, now)
        else:
            set_state(st, task, TS.KILLED, R.KILLED_BEFORE_LAUNCH,
                      "killed before the agent got the launch", 0, now)
        return
    if task.state == TS.KILLING or (task.state == TS.UNREACHABLE
                                    and task.prev_state == TS.KILLING):
        return
    if task.state == TS.UNREACHABLE:
        # Stays UNREACHABLE; the kill waits in the agent's queue and the task returns as
        # KILLING if the agent comes back.
        task.prev_state = TS.KILLING
        st.record(rec.UpdateTaskState(task.framework_id, task.task_id, task.state,
                                      TS.KILLING, task.reason, task.message, task.exit_code))
    else:
        reason = R.FRAMEWORK_REMOVED if removing else R.KILL_REQUESTED
        set_state(st, task, TS.KILLING, reason, "", 0, now)
    commands.enqueue_kill(st, agent, task.number)


# --------------------------------------------------------------------------------------------
# Agent reports


def agent_status(st: MasterState, agent: Agent, su: pb.StatusUpdate, now: float) -> None:
    """A StatusUpdate: applied once, in the agent's order (`update_ack`), if the table allows."""
    if su.update_id <= agent.update_ack:
        return  # already applied: the reply re-acknowledges it
    if su.update_id != agent.update_ack + 1:
        return  # a gap: the agent sends the missing one first
    agent.update_ack = su.update_id
    st.record(rec.AckAgentUpdates(agent.agent_id, su.update_id))
    task = agent.tasks.get(su.task) if agent.tasks else None
    if su.state not in AGENT_REPORTABLE:
        st.stats["updates_ignored"] += 1
        return
    if task is None:
        # A task we hold as terminal or never had: make sure it does not run.
        if su.state not in TERMINAL:
            commands.enqueue_kill(st, agent, su.task)
        st.stats["updates_ignored"] += 1
        return
    try:
        check_transition(task.state, su.state)
    except IllegalTransition:
        st.stats["updates_ignored"] += 1
        return
    message = su.message[: st.config.max_message_text]
    set_state(st, task, su.state, su.reason, message, su.exit_code, now)


def missing_on_agent(st: MasterState, agent: Agent, task: Task, now: float) -> None:
    """Our non-terminal task is not in the agent's report after its restart."""
    was = task.prev_state if task.state == TS.UNREACHABLE else task.state
    if was == TS.STAGING:
        if task.state == TS.UNREACHABLE:
            restore(st, task, now)
        if not (agent.commands and task.launch_cid in agent.commands):
            commands.enqueue_launch(st, agent, task)
    elif was == TS.KILLING:
        set_state(st, task, TS.KILLED, R.KILL_REQUESTED,
                  "the agent restarted while the task was being killed", 0, now)
    else:
        set_state(st, task, TS.FAILED, R.AGENT_RESTARTED,
                  "the agent restarted and does not have the task", 0, now)


def restore(st: MasterState, task: Task, now: float, reported: int = 0) -> None:
    """UNREACHABLE -> the state before it (rule 3), or what the agent reports running.

    The framework is told only a return to RUNNING that the agent itself reported. A return
    to a state the task is waiting to leave (STAGING, STARTING, KILLING), or to one the
    agent contradicts (it reports an end, whose update follows), is recorded but not
    announced: the agent's next update (STARTING, RUNNING or an end) is legal after
    UNREACHABLE and tells it. So a framework never sees STAGING, nor STARTING or KILLING
    twice, nor RUNNING for a task that has ended.
    """
    target = task.prev_state or TS.RUNNING
    if reported in (TS.STARTING, TS.RUNNING) and target in (TS.STAGING, TS.STARTING):
        target = reported
    announce = target == TS.RUNNING and reported == TS.RUNNING
    set_state(st, task, target, R.REASON_UNSPECIFIED, "the agent is reachable again", 0, now,
              announce=announce)


# --------------------------------------------------------------------------------------------
# State changes


def set_state(st: MasterState, task: Task, state: int, reason: int, message: str,
              exit_code: int, now: float, prev: int = 0,
              kind: type[rec.UpdateTaskState] = rec.UpdateTaskState,
              announce: bool = True) -> None:
    """Move a task (the table must allow it), durably; tell its framework unless
    `announce` is false (a silent return from UNREACHABLE, see `restore`)."""
    check_transition(task.state, state)
    if log_tasks.isEnabledFor(logging.INFO):  # (the arguments cost more than the check)
        log_tasks.info("task %r of %s on agent %d: %s -> %s%s%s", task.task_id,
                       task.framework_id, task.agent_id, state_name(task.state),
                       state_name(state), f" ({reason_name(reason)})" if reason else "",
                       f": {message}" if message else "",
                       extra={"event": "task_state", "framework_id": task.framework_id,
                              "task_id": task.task_id, "agent_id": task.agent_id,
                              "state": state_name(state), "reason": reason_name(reason)})
    task.state = state
    task.prev_state = prev
    task.reason = reason
    task.message = message
    task.exit_code = exit_code
    journal_of(task).add_state(now, state, reason, message)
    st.record(kind(task.framework_id, task.task_id, state, prev, reason, message, exit_code))
    if announce and state != task.told:
        frameworks.status_update(st, task, now)
    if state in TERMINAL:
        _terminal(st, task, now)


def _terminal(st: MasterState, task: Task, now: float) -> None:
    agent = st.agents.get(task.agent_id)
    if agent is not None:
        if agent.tasks is not None:
            agent.tasks.pop(task.number, None)
        if agent.commands and task.launch_cid in agent.commands:
            commands.drop(st, agent, task.launch_cid)
    st.allocator.release(task.framework_id, task.agent_id, task.res)
    if task.module is not None:
        uploads.unhold(st, task, now)
    st.alloc_soon(now)
    fw = st.frameworks.get(task.framework_id)
    if fw is None:
        return
    if fw.removing:
        forget(st, fw, task)
        frameworks.finish_removal(st, fw)


def forget(st: MasterState, fw: Framework, task: Task) -> None:
    """A terminal task whose end was acknowledged (or no longer needs to be): kept among the
    framework's `completed` for views and reconciliation only."""
    fw.tasks.pop(task.task_id, None)
    fw.pending.discard(task.task_id)
    st.record(rec.RemoveTask(fw.framework_id, task.task_id))
    task.updates = None
    task.outputs = None
    fw.outputs_held.discard(task.task_id)
    fw.completed[task.task_id] = task
    while len(fw.completed) > st.config.completed_tasks_kept:
        del fw.completed[next(iter(fw.completed))]
