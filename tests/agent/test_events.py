"""The agent core's vocabulary (`edgerm_agent.events`): events say what to do and hold no
state, and `Event` names every one the core can hand its shell."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from edgerm.wire import pb
from edgerm_agent import events
from edgerm_agent.events import Event, KillTask, LaunchTask, OutgoingCall


def test_event_names_every_event_class_of_the_module() -> None:
    classes = {getattr(events, name) for name in events.__all__}
    declared = set(typing.get_args(Event))
    assert declared == classes - {Event, OutgoingCall}


@pytest.mark.parametrize("cls", [*typing.get_args(Event), OutgoingCall])
def test_every_event_is_frozen(cls: type) -> None:
    assert dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_a_kill_is_a_requested_kill_unless_told_otherwise() -> None:
    assert KillTask(3).reason == pb.KILL_REQUESTED
    assert KillTask(3, pb.AGENT_RESTARTED) != KillTask(3)
    spec = pb.TaskSpec(name="t")
    with pytest.raises(dataclasses.FrozenInstanceError):
        LaunchTask(1, spec).task = 2  # type: ignore[misc]
