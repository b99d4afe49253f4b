"""The core's outputs: what the shell receives and matches on."""

from __future__ import annotations

from edgerm.wire import pb
from edgerm_master import core, events


def test_the_core_exports_the_events_the_shell_matches_on() -> None:
    # The shell (service.py) and the testing Cluster import them from edgerm_master.core.
    for name in ("ToFramework", "ToAgent", "CloseFramework", "ModuleRead", "AgentResult"):
        assert getattr(core, name) is getattr(events, name)


def test_defaults() -> None:
    result = events.AgentResult(b"x")
    assert (result.error, result.agent_id, result.module) == (0, 0, None)
    close = events.CloseFramework(3, "why")
    assert close.refused is False
    push = events.ToAgent(1, b"reply")
    assert isinstance(push, events.Outgoing)  # type: ignore[arg-type]
    assert isinstance(events.ToFramework(1, pb.FrameworkEvent()), events.Outgoing)  # type: ignore[arg-type]
