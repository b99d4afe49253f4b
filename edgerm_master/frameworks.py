"""Frameworks: their connections and calls, and the delivery of task updates and outputs.

`framework_call` is the entry for every FrameworkCall (untrusted bytes) on a connection: the
first must be a valid Subscribe, then each call goes to its handler (`FRAMEWORK_CALLS`: offers,
tasks, uploads and the ones here). A framework that disconnects keeps its tasks for its failover
timeout (`T_FAILOVER`); removed (teardown or timeout), its tasks are killed and it is forgotten
once the last one is terminal (`removing`).

Delivery is at least once, in order per task: an update (`status_update`) is kept and re-sent
(`T_RETRY`) until acknowledged, the next one only after; outputs carry no acknowledgement and
are kept until the connection outlived them by `status_retry_s` (`T_RELEASE`). After a
reconnect everything kept is sent again, outputs before updates.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from collections.abc import Callable

from edgerm.wire import encode, pb
from edgerm_master import offers, tasks, uploads
from edgerm_master import records as rec
from edgerm_master import validation as check
from edgerm_master.events import CloseFramework, ToFramework
from edgerm_master.logs import code_name, log_frameworks
from edgerm_master.state import (
    T_FAILOVER,
    T_RELEASE,
    T_RETRY,
    Agent,
    Framework,
    MasterState,
    Task,
    journal_of,
)
from edgerm_master.task_states import TERMINAL
from edgerm_master.validation import CallError

__all__ = ["framework_call", "framework_disconnected", "FRAMEWORK_CALLS", "status_update",
           "agent_publish", "remove", "finish_removal", "failover_expired", "retry",
           "release_outputs", "FRAMEWORK_SECRET_LEN"]

E = pb.ErrorCode

# Bytes of the secret a framework gets at creation (it proves the framework id is its own).
FRAMEWORK_SECRET_LEN = 16


def framework_call(st: MasterState, conn: int, data: bytes, now: float, peer: str) -> None:
    """One FrameworkCall (untrusted bytes) on connection `conn`; answers go to the outbox.
    `peer` (the connection's address) only goes into log lines."""
    st.stats["framework_calls"] += 1
    st.now = now
    st.peer = peer
    if conn in st.conns:
        _call(st, conn, data, now)
        return
    # A connection's first call must subscribe it; anything else (garbage, another call, a
    # refused Subscribe) is answered and the connection closed, so an unauthenticated peer
    # cannot keep it open by sending more.
    _call(st, conn, data, now)
    if conn not in st.conns:
        st.outbox.append(CloseFramework(conn, "the first call must be a valid Subscribe",
                                        refused=True))


def _call(st: MasterState, conn: int, data: bytes, now: float) -> None:
    call_id = 0
    try:
        check.check_size(len(data), st.config.framework_message_max, "FrameworkCall")
        call = check.decode_untrusted(pb.FrameworkCall, data, st.framework_limits)
        call_id = call.call_id
        if call.WhichOneof("call") == "subscribe":
            _subscribe(st, conn, call, now)
            return
        fid = check.check_subscribed(st.conns.get(conn))
        if call.framework_id != fid:
            check.check_other_framework(call, st.frameworks[fid],
                                        st.frameworks.get(call.framework_id))
        kind = check.check_framework_id(call, fid)
        _handler(kind)(st, st.frameworks[fid], call, now)
    except CallError as e:
        _refused(st, conn, call_id, e)


def _refused(st: MasterState, conn: int, call_id: int, e: CallError) -> None:
    st.stats["framework_errors"] += 1
    fid = st.conns.get(conn, "")
    who = f"framework {fid}" if fid else f"framework connection {conn}"
    # A refused login is the operator's business; a refused call mostly a race the
    # framework handles (an offer that just expired).
    level = logging.WARNING if e.code in (E.UNAUTHENTICATED, E.FORBIDDEN) else logging.INFO
    st.refusal_log.log(
        log_frameworks, level, st.now,
        f"refused a call from {who} at {st.peer or '?'}: {code_name(e.code)}: {e.text}",
        {"event": "framework_refused", "framework_id": fid, "peer": st.peer,
         "code": code_name(e.code)})
    st.outbox.append(ToFramework(conn, pb.FrameworkEvent(
        call_id=call_id, error=pb.Error(code=e.code, message=e.text))))  # type: ignore[arg-type]


def framework_disconnected(st: MasterState, conn: int, now: float) -> None:
    fid = st.conns.pop(conn, None)
    if fid is None:
        return
    fw = st.frameworks.get(fid)
    if fw is None or fw.conn != conn:
        return
    fw.conn = None
    fw.disconnected_at = now
    log_frameworks.info(
        "framework %s %r disconnected%s", fid, fw.name,
        "" if fw.removing else f"; it keeps its tasks for {fw.failover_s:g} s (failover)",
        extra={"event": "framework_disconnected", "framework_id": fid})
    st.allocator.set_framework_active(fid, False)
    offers.withdraw(st, fw)
    if not fw.removing:
        st.timer(now + fw.failover_s, T_FAILOVER, fid)


def _subscribe(st: MasterState, conn: int, call: pb.FrameworkCall, now: float) -> None:
    cfg = st.config
    sub = call.subscribe
    principal, token_digest = check.check_principal(sub.token, st.principals)
    failover = check.check_subscribe(sub, cfg)
    role = sub.role or "*"
    check.check_connection_free(st.conns.get(conn), call.framework_id)
    if call.framework_id:
        fw = check.check_resubscribe(st.frameworks.get(call.framework_id), call, role,
                                     principal)
        if fw.conn is not None and fw.conn != conn:
            st.outbox.append(CloseFramework(fw.conn, "another connection subscribed as "
                                            "this framework"))
            st.conns.pop(fw.conn, None)
        if fw.name != sub.name or fw.failover_s != failover:
            fw.name = sub.name
            fw.failover_s = failover
            st.record(rec.UpdateFramework(fw.framework_id, fw.name, failover))
        secret = b""
    else:
        fid = "fw-" + st.random_bytes(8).hex()
        while fid in st.frameworks:
            fid = "fw-" + st.random_bytes(8).hex()
        secret = st.random_bytes(FRAMEWORK_SECRET_LEN)
        digest = hashlib.sha256(secret).digest()
        fw = Framework(fid, sub.name, role, st.weight(role), failover, digest, principal)
        st.frameworks[fid] = fw
        st.record(rec.AddFramework(fid, sub.name, role, failover, digest, principal))
        st.allocator.add_framework(fid, role, fw.weight)
    fw.conn = conn
    fw.token_digest = token_digest
    st.conns[conn] = fw.framework_id
    log_frameworks.info("framework %s %r (role %s, principal %s) %s from %s", fw.framework_id,
                        fw.name, fw.role, fw.principal,
                        "re-subscribed" if call.framework_id else "subscribed", st.peer or "?",
                        extra={"event": "framework_subscribed",
                               "framework_id": fw.framework_id, "framework_name": fw.name,
                               "role": fw.role, "principal": fw.principal,
                               "failover": bool(call.framework_id), "peer": st.peer})
    st.allocator.set_framework_active(fw.framework_id, True)
    st.send(fw, pb.FrameworkEvent(call_id=call.call_id, subscribed=pb.Subscribed(
        framework_id=fw.framework_id, heartbeat_interval_s=cfg.framework_heartbeat_s,
        weight=fw.weight, framework_secret=secret)))
    # Resume delivery. First every output kept for re-sending (the framework may not have
    # had it; the SDK drops repeats by seq), then the head of every task's unacknowledged
    # updates: a task's end then always arrives after its outputs, so acknowledging the
    # end proves the outputs arrived (see `tasks.forget`).
    for tid in sorted(fw.outputs_held):
        task = fw.tasks.get(tid)
        if task is None or not task.outputs:
            continue
        task.outputs = deque((out, now) for out, _ in task.outputs)
        for out, _ in task.outputs:
            st.send(fw, pb.FrameworkEvent(output=out))
    if fw.outputs_held:
        _arm_release(st, fw, now)
    _send_pending(st, fw)
    if fw.pending:
        _arm_retry(st, fw, now)
    st.alloc_soon(now)


# --------------------------------------------------------------------------------------------
# Removal


def _teardown(st: MasterState, fw: Framework, call: pb.FrameworkCall, now: float) -> None:
    log_frameworks.info("framework %s %r tore itself down", fw.framework_id, fw.name,
                        extra={"event": "framework_removed",
                               "framework_id": fw.framework_id, "why": "teardown"})
    remove(st, fw, now)


def failover_expired(st: MasterState, framework_id: str, now: float) -> None:
    """`T_FAILOVER`: a framework still away after its failover timeout is removed."""
    fw = st.frameworks.get(framework_id)
    if (fw is not None and fw.conn is None and not fw.removing
            and now >= fw.disconnected_at + fw.failover_s):
        log_frameworks.info(
            "framework %s %r removed: it did not come back within its failover "
            "timeout (%g s)", fw.framework_id, fw.name, fw.failover_s,
            extra={"event": "framework_removed", "framework_id": fw.framework_id,
                   "why": "failover_timeout"})
        remove(st, fw, now)


def remove(st: MasterState, fw: Framework, now: float) -> None:
    """Teardown or failover timeout: kill its tasks; forget it once they are all over."""
    if fw.removing:
        return
    fw.removing = True
    st.record(rec.MarkFrameworkRemoving(fw.framework_id))
    offers.withdraw(st, fw)
    st.allocator.set_framework_active(fw.framework_id, False)
    if fw.conn is not None:
        st.outbox.append(CloseFramework(fw.conn, "framework removed"))
        st.conns.pop(fw.conn, None)
        fw.conn = None
    for task in fw.tasks.values():
        task.updates = None
        task.outputs = None
    fw.pending.clear()
    fw.outputs_held.clear()
    for task in list(fw.tasks.values()):
        if task.state not in TERMINAL:
            tasks.kill_task(st, task, now, removing=True)
    finish_removal(st, fw)


def finish_removal(st: MasterState, fw: Framework) -> None:
    """Forget a framework being removed once none of its tasks is left running."""
    if fw.framework_id not in st.frameworks:
        return
    if any(t.state not in TERMINAL for t in fw.tasks.values()):
        return
    st.record(rec.RemoveFramework(fw.framework_id))
    log_frameworks.info("framework %s %r forgotten: none of its tasks is left",
                        fw.framework_id, fw.name,
                        extra={"event": "framework_forgotten", "framework_id": fw.framework_id})
    st.allocator.remove_framework(fw.framework_id)
    del st.frameworks[fw.framework_id]
    st.removed_frameworks.append(fw)
    while len(st.removed_frameworks) > st.config.completed_frameworks_kept:
        st.removed_frameworks.popleft()


# --------------------------------------------------------------------------------------------
# Task updates: at least once, in order, until acknowledged


def status_update(st: MasterState, task: Task, now: float) -> None:
    """Tell the task's framework its current state, durably, to be acknowledged."""
    fw = st.frameworks.get(task.framework_id)
    if fw is None or fw.removing:
        return
    task.told = task.state
    status = pb.TaskStatus(task_id=task.task_id, state=task.state,  # type: ignore[arg-type]
                           reason=task.reason, message=task.message,  # type: ignore[arg-type]
                           agent_id=task.agent_id, uuid=st.random_bytes(16), timestamp=now,
                           exit_code=task.exit_code)
    st.record(rec.AddStatusUpdate(fw.framework_id, task.task_id, status.uuid, encode(status)))
    if task.updates is None:
        task.updates = deque()
    task.updates.append(status)
    fw.pending.add(task.task_id)
    if len(task.updates) == 1:
        st.send(fw, pb.FrameworkEvent(update=status))
    _arm_retry(st, fw, now)


def _arm_retry(st: MasterState, fw: Framework, now: float) -> None:
    if fw.retry_at == 0.0:
        fw.retry_at = now + st.config.status_retry_s
        st.timer(fw.retry_at, T_RETRY, fw.framework_id)


def _send_pending(st: MasterState, fw: Framework) -> None:
    """The oldest unacknowledged update of each task, again."""
    for tid in sorted(fw.pending):
        task = fw.tasks.get(tid)
        if task is not None and task.updates:
            st.send(fw, pb.FrameworkEvent(update=task.updates[0]))


def retry(st: MasterState, framework_id: str, now: float) -> None:
    """`T_RETRY`: re-send what is still unacknowledged."""
    fw = st.frameworks.get(framework_id)
    if fw is None:
        return
    fw.retry_at = 0.0
    if fw.conn is not None:
        _send_pending(st, fw)
    if fw.pending:
        _arm_retry(st, fw, now)


def _acknowledge(st: MasterState, fw: Framework, call: pb.FrameworkCall, now: float) -> None:
    ack = call.acknowledge
    task = fw.tasks.get(ack.task_id)
    if task is None or not task.updates:
        return  # already acknowledged (delivery is at least once)
    if task.updates[0].uuid != ack.uuid:
        check.check_ack_order(task.updates, ack.uuid)
        return
    task.updates.popleft()
    st.record(rec.AckStatusUpdate(fw.framework_id, task.task_id, ack.uuid))
    if task.updates:
        st.send(fw, pb.FrameworkEvent(update=task.updates[0]))
        return
    fw.pending.discard(task.task_id)
    if task.state in TERMINAL:
        tasks.forget(st, fw, task)


# --------------------------------------------------------------------------------------------
# Task outputs: kept until surely delivered


def agent_publish(st: MasterState, agent: Agent, pu: pb.Publish, now: float) -> None:
    """An agent's Publish: applied once, in the agent's order, and sent on as a TaskOutput."""
    if pu.update_id <= agent.update_ack or pu.update_id != agent.update_ack + 1:
        return
    agent.update_ack = pu.update_id
    st.record(rec.AckAgentUpdates(agent.agent_id, pu.update_id))
    task = agent.tasks.get(pu.task) if agent.tasks else None
    if task is None:
        st.stats["updates_ignored"] += 1
        return
    fw = st.frameworks.get(task.framework_id)
    if fw is None or fw.removing:
        return
    task.output_seq += 1
    journal_of(task).add_output(now, task.output_seq, pu.topic, pu.data)
    out = pb.TaskOutput(task_id=task.task_id, seq=task.output_seq, data=pu.data,
                        topic=pu.topic)
    # Persist, then act: the output is durable with the update_ack that accepts it, and
    # kept until the framework has surely had it (`release_outputs`), so neither a crash
    # nor a dropped connection loses it, and its number goes on after a restart.
    st.record(rec.AddOutput(fw.framework_id, task.task_id, out.seq, out.data, out.topic))
    sent: float | None = None
    if fw.conn is not None:
        st.send(fw, pb.FrameworkEvent(output=out))
        sent = now
        _arm_release(st, fw, now)
    if task.outputs is None:
        task.outputs = deque()
    task.outputs.append((out, sent))
    fw.outputs_held.add(task.task_id)
    if len(task.outputs) > st.config.outputs_kept:
        old, old_sent = task.outputs.popleft()
        st.record(rec.ReleaseOutputs(fw.framework_id, task.task_id, old.seq))
        if old_sent is None:
            # Never sent: a gap in the task's seq, which the SDK reports.
            task.outputs_dropped += 1
            st.stats["outputs_dropped"] += 1


def _arm_release(st: MasterState, fw: Framework, now: float) -> None:
    if fw.release_at == 0.0:
        fw.release_at = now + st.config.status_retry_s
        st.timer(fw.release_at, T_RELEASE, fw.framework_id)


def release_outputs(st: MasterState, framework_id: str, now: float) -> None:
    """`T_RELEASE`: forget the outputs sent at least `status_retry_s` ago on the framework's
    current connection: it stayed open that long after them, so they arrived. (Outputs carry
    no acknowledgement; a connection that drops sooner gets them again when the framework
    re-subscribes, and the SDK drops repeats by seq.) A task's outputs also go when the
    task is forgotten: its end was acknowledged, and it was sent after them."""
    fw = st.frameworks.get(framework_id)
    if fw is None:
        return
    fw.release_at = 0.0
    if fw.conn is None:
        return  # re-sent, and the timer re-armed, when the framework subscribes again
    horizon = now - st.config.status_retry_s
    more = False
    for tid in list(fw.outputs_held):
        task = fw.tasks.get(tid)
        held = task.outputs if task is not None else None
        upto = 0
        while held:
            sent_at = held[0][1]
            if sent_at is None or sent_at > horizon:
                break
            upto = held.popleft()[0].seq
        if upto:
            st.record(rec.ReleaseOutputs(fw.framework_id, tid, upto))
        if held:
            more = True
        else:
            if task is not None:
                task.outputs = None
            fw.outputs_held.discard(tid)
    if more:
        _arm_release(st, fw, now)


Handler = Callable[[MasterState, Framework, pb.FrameworkCall, float], None]

# The handler of each FrameworkCall but Subscribe, by its oneof name (filled on first use:
# `tasks` and `offers` import this module, so their functions may not exist yet at import).
FRAMEWORK_CALLS: dict[str, Handler] = {}


def _handler(kind: str) -> Handler:
    if not FRAMEWORK_CALLS:
        FRAMEWORK_CALLS.update({
            "accept": tasks.accept, "decline": offers.decline, "kill": tasks.kill,
            "reconcile": tasks.reconcile, "acknowledge": _acknowledge, "teardown": _teardown,
            "upload": uploads.upload, "revive": offers.revive, "suppress": offers.suppress,
        })
    return FRAMEWORK_CALLS[kind]
