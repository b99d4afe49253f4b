"""Modules (WASM, MicroPython) the master keeps for tasks: a framework uploads one, tasks refer
to it by SHA-256, agents read it in chunks, and one no task refers to is removed after
`module_grace_s` (`T_MODULE`). The bytes themselves live in files the shell reads and writes
(`modules.py`, `store.py`); here is only the bookkeeping: sizes, formats, references.
"""

from __future__ import annotations

import hashlib

from edgerm.wire import encode, pb, sign
from edgerm_master import commands
from edgerm_master import records as rec
from edgerm_master import validation as check
from edgerm_master.events import AgentResult, ModuleRead
from edgerm_master.state import T_MODULE, Agent, Framework, MasterState, ModuleInfo, Task

__all__ = ["upload", "hold", "unhold", "expire", "module_request", "module_chunk",
           "MODULE_CHUNK_MAX"]

# The most bytes of a module one reply carries.
MODULE_CHUNK_MAX = 64 * 1024


def upload(st: MasterState, fw: Framework, call: pb.FrameworkCall, now: float) -> None:
    """An UploadModule: stored (once per content), answered with its hash."""
    cfg = st.config
    up = call.upload
    check.check_upload(up, cfg)
    data = up.data
    sha = hashlib.sha256(data).digest()
    m = st.modules.get(sha)
    if m is None:
        check.check_module_room(st, len(data))
        m = ModuleInfo(len(data), up.format, up.name, now)
        st.modules[sha] = m
        st.module_sizes[sha] = m.size
        st.modules_total += m.size
        st.record(rec.StoreModule(sha, up.format, up.name, data, now))
        st.timer(now + cfg.module_grace_s, T_MODULE, sha)
    elif m.refs == 0:
        m.idle_since = now
        st.timer(now + cfg.module_grace_s, T_MODULE, sha)
    st.send(fw, pb.FrameworkEvent(call_id=call.call_id, module_stored=pb.ModuleStored(
        sha256=sha, size=m.size, format=m.fmt)))  # type: ignore[arg-type]


def hold(st: MasterState, task: Task, sha256: bytes) -> None:
    """The task runs this module: keep it while the task lives."""
    task.module = sha256
    st.modules[sha256].refs += 1


def unhold(st: MasterState, task: Task, now: float) -> None:
    """The task ended: one reference less; the last starts the grace time."""
    if task.module is None:
        return
    m = st.modules.get(task.module)
    if m is not None:
        m.refs -= 1
        if m.refs == 0:
            m.idle_since = now
            st.timer(now + st.config.module_grace_s, T_MODULE, task.module)
    task.module = None


def expire(st: MasterState, sha256: bytes, now: float) -> None:
    """`T_MODULE`: a module unreferenced for `module_grace_s` is removed."""
    m = st.modules.get(sha256)
    if m is not None and m.refs == 0 and now >= m.idle_since + st.config.module_grace_s:
        st.record(rec.RemoveModule(sha256))
        del st.modules[sha256]
        del st.module_sizes[sha256]
        st.modules_total -= m.size


def module_request(st: MasterState, agent: Agent, mr: pb.ModuleRequest, seq: int
                   ) -> AgentResult:
    """An agent's ModuleRequest: the reply, with what the shell is to read into it."""
    m = check.check_module_request(mr, st.modules)
    length = min(mr.length or MODULE_CHUNK_MAX, MODULE_CHUNK_MAX, m.size - mr.offset)
    result = commands.reply(st, agent, seq)
    # seq 0: an OSCORE call, whose reply is protected by the shell instead of signed.
    result.module = ModuleRead(mr.sha256, mr.offset, length, m.size,
                               0 if st.oscore_call else seq)
    return result


def module_chunk(st: MasterState, agent_id: int, read: ModuleRead, data: bytes) -> bytes:
    """The shell read the bytes of `read`: the signed reply that carries them."""
    agent = st.agents[agent_id]
    reply = pb.AgentReply(seq=read.seq, update_ack=agent.update_ack,
                          module=pb.ModuleChunk(sha256=read.sha256, offset=read.offset,
                                                total=read.total, data=data))
    return sign(reply, agent.secret) if read.seq else encode(reply)
