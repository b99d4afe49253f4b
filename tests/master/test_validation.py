"""Every check of a call: the code and a text that says what to do; nothing changes."""

from __future__ import annotations

import hashlib
import math

import pytest

from edgerm.resources import Res
from edgerm.wire import NONCE_LEN, PROTOCOL_VERSION, Limits, encode, pb
from edgerm_master import validation as check
from edgerm_master.config import MasterConfig
from edgerm_master.principals import Principals
from edgerm_master.state import Agent, Framework, MasterState, ModuleInfo, Offer
from edgerm_master.testing import task_info, wasm_module
from edgerm_master.validation import CallError

E = pb.ErrorCode


def refused(code: int, fn: object, *args: object) -> str:
    with pytest.raises(CallError) as info:
        fn(*args)  # type: ignore[operator]
    assert info.value.code == code, info.value.text
    return info.value.text


def test_size_and_decoding() -> None:
    check.check_size(10, 10, "AgentCall")
    text = refused(E.TOO_LARGE, check.check_size, 11, 10, "AgentCall")
    assert text == "AgentCall of 11 bytes is over the limit of 10"
    assert refused(E.BAD_REQUEST, check.decode_untrusted, pb.AgentCall, b"\xff",
                   Limits()).startswith("bad AgentCall: ")
    assert check.decode_untrusted(pb.AgentCall, encode(pb.AgentCall(seq=3)), Limits()).seq == 3


def test_seq_must_pass_every_seq_seen() -> None:
    assert check.seq_is_fresh(4, 5) and not check.seq_is_fresh(5, 5)
    assert not check.seq_is_fresh(5, 4)
    check.check_seq(4, 5)
    assert refused(E.UNAUTHENTICATED, check.check_seq, 5, 5) == check.BAD_AGENT


def test_agent_call_shape() -> None:
    check.check_first_call("register")
    refused(E.UNAUTHENTICATED, check.check_first_call, "heartbeat")
    assert check.check_call_kind("status") == "status"
    refused(E.BAD_REQUEST, check.check_call_kind, None)
    refused(E.UNAUTHENTICATED, check.check_caller, pb.AgentCall(agent_id=1), None)


def test_register() -> None:
    reg = pb.Register(name="a", protocol_version=PROTOCOL_VERSION, nonce=b"n" * NONCE_LEN,
                      resources=pb.Resources(cpus=1))
    assert check.check_register(reg, Res.from_pb) == Res(cpus=1)
    check.check_nonce(reg, {})
    refused(E.UNAUTHENTICATED, check.check_nonce, reg, {reg.nonce: None})
    refused(E.BAD_REQUEST, check.check_nonce, pb.Register(nonce=b"short"), {})
    old = pb.Register(protocol_version=PROTOCOL_VERSION + 1)
    assert "this master speaks" in refused(E.UNSUPPORTED, check.check_register, old, Res.from_pb)
    refused(E.BAD_REQUEST, check.check_register, pb.Register(
        name="x" * 201, protocol_version=PROTOCOL_VERSION), Res.from_pb)
    refused(E.BAD_REQUEST, check.check_register, pb.Register(
        protocol_version=PROTOCOL_VERSION, resources=pb.Resources(cpus=-1)), Res.from_pb)
    refused(E.BAD_REQUEST, check.check_heartbeat,
            pb.Heartbeat(resources=pb.Resources(mem_mb=math.nan)))


def test_module_request() -> None:
    modules = {b"s" * 32: ModuleInfo(100, pb.WASM_MODULE, "m", 0.0)}
    assert check.check_module_request(pb.ModuleRequest(sha256=b"s" * 32, offset=100),
                                      modules).size == 100
    refused(E.NOT_FOUND, check.check_module_request, pb.ModuleRequest(sha256=b"t" * 32), modules)
    refused(E.BAD_REQUEST, check.check_module_request,
            pb.ModuleRequest(sha256=b"s" * 32, offset=101), modules)


def test_framework_calls() -> None:
    refused(E.UNAUTHENTICATED, check.check_subscribed, None)
    assert check.check_framework_id(pb.FrameworkCall(framework_id="a", revive=pb.Revive()),
                                    "a") == "revive"
    refused(E.FORBIDDEN, check.check_framework_id, pb.FrameworkCall(framework_id="b"), "a")
    refused(E.BAD_REQUEST, check.check_framework_id, pb.FrameworkCall(framework_id="a"), "a")


def test_subscribe() -> None:
    cfg = MasterConfig(framework_tokens=["ft"], failover_default_s=60, failover_max_s=100)
    assert check.check_subscribe(pb.Subscribe(token="ft"), cfg) == 60
    assert check.check_subscribe(pb.Subscribe(token="ft", failover_timeout_s=1e9), cfg) == 100
    principals = Principals({"default": ["ft"], "ops": ["ot"]})
    assert check.check_principal("ft", principals)[0] == "default"
    assert check.check_principal("ot", principals)[0] == "ops"
    assert "no framework token" in refused(E.UNAUTHENTICATED, check.check_principal, "",
                                           principals)
    refused(E.UNAUTHENTICATED, check.check_principal, "f", principals)
    refused(E.BAD_REQUEST, check.check_subscribe,
            pb.Subscribe(token="ft", failover_timeout_s=-1), cfg)
    refused(E.BAD_REQUEST, check.check_subscribe, pb.Subscribe(token="ft", role="r" * 201), cfg)
    check.check_connection_free(None, "")
    check.check_connection_free("fw-1", "fw-1")
    refused(E.CONFLICT, check.check_connection_free, "fw-1", "fw-2")


def test_resubscribe_needs_the_secret() -> None:
    fw = Framework("fw-1", "n", "prod", 1.0, 60, hashlib.sha256(b"secret").digest())

    def sub(secret: bytes, role: str = "") -> pb.FrameworkCall:
        return pb.FrameworkCall(framework_id="fw-1", subscribe=pb.Subscribe(
            framework_secret=secret, role=role))

    assert check.check_resubscribe(fw, sub(b"secret"), "*") is fw
    # Bound to the principal that created it: another one cannot take it, secret or not.
    assert "another principal" in refused(E.FORBIDDEN, check.check_resubscribe, fw,
                                          sub(b"secret"), "*", "ops")
    refused(E.NOT_FOUND, check.check_resubscribe, None, sub(b"secret"), "*")
    refused(E.FORBIDDEN, check.check_resubscribe, fw, sub(b"guess"), "*")
    refused(E.BAD_REQUEST, check.check_resubscribe, fw, sub(b"secret", "dev"), "dev")
    fw.removing = True
    refused(E.NOT_FOUND, check.check_resubscribe, fw, sub(b"secret"), "*")


def accept_state() -> tuple[MasterState, Framework]:
    st = MasterState(MasterConfig(max_tasks_per_accept=3))
    reg = pb.Register(executors=[pb.DOCKER])
    for aid in (1, 2):
        st.agents[aid] = Agent(aid, b"", b"", reg, Res(cpus=4, mem_mb=1024))
        st.offers[f"o{aid}"] = Offer(f"o{aid}", "fw-1", aid, Res(cpus=2, mem_mb=512), 100.0)
    st.offers["theirs"] = Offer("theirs", "fw-2", 1, Res(cpus=1), 100.0)
    return st, Framework("fw-1", "n", "*", 1.0, 60, b"")


@pytest.mark.parametrize("offer_ids,launch,now,code", [
    ([], [], 0, E.BAD_REQUEST),
    (["o1"], [task_info(f"t{i}", 0.1, 1) for i in range(4)], 0, E.TOO_LARGE),
    (["nope"], [], 0, E.INVALID_OFFER),
    (["theirs"], [], 0, E.INVALID_OFFER),
    (["o1", "o1"], [], 0, E.BAD_REQUEST),
    (["o1"], [], 100.0, E.INVALID_OFFER),
    (["o1", "o2"], [], 0, E.INVALID_OFFER),
    (["o1"], [task_info("t", 1, 1), task_info("t", 1, 1)], 0, E.CONFLICT),
    (["o1"], [task_info("t", 3, 1)], 0, E.INVALID_OFFER),
    (["o1"], [pb.TaskInfo(task_id="w", spec=pb.TaskSpec(wasm=pb.WasmTask(sha256=b"s" * 32)))],
     0, E.UNSUPPORTED),
])
def test_accept_refusals(offer_ids: list[str], launch: list[pb.TaskInfo], now: float,
                         code: int) -> None:
    st, fw = accept_state()
    acc = pb.Accept(offer_ids=offer_ids, launch=launch)
    refused(code, check.check_accept, st, fw, acc, now)
    assert len(st.offers) == 3


def test_accept_of_an_unsynced_agent_or_a_used_task_id() -> None:
    st, fw = accept_state()
    acc = pb.Accept(offer_ids=["o1"], launch=[task_info("t", 1, 256)], refuse_seconds=5)
    offers, agent, claims, rest, refuse = check.check_accept(st, fw, acc, 0)
    assert ([o.offer_id for o in offers], agent.agent_id, refuse) == (["o1"], 1, 5)
    assert claims == [Res(cpus=1, mem_mb=256)] and rest == Res(cpus=1, mem_mb=256)
    fw.completed["t"] = None  # type: ignore[assignment]
    refused(E.CONFLICT, check.check_accept, st, fw, acc, 0)
    del fw.completed["t"]
    st.agents[1].synced = False
    assert "not active" in refused(E.INVALID_OFFER, check.check_accept, st, fw, acc, 0)


def test_kill_ack_and_upload() -> None:
    fw = Framework("fw-1", "n", "*", 1.0, 60, b"")
    refused(E.NOT_FOUND, check.known_task, fw, "t")
    check.check_ack_order([pb.TaskStatus(uuid=b"a")], b"z")  # unknown: ignored, not refused
    refused(E.CONFLICT, check.check_ack_order, [pb.TaskStatus(uuid=b"a")], b"a")
    cfg = MasterConfig(module_max_bytes=100)
    check.check_upload(pb.UploadModule(format=pb.WASM_MODULE, data=wasm_module()), cfg)
    refused(E.BAD_REQUEST, check.check_upload, pb.UploadModule(), cfg)
    refused(E.TOO_LARGE, check.check_upload, pb.UploadModule(data=b"x" * 101), cfg)
    refused(E.BAD_REQUEST, check.check_upload,
            pb.UploadModule(format=pb.WASM_MODULE, data=b"not wasm"), cfg)
    st = MasterState(MasterConfig(modules_total_bytes=100))
    st.modules_total = 60
    check.check_module_room(st, 40)
    refused(E.TOO_LARGE, check.check_module_room, st, 41)
