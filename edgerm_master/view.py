"""The operator's view: a StateRequest (with an operator token) -> the ClusterState, every
agent, framework, task and offer as the master sees them now. Read-only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from edgerm.resources import Res
from edgerm.wire import DecodeError, Limits, decode, encode, pb
from edgerm_master.agent_states import STATE_NAMES
from edgerm_master.logs import code_name, log_operator
from edgerm_master.state import Agent, Framework, MasterState, Offer, Task
from edgerm_master.task_states import ACTIVE
from edgerm_master.validation import executor_of, tokens_match

__all__ = ["cluster_state", "state_view", "operator_refusal", "VERSION", "SECTIONS", "items",
           "ITEM_VIEWS", "agent_view", "framework_view", "task_view", "offer_view"]

VERSION = "edgerm-master 0.1.0"

E = pb.ErrorCode


def cluster_state(st: MasterState, data: bytes, now: float, peer: str) -> tuple[int, bytes]:
    """A StateRequest -> (0, encoded ClusterState) or (error code, encoded Error)."""
    try:
        req = decode(pb.StateRequest, data, Limits(max_input=4096))
    except DecodeError as e:
        return _refused(st, E.BAD_REQUEST, f"bad StateRequest: {e}", now, peer)
    refusal = operator_refusal(st, req.token, now, peer)
    if refusal is not None:
        return refusal, encode(pb.Error(code=refusal, message=_NO_TOKEN_TEXT[bool(req.token)]))  # type: ignore[arg-type]
    return 0, encode(state_view(st, now))


_NO_TOKEN_TEXT = {
    False: "no operator token given: ask with one of the master's operator_tokens",
    True: "wrong operator token: ask with one of the master's operator_tokens",
}


def operator_refusal(st: MasterState, token: str | None, now: float, peer: str,
                     via: str = "state request") -> int | None:
    """None if `token` is one of the operator tokens, else UNAUTHENTICATED, logged (rate-limited
    by the refusal log) with the peer. The text to answer is `_NO_TOKEN_TEXT[bool(token)]`."""
    if token and tokens_match(token, st.config.operator_tokens):
        return None
    _refused(st, E.UNAUTHENTICATED, _NO_TOKEN_TEXT[bool(token)], now, peer, via)
    return E.UNAUTHENTICATED


def _refused(st: MasterState, code: int, text: str, now: float, peer: str,
             via: str = "state request") -> tuple[int, bytes]:
    st.refusal_log.log(
        log_operator, logging.WARNING, now,
        f"refused a {via} from {peer or '?'}: {code_name(code)}: {text}",
        {"event": "state_refused", "peer": peer, "code": code_name(code)})
    return code, encode(pb.Error(code=code, message=text))  # type: ignore[arg-type]


# The lists of a ClusterState. Each is built item by item (`items`, then `ITEM_VIEWS`), so the
# HTTP API can filter and page the master's own objects and build views for one page only:
# decoding an agent's registration is most of an item's cost (~80 us; 0.8 s for 10,000 agents).
SECTIONS = ("agents", "frameworks", "tasks", "offers")


def state_view(st: MasterState, now: float, sections: tuple[str, ...] = SECTIONS
               ) -> pb.ClusterState:
    """The operator's view; `sections`: only those lists."""
    cs = pb.ClusterState(now=now, version=VERSION)
    for name in sections:
        build = ITEM_VIEWS[name]
        getattr(cs, name).extend(build(st, item, now) for item in items(st, name))
    return cs


def items(st: MasterState, section: str) -> list[Any]:
    """The master's objects behind one list, in its order: `Agent`s, `Framework`s,
    (framework id, `Task`) pairs, `Offer`s."""
    if section == "agents":
        return list(st.agents.values())
    if section == "frameworks":
        return list(st.frameworks.values())
    if section == "tasks":
        # Also the tasks of recently removed frameworks: `edgerm run` tears its framework down
        # as soon as its task ended, and the operator still wants to see how it ended.
        return [(fw.framework_id, task)
                for fw in list(st.frameworks.values()) + list(st.removed_frameworks)
                for task in list(fw.tasks.values()) + list(fw.completed.values())]
    if section == "offers":
        return list(st.offers.values())
    raise ValueError(f"no list {section!r}")


def agent_view(st: MasterState, agent: Agent, now: float) -> pb.AgentView:
    reg = decode(pb.Register, agent.info)
    used = Res.EMPTY
    for task in (agent.tasks or {}).values():
        used = used + task.res
    view = pb.AgentView(agent_id=agent.agent_id, name=reg.name,
                        state=STATE_NAMES.get(agent.state, "?"),
                        total=agent.total.to_pb(), used=used.to_pb(),
                        last_seen=agent.last_seen, transport=agent.transport)
    view.attributes.extend(reg.attributes)
    view.executors.extend(reg.executors)
    return view


def framework_view(st: MasterState, fw: Framework, now: float) -> pb.FrameworkView:
    try:
        share = st.allocator.dominant_share(fw.framework_id)
    except KeyError:
        share = 0.0
    return pb.FrameworkView(framework_id=fw.framework_id, name=fw.name, role=fw.role,
                            weight=fw.weight, connected=fw.conn is not None,
                            tasks=sum(1 for t in fw.tasks.values() if t.state in ACTIVE),
                            dominant_share=share, principal=fw.principal)


def task_view(st: MasterState, item: tuple[str, Task], now: float) -> pb.TaskView:
    framework_id, task = item
    spec = decode(pb.TaskSpec, task.spec)
    return pb.TaskView(task_id=task.task_id, framework_id=framework_id,
                       agent_id=task.agent_id, name=spec.name, state=task.state,  # type: ignore[arg-type]
                       reason=task.reason, message=task.message,  # type: ignore[arg-type]
                       executor=executor_of(spec), resources=task.res.to_pb())  # type: ignore[arg-type]


def offer_view(st: MasterState, offer: Offer, now: float) -> pb.Offer:
    return pb.Offer(offer_id=offer.offer_id, agent_id=offer.agent_id,
                    resources=offer.res.to_pb(), expires_in_s=max(0.0, offer.expires - now))


ITEM_VIEWS: dict[str, Callable[[MasterState, Any, float], Message]] = {
    "agents": agent_view, "frameworks": framework_view, "tasks": task_view,
    "offers": offer_view}
