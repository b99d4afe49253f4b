"""Modules the master keeps for tasks: one copy per content, references from tasks, removal
after the grace time, reads in chunks."""

from __future__ import annotations

import hashlib

import pytest

from edgerm.wire import decode, pb, verify
from edgerm_master import records as rec
from edgerm_master import uploads
from edgerm_master.config import MasterConfig
from edgerm_master.state import T_MODULE, Framework, MasterState, Task
from edgerm_master.testing import wasm_module
from edgerm_master.validation import CallError

T0 = 1000.0


def state(**kw: object) -> tuple[MasterState, Framework]:
    st = MasterState(MasterConfig(module_grace_s=100.0, **kw))  # type: ignore[arg-type]
    fw = Framework("fw-1", "f", "*", 1.0, 60.0, b"")
    fw.conn = 1
    return st, fw


def upload(st: MasterState, fw: Framework, data: bytes, now: float = T0) -> bytes:
    call = pb.FrameworkCall(call_id=3, upload=pb.UploadModule(format=pb.WASM_MODULE, data=data))
    uploads.upload(st, fw, call, now)
    stored = st.outbox.pop().event.module_stored  # type: ignore[union-attr]
    assert stored.size == len(data)
    return stored.sha256


def test_one_copy_per_content_removed_after_the_grace_time() -> None:
    st, fw = state()
    mod = wasm_module(b"x")
    sha = upload(st, fw, mod)
    assert sha == hashlib.sha256(mod).digest()
    assert upload(st, fw, mod, T0 + 50) == sha  # again: the same module, its grace restarts
    assert [type(r) for r in st.records] == [rec.StoreModule]
    assert st.modules_total == len(mod) and st.module_sizes == {sha: len(mod)}
    uploads.expire(st, sha, T0 + 100)  # the first grace timer: too early now
    assert sha in st.modules
    uploads.expire(st, sha, T0 + 150)
    assert st.modules == {} and st.modules_total == 0 and st.records[-1] == rec.RemoveModule(sha)


def test_a_referenced_module_stays_until_its_last_task_ends() -> None:
    st, fw = state()
    sha = upload(st, fw, wasm_module(b"y"))
    tasks = [Task("fw-1", f"t{i}", 1, i, b"", None, pb.RUNNING) for i in range(2)]  # type: ignore[arg-type]
    for t in tasks:
        uploads.hold(st, t, sha)
    assert st.modules[sha].refs == 2
    uploads.expire(st, sha, T0 + 1000)
    assert sha in st.modules
    uploads.unhold(st, tasks[0], T0 + 1000)
    uploads.unhold(st, tasks[0], T0 + 1000)  # once per task
    assert st.modules[sha].refs == 1 and tasks[0].module is None
    uploads.unhold(st, tasks[1], T0 + 2000)
    assert (T0 + 2100, T_MODULE, sha) in st.timers
    uploads.expire(st, sha, T0 + 2099)
    assert sha in st.modules
    uploads.expire(st, sha, T0 + 2100)
    assert sha not in st.modules


def test_a_full_store_refuses_a_new_module_and_changes_nothing() -> None:
    st, fw = state(modules_total_bytes=100)
    upload(st, fw, wasm_module(b"a" * 60))
    records = list(st.records)
    call = pb.FrameworkCall(upload=pb.UploadModule(format=pb.WASM_MODULE,
                                                   data=wasm_module(b"b" * 60)))
    with pytest.raises(CallError) as info:
        uploads.upload(st, fw, call, T0)
    assert info.value.code == pb.TOO_LARGE and "full" in info.value.text
    assert st.records == records and len(st.modules) == 1


def test_a_read_is_capped_at_a_chunk_and_at_the_end() -> None:
    from edgerm_master import agents
    from edgerm_master.testing import ScriptedAgent

    st, fw = state(agent_tokens=["agent-token"])
    data = wasm_module(b"z" * (uploads.MODULE_CHUNK_MAX + 100))
    sha = upload(st, fw, data)
    a = ScriptedAgent()
    a.handle_reply(agents.agent_call(st, a.register_call(), T0, "coap", "").data)
    agent = st.agents[a.agent_id]
    first = uploads.module_request(st, agent, pb.ModuleRequest(sha256=sha), 7).module
    assert first is not None and (first.offset, first.length) == (0, uploads.MODULE_CHUNK_MAX)
    rest = uploads.module_request(st, agent, pb.ModuleRequest(
        sha256=sha, offset=uploads.MODULE_CHUNK_MAX, length=10**6), 8).module
    assert rest is not None and rest.length == len(data) - uploads.MODULE_CHUNK_MAX
    chunk = decode(pb.AgentReply, uploads.module_chunk(st, agent.agent_id, rest, b"..."))
    assert verify(chunk, agent.secret) and chunk.seq == 8 and chunk.module.total == len(data)
    with pytest.raises(CallError):
        uploads.module_request(st, agent, pb.ModuleRequest(sha256=b"\0" * 32), 9)
