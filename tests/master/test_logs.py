"""The core's log lines: refusals rate-limited per subject, never dropped without a count."""

from __future__ import annotations

import logging

import pytest

from edgerm.wire import encode, pb
from edgerm_master import logs


def test_refusals_beyond_the_window_limit_are_summed_up(caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    caplog.set_level(logging.INFO)
    refusals = logs.RefusalLog()
    n = logs.REFUSALS_PER_WINDOW + 5
    for i in range(n):
        refusals.log(logs.log_agents, logging.WARNING, 100.0 + i * 0.01, f"no {i}", {})
    # Another subject has a window of its own.
    refusals.log(logs.log_frameworks, logging.INFO, 100.5, "fw no", {})
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"no {i}" for i in range(logs.REFUSALS_PER_WINDOW)] + ["fw no"]
    refusals.flush(100.0 + logs.REFUSAL_WINDOW_S - 1)  # the window has not ended yet
    assert len(caplog.records) == logs.REFUSALS_PER_WINDOW + 1
    refusals.flush(100.0 + logs.REFUSAL_WINDOW_S)
    summary = caplog.records[-1]
    assert summary.getMessage().startswith("5 more refusals in 10 s")
    assert summary.getMessage().endswith(f"the last: no {n - 1}")
    assert summary.name == "edgerm.master.agents" and summary.count == 5  # type: ignore[attr-defined]
    refusals.log(logs.log_agents, logging.WARNING, 200.0, "again", {})
    assert caplog.records[-1].getMessage() == "again"  # a new window logs again


def test_names() -> None:
    assert logs.code_name(pb.FORBIDDEN) == "FORBIDDEN" and logs.code_name(999) == "999"
    assert logs.reason_name(pb.AGENT_LOST) == "AGENT_LOST" and logs.reason_name(999) == "999"
    assert logs.agent_name(encode(pb.Register(name="edge"))) == "edge"
    assert logs.agent_name(b"\xff") == "?"
