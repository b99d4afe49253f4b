"""An agent's command queue and the replies that carry it.

The master queues commands (launch, kill, re-register) per agent, durably (`EnqueueCommand`),
numbered in order. Every reply to the agent carries a prefix of the unacknowledged ones
(`commands_for`); a push on the agent's open channel (CoAP Observe on `c`, or its WebSocket)
carries them without waiting for the agent's next call (`take_pushes`). The agent acknowledges
by number (`Heartbeat.command_ack`), which drops them (`ack`).
"""

from __future__ import annotations

from edgerm.wire import decode, encode, pb, sign
from edgerm_master import records as rec
from edgerm_master.agent_states import AGENT_ACTIVE
from edgerm_master.events import AgentResult, ToAgent
from edgerm_master.replies import build_reply, launch_command
from edgerm_master.state import Agent, MasterState, Task

__all__ = ["enqueue", "enqueue_launch", "enqueue_kill", "ask_reregister", "ack", "take_ack",
           "drop", "drop_all", "commands_for", "reply", "error_reply", "take_pushes"]

# A reply's framing around its commands (seq, mac, update_ack and the array head); the rest of
# the agent's max_payload is the commands' budget.
REPLY_OVERHEAD = 32


def enqueue(st: MasterState, agent: Agent, cmd: pb.Command | None, push: bool = True,
            launch: Task | None = None) -> int:
    """Queue `cmd` (or the launch of `launch`) for the agent, durably; its id."""
    cid = agent.next_command
    agent.next_command += 1
    if launch is not None:
        body = launch_command(cid, launch.number, launch.spec)
    else:
        assert cmd is not None
        cmd.id = cid
        body = encode(cmd)
    if agent.commands is None:
        agent.commands = {}
    agent.commands[cid] = body
    st.record(rec.EnqueueCommand(agent.agent_id, cid, body))
    if push and agent.pushable and agent.synced and agent.state == AGENT_ACTIVE:
        st.push.add(agent.agent_id)
    return cid


def enqueue_launch(st: MasterState, agent: Agent, task: Task) -> None:
    task.launch_cid = enqueue(st, agent, None, launch=task)


def enqueue_kill(st: MasterState, agent: Agent, number: int) -> None:
    """A Kill of task `number`, unless one is queued already."""
    for body in (agent.commands or {}).values():
        cmd = decode(pb.Command, body)
        if cmd.WhichOneof("command") == "kill" and cmd.kill.task == number:
            return
    enqueue(st, agent, pb.Command(kill=pb.Kill(task=number)))


def ask_reregister(st: MasterState, agent: Agent) -> None:
    """A ReRegister for the agent, unless one is queued already."""
    if agent.rereg_cid and agent.commands and agent.rereg_cid in agent.commands:
        return
    agent.rereg_cid = enqueue(st, agent, pb.Command(reregister=pb.ReRegister()), push=False)


def take_ack(st: MasterState, agent: Agent, command_ack: int) -> None:
    """The agent's `command_ack` (it applied every command up to it): drop those. An ack past
    what was ever queued counts only up to the last queued."""
    if command_ack > agent.command_ack:
        ack(st, agent, min(command_ack, agent.next_command - 1))


def ack(st: MasterState, agent: Agent, upto: int) -> None:
    if upto <= agent.command_ack:
        return
    agent.command_ack = upto
    if agent.commands:
        for cid in [c for c in agent.commands if c <= upto]:
            del agent.commands[cid]
            if agent.sent:
                agent.sent.pop(cid, None)
        if not agent.commands:
            agent.commands = agent.sent = None
    st.record(rec.AckCommands(agent.agent_id, upto))


def drop(st: MasterState, agent: Agent, cid: int) -> None:
    """Withdraw one queued command (a cancelled launch, a ReRegister no longer needed)."""
    if agent.commands is not None:
        agent.commands.pop(cid, None)
    if agent.sent is not None:
        agent.sent.pop(cid, None)
    st.record(rec.DropCommand(agent.agent_id, cid))


def drop_all(st: MasterState, agent: Agent) -> None:
    """Withdraw every queued command (the agent is LOST)."""
    for cid in list(agent.commands or ()):
        st.record(rec.DropCommand(agent.agent_id, cid))
    agent.commands = agent.sent = None
    agent.rereg_cid = 0


def commands_for(st: MasterState, agent: Agent) -> list[bytes]:
    """The unacknowledged commands to put in a reply: always a prefix of the queue (the
    agent applies ids in order and skips ids below what it applied, so a later command
    must never travel without the earlier ones), and only when one of them is new or was
    last sent `command_resend_s` ago (a burst of update replies does not repeat them all).
    """
    cmds = agent.commands
    if not cmds:
        return []
    now = st.now
    sent = agent.sent
    if sent is None:
        sent = agent.sent = {}
    gap = st.config.command_resend_s
    for cid in cmds:
        t = sent.get(cid)
        if t is None or now - t >= gap:
            break
    else:
        return []
    budget = (agent.max_payload or st.config.default_max_payload) - REPLY_OVERHEAD
    out: list[bytes] = []
    used = 0
    for cid, body in cmds.items():
        if out and used + len(body) > budget:
            break
        out.append(body)
        used += len(body)
        sent[cid] = now
    return out


def reply(st: MasterState, agent: Agent, seq: int, registered: pb.Registered | None = None
          ) -> AgentResult:
    """The signed answer to the agent's call `seq`, with the commands due (unsigned and
    without seq for an OSCORE-protected call: OSCORE protects the reply)."""
    if st.oscore_call:
        data = build_reply(None, 0, agent.update_ack, commands_for(st, agent),
                           encode(registered) if registered is not None else None)
    else:
        data = build_reply(agent.secret, seq, agent.update_ack, commands_for(st, agent),
                           encode(registered) if registered is not None else None)
    return AgentResult(data, 0, agent.agent_id)


def error_reply(code: int, text: str, seq: int, agent: Agent | None,
                protected: bool = False) -> AgentResult:
    """A refusal: signed when the caller authenticated as `agent`, else plain; `protected`
    (an OSCORE call of `agent`): plain, for the shell to protect."""
    if protected and agent is not None:
        msg = pb.AgentReply(error=pb.Error(code=code, message=text))  # type: ignore[arg-type]
        return AgentResult(encode(msg), code, agent.agent_id)
    msg = pb.AgentReply(seq=seq, error=pb.Error(code=code, message=text))  # type: ignore[arg-type]
    if agent is not None:
        return AgentResult(sign(msg, agent.secret), code, agent.agent_id)
    return AgentResult(encode(msg), code)


def take_pushes(st: MasterState) -> None:
    """Queue a push for every agent with commands due and an open channel (in id order)."""
    for aid in sorted(st.push):
        agent = st.agents.get(aid)
        if agent is None or not agent.pushable or not agent.commands:
            continue
        commands = commands_for(st, agent)
        if commands:
            # A CoAP agent's push is an Observe notification, which OSCORE protects (the
            # shell, with the master's own sequence number); a WebSocket push is signed.
            secret = None if agent.transport == "coap" else agent.secret
            st.outbox.append(ToAgent(aid, build_reply(secret, 0, agent.update_ack,
                                                      commands)))
    st.push.clear()
