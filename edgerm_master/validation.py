"""Every check of an incoming call (Mesos's validation.cpp): agents' calls, frameworks' calls and
the tasks they launch. A check reads the master's state it is given and changes nothing; it raises
`CallError(code, text)`, whose text names the field and says what to do, and the caller answers
with it. So a refused call changes nothing: the parts of the core check first, then apply.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable, Iterable
from typing import TypeVar

from google.protobuf.message import Message

from edgerm.resources import Res, ResourceError
from edgerm.wire import NONCE_LEN, PROTOCOL_VERSION, DecodeError, Limits, decode, pb, verify
from edgerm_master.agent_states import AGENT_ACTIVE
from edgerm_master.config import MasterConfig
from edgerm_master.modules import ModuleError, check_module
from edgerm_master.principals import DEFAULT_PRINCIPAL, Principals
from edgerm_master.state import Agent, Framework, MasterState, ModuleInfo, Offer, Task

__all__ = [
    "CallError", "tokens_match", "executor_of", "module_of", "check_task_info",
    "check_refuse_seconds", "check_text", "MAX_TASK_ID", "MAX_NAME", "BAD_AGENT",
    "check_size", "decode_untrusted", "seq_is_fresh", "check_seq", "check_first_call",
    "registration_token", "check_caller", "check_call_kind", "check_register", "check_nonce",
    "check_heartbeat", "check_module_request", "check_subscribed", "check_framework_id",
    "check_subscribe", "check_principal", "check_connection_free", "check_resubscribe",
    "check_other_framework", "check_accept",
    "known_task", "check_ack_order", "check_upload", "check_module_room",
]

E = pb.ErrorCode

MAX_TASK_ID = 200
MAX_NAME = 200
SHA256_LEN = 32


class CallError(Exception):
    """A refused call: `code` is a pb.ErrorCode, `text` goes back to the caller verbatim."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def tokens_match(given: str, allowed: Iterable[str]) -> bool:
    """Constant-time comparison against each configured token (no early exit on a match, so
    the time does not tell which one or how much of it was right)."""
    g = given.encode("utf-8", "surrogatepass")
    ok = False
    for token in allowed:
        if hmac.compare_digest(g, token.encode("utf-8", "surrogatepass")) and token:
            ok = True
    return ok


def check_text(value: str, field: str, limit: int = MAX_NAME, empty_ok: bool = True) -> None:
    if not empty_ok and not value:
        raise CallError(E.BAD_REQUEST, f"{field} must not be empty")
    if len(value) > limit:
        raise CallError(E.BAD_REQUEST, f"{field} is {len(value)} characters, limit {limit}")


_EXECUTORS = {"docker": pb.DOCKER, "wasm": pb.WASM, "micropython": pb.MICROPYTHON}


def executor_of(spec: pb.TaskSpec) -> int:
    kind = spec.WhichOneof("kind")
    return _EXECUTORS.get(kind or "", pb.EXECUTOR_UNSPECIFIED)


def module_of(spec: pb.TaskSpec) -> tuple[bytes, int] | None:
    """(sha256, size) of the module a WASM or MicroPython task runs, else None."""
    kind = spec.WhichOneof("kind")
    if kind == "wasm":
        return spec.wasm.sha256, spec.wasm.size
    if kind == "micropython":
        return spec.micropython.sha256, spec.micropython.size
    return None


def check_task_info(ti: pb.TaskInfo, agent_executors: int,
                    module_sizes: dict[bytes, int]) -> None:
    """A task of an accept, on its own: id, kind, executor on that agent, module present."""
    check_text(ti.task_id, "TaskInfo.task_id", MAX_TASK_ID, empty_ok=False)
    if any(c in ti.task_id for c in "\x00\n\r"):
        raise CallError(E.BAD_REQUEST, "TaskInfo.task_id must not contain control characters")
    where = f"task {ti.task_id!r}"
    check_text(ti.spec.name, f"{where}: TaskSpec.name")
    ex = executor_of(ti.spec)
    if ex == pb.EXECUTOR_UNSPECIFIED:
        raise CallError(E.BAD_REQUEST, f"{where}: TaskSpec needs one of docker, wasm, micropython")
    if not agent_executors & (1 << ex):
        raise CallError(
            E.UNSUPPORTED,
            f"{where}: the agent has no {pb.Executor.Name(ex)} executor "  # type: ignore[arg-type]
            "(see Offer.executors)")
    if ex == pb.DOCKER and not ti.spec.docker.image:
        raise CallError(E.BAD_REQUEST, f"{where}: DockerTask.image must not be empty")
    mod = module_of(ti.spec)
    if mod is not None:
        sha, size = mod
        if len(sha) != SHA256_LEN:
            raise CallError(E.BAD_REQUEST, f"{where}: sha256 must be 32 bytes, got {len(sha)}")
        have = module_sizes.get(sha)
        if have is None:
            raise CallError(
                E.NOT_FOUND,
                f"{where}: the master has no module {sha.hex()}; upload it first "
                "(FrameworkCall.upload)")
        if size and size != have:
            raise CallError(E.BAD_REQUEST,
                            f"{where}: module {sha.hex()} has {have} bytes, the task says {size}")


def check_refuse_seconds(value: float, field: str) -> float:
    if math.isnan(value) or value < 0 or math.isinf(value):
        raise CallError(E.BAD_REQUEST, f"{field} must be a finite number >= 0")
    return min(value, 365 * 24 * 3600.0)


# --------------------------------------------------------------------------------------------
# Any call

M = TypeVar("M", bound=Message)


def check_size(size: int, limit: int, what: str) -> None:
    if size > limit:
        raise CallError(E.TOO_LARGE, f"{what} of {size} bytes is over the limit of {limit}")


def decode_untrusted(message: type[M], data: bytes, limits: Limits) -> M:
    """Network bytes -> a `message`; a `CallError` (BAD_REQUEST) if they are not one."""
    try:
        return decode(message, data, limits)
    except DecodeError as e:
        raise CallError(E.BAD_REQUEST, f"bad {message.__name__}: {e}") from None


# --------------------------------------------------------------------------------------------
# Agents' calls

BAD_AGENT = ("unknown agent, bad mac or stale seq; an agent the master does not know registers "
             "afresh with the agent token")


def seq_is_fresh(last: int, seq: int) -> bool:
    """A call's seq must pass every seq seen from the agent: a recorded call replayed is not
    (agents persist a bound ahead of their seq, so this holds across their reboots too)."""
    return seq > last


def check_seq(last: int, seq: int) -> None:
    if not seq_is_fresh(last, seq):
        raise CallError(E.UNAUTHENTICATED, BAD_AGENT)


def check_first_call(kind: str | None) -> None:
    """A call without agent_id: only a first registration may come without one."""
    if kind != "register":
        raise CallError(E.UNAUTHENTICATED, "an AgentCall without agent_id must be a Register "
                        "signed with the agent token's key")


def registration_token(call: pb.AgentCall, token_keys: list[tuple[str, bytes]]) -> str:
    """The configured agent token whose key signed this first registration. Every key is
    tried (no early exit) so the time does not tell which one matched."""
    found = None
    for token, key in token_keys:
        if verify(call, key):
            found = token
    if found is None:
        raise CallError(E.UNAUTHENTICATED, "first registration not signed with an agent token of "
                        "this master: give the agent the token in the master's agent_tokens")
    return found


def check_caller(call: pb.AgentCall, agent: Agent | None) -> Agent:
    """The agent the call names, if the call carries its MAC."""
    if agent is None or not verify(call, agent.secret):
        raise CallError(E.UNAUTHENTICATED, BAD_AGENT)
    return agent


def check_call_kind(kind: str | None) -> str:
    if kind is None:
        raise CallError(E.BAD_REQUEST, "AgentCall carries no call (register, heartbeat, "
                        "status, publish or module)")
    return kind


def check_register(reg: pb.Register, inventory: Callable[[pb.Resources], Res]) -> Res:
    """A registration's version, name and resources -> its total (via `inventory`)."""
    if reg.protocol_version != PROTOCOL_VERSION:
        raise CallError(E.UNSUPPORTED, f"Register.protocol_version {reg.protocol_version} is "
                        f"not supported; this master speaks {PROTOCOL_VERSION}")
    check_text(reg.name, "Register.name")
    try:
        return inventory(reg.resources)
    except ResourceError as e:
        raise CallError(E.BAD_REQUEST, f"Register.resources: {e}") from None


def check_nonce(reg: pb.Register, seen: dict[bytes, None]) -> None:
    """A first registration's nonce: fresh random bytes, not one of a recent registration."""
    if len(reg.nonce) != NONCE_LEN:
        raise CallError(E.BAD_REQUEST, f"Register.nonce must be {NONCE_LEN} fresh random "
                        f"bytes, not {len(reg.nonce)}")
    if reg.nonce in seen:
        raise CallError(E.UNAUTHENTICATED, "replayed registration (nonce already used): "
                        "an agent registers with a fresh nonce")


def check_heartbeat(hb: pb.Heartbeat) -> None:
    if hb.HasField("resources"):
        try:
            Res.from_pb(hb.resources)
        except ResourceError as e:
            raise CallError(E.BAD_REQUEST, f"Heartbeat.resources: {e}") from None


def check_module_request(mr: pb.ModuleRequest, modules: dict[bytes, ModuleInfo]) -> ModuleInfo:
    m = modules.get(mr.sha256)
    if m is None:
        raise CallError(E.NOT_FOUND, f"no module {mr.sha256.hex()}")
    if mr.offset > m.size:
        raise CallError(E.BAD_REQUEST, f"offset {mr.offset} beyond the module's {m.size} "
                        "bytes")
    return m


# --------------------------------------------------------------------------------------------
# Frameworks' calls


def check_subscribed(fid: str | None) -> str:
    """The framework subscribed on the connection a call came on."""
    if fid is None:
        raise CallError(E.UNAUTHENTICATED,
                        "subscribe first: the first call on a connection is Subscribe")
    return fid


def check_other_framework(call: pb.FrameworkCall, mine: Framework,
                          other: Framework | None) -> None:
    """A call naming a framework (`other`) other than the one subscribed on its connection
    (`mine`): refused as `check_framework_id` does, saying so when `other` belongs to another
    principal (its tasks, updates and outputs are none of this connection's business)."""
    if other is not None and other.principal != mine.principal:
        raise CallError(E.FORBIDDEN,
                        f"framework {call.framework_id!r} belongs to another principal: "
                        f"this connection is framework {mine.framework_id!r} of principal "
                        f"{mine.principal!r}, and acts for it alone")


def check_framework_id(call: pb.FrameworkCall, fid: str) -> str:
    if call.framework_id != fid:
        raise CallError(E.FORBIDDEN, "framework_id does not match the framework "
                        "subscribed on this connection")
    kind = call.WhichOneof("call")
    if kind is None:
        raise CallError(E.BAD_REQUEST, "FrameworkCall carries no call")
    return kind


def check_principal(token: str, principals: Principals) -> tuple[str, bytes]:
    """A Subscribe's token -> (its principal, the token's SHA-256); UNAUTHENTICATED if it is
    none of theirs. The text names no principal."""
    found = principals.identify(token)
    if found is None:
        raise CallError(E.UNAUTHENTICATED,
                        ("wrong framework token" if token else "no framework token given")
                        + ": subscribe with a token of one of the master's framework "
                        "principals ([frameworks.principals] in its config)")
    return found


def check_subscribe(sub: pb.Subscribe, cfg: MasterConfig) -> float:
    """A Subscribe on its own (its token: `check_principal`): names, failover timeout -> the
    failover timeout to use."""
    check_text(sub.name, "Subscribe.name")
    check_text(sub.role, "Subscribe.role")
    failover = sub.failover_timeout_s
    if math.isnan(failover) or failover < 0:
        raise CallError(E.BAD_REQUEST, "Subscribe.failover_timeout_s must be >= 0")
    return min(failover or cfg.failover_default_s, cfg.failover_max_s)


def check_connection_free(current: str | None, framework_id: str) -> None:
    """A connection subscribes as one framework only."""
    if current is not None and current != framework_id:
        raise CallError(E.CONFLICT, f"this connection is already subscribed as {current}")


def check_resubscribe(fw: Framework | None, call: pb.FrameworkCall, role: str,
                      principal: str = DEFAULT_PRINCIPAL) -> Framework:
    """A Subscribe with framework_id (failover): the framework exists, is bound to the
    caller's principal, and the caller holds its secret. Checked before anything about the
    framework is touched or told."""
    sub = call.subscribe
    if fw is None or fw.removing:
        raise CallError(E.NOT_FOUND,
                        f"no framework {call.framework_id!r} (removed, or its failover "
                        "timeout passed): subscribe without framework_id to start anew")
    if fw.principal != principal:
        raise CallError(E.FORBIDDEN,
                        f"framework {call.framework_id!r} is bound to another principal than "
                        f"{principal!r} (the one whose token created it): subscribe with a "
                        "token of that principal, or without framework_id to start anew")
    # The id is public (listed in the state view); the secret is what makes it yours.
    if not fw.secret_digest or not hmac.compare_digest(
            fw.secret_digest, hashlib.sha256(sub.framework_secret).digest()):
        raise CallError(E.FORBIDDEN,
                        f"framework {call.framework_id!r} belongs to whoever it gave its "
                        "framework_secret: Subscribe.framework_secret is missing or wrong")
    if sub.role and role != fw.role:
        raise CallError(E.BAD_REQUEST, f"the framework's role is {fw.role!r}; it cannot "
                        "change on failover")
    return fw


def check_accept(st: MasterState, fw: Framework, acc: pb.Accept, now: float
                 ) -> tuple[list[Offer], Agent, list[Res], Res, float]:
    """An Accept -> (its offers, their agent, each task's claim, what the offers hold beyond
    the claims, refuse seconds). Every offer is the framework's, current and on one active
    agent; every task is valid there, its id new, and the claims fit the offers."""
    if not acc.offer_ids:
        raise CallError(E.BAD_REQUEST, "Accept.offer_ids is empty")
    if len(acc.launch) > st.config.max_tasks_per_accept:
        raise CallError(E.TOO_LARGE, f"{len(acc.launch)} tasks in one accept, limit "
                        f"{st.config.max_tasks_per_accept}")
    refuse = check_refuse_seconds(acc.refuse_seconds, "Accept.refuse_seconds")
    offers: list[Offer] = []
    for oid in acc.offer_ids:
        offer = st.offers.get(oid)
        # Someone else's offer looks exactly like an unknown one: nothing leaks.
        if offer is None or offer.framework_id != fw.framework_id:
            raise CallError(E.INVALID_OFFER, f"offer {oid!r} is unknown, expired, rescinded "
                            "or already used")
        if offer in offers:
            raise CallError(E.BAD_REQUEST, f"offer {oid!r} is named twice")
        if now >= offer.expires:
            raise CallError(E.INVALID_OFFER, f"offer {oid!r} has expired")
        offers.append(offer)
    aid = offers[0].agent_id
    if any(o.agent_id != aid for o in offers):
        raise CallError(E.INVALID_OFFER, "the offers of one accept must all be on one agent")
    agent = st.agents[aid]
    if agent.state != AGENT_ACTIVE or not agent.synced:
        raise CallError(E.INVALID_OFFER, f"agent {aid} is not active")
    offered = offers[0].res
    for o in offers[1:]:
        offered = offered + o.res
    claims: list[Res] = []
    needed = Res.EMPTY
    ids: set[str] = set()
    for ti in acc.launch:
        check_task_info(ti, agent.executors, st.module_sizes)
        if ti.task_id in ids or ti.task_id in fw.tasks or ti.task_id in fw.completed:
            raise CallError(E.CONFLICT, f"task id {ti.task_id!r} is already used by this "
                            "framework")
        ids.add(ti.task_id)
        try:
            claim = Res.claim_from_pb(ti.spec.resources, agent.total)
        except ResourceError as e:
            raise CallError(E.BAD_REQUEST, f"task {ti.task_id!r}: resources: {e}") from None
        claims.append(claim)
        needed = needed + claim
    if not offered.contains(needed):
        raise CallError(E.INVALID_OFFER, "the tasks need more than the offers hold: "
                        + "; ".join(offered.missing(needed)))
    return offers, agent, claims, offered - needed, refuse


def known_task(fw: Framework, task_id: str) -> Task:
    """A task of the framework, current or completed."""
    task = fw.tasks.get(task_id) or fw.completed.get(task_id)
    if task is None:
        raise CallError(E.NOT_FOUND, f"this framework has no task {task_id!r}")
    return task


def check_ack_order(pending: Iterable[pb.TaskStatus], uuid: bytes) -> None:
    """An Acknowledge of an update that is not the oldest unacknowledged one of its task."""
    if any(u.uuid == uuid for u in pending):
        raise CallError(E.CONFLICT, "acknowledge the updates of a task in the order they came")


def check_upload(up: pb.UploadModule, cfg: MasterConfig) -> None:
    data = up.data
    if not data:
        raise CallError(E.BAD_REQUEST, "UploadModule.data is empty")
    if len(data) > cfg.module_max_bytes:
        raise CallError(E.TOO_LARGE, f"module of {len(data)} bytes, limit "
                        f"{cfg.module_max_bytes}")
    check_text(up.name, "UploadModule.name")
    try:
        check_module(up.format, data)
    except ModuleError as e:
        raise CallError(E.BAD_REQUEST, str(e)) from None


def check_module_room(st: MasterState, size: int) -> None:
    """Room in the module store for a new module of `size` bytes."""
    if st.modules_total + size > st.config.modules_total_bytes:
        raise CallError(E.TOO_LARGE, "the module store is full "
                        f"({st.modules_total} of {st.config.modules_total_bytes} bytes)")
