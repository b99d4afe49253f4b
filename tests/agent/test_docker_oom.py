"""The Docker executor's OOM verdict when the engine's `State.OOMKilled` says no: a container that
exited by a SIGKILL nobody sent is an OOM kill if the engine logged an "oom" event for it, even
one logged a moment after the exit (containerd sent the two events in either order before
containerd#12714; a run of the suite here saw a 16 MB `tail /dev/zero` reported EXITED_NONZERO
137).

The race cannot be provoked on a real engine, so a stand-in client plays the engine's event log;
test_e2e_docker.py checks both verdicts against a real one."""

from __future__ import annotations

from typing import Any

import pytest

from edgerm_agent.executors import docker as docker_executor
from edgerm_agent.executors.docker import DockerExecutor


class EventLog:
    """client.events(...) as docker-py has it: a closable generator of decoded events. The
    "oom" event appears from the `late`-th query on (None: never)."""

    def __init__(self, late: int | None) -> None:
        self.late = late
        self.queries: list[dict[str, Any]] = []

    def events(self, **kwargs: Any) -> Any:
        self.queries.append(kwargs)
        found = self.late is not None and len(self.queries) >= self.late
        return (e for e in ([{"status": "oom", "id": "c1"}] if found else []))


class Container:
    id = "c1"
    attrs = {"State": {"OOMKilled": False, "StartedAt": "2026-12-07T16:00:00.123456789Z"}}


def executor(log: EventLog) -> DockerExecutor:
    ex = DockerExecutor("agent-key")
    ex._client = log  # the SDK client is made on first use; this one is already there
    return ex


async def test_an_oom_event_logged_after_the_exit_is_an_oom_kill() -> None:
    log = EventLog(late=3)
    assert await executor(log)._oom_logged(Container())
    assert len(log.queries) == 3
    q = log.queries[0]
    assert q["filters"] == {"container": "c1", "event": "oom"} and q["decode"] is True
    assert q["since"] == 1796659200                  # StartedAt, to the second
    assert float(q["until"]) > q["since"] and "." in q["until"]   # now, to the nanosecond


async def test_no_oom_event_is_no_oom_kill(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker_executor, "_OOM_EVENT_WAIT_S", 0.5)
    log = EventLog(late=None)
    assert not await executor(log)._oom_logged(Container())
    assert 2 <= len(log.queries) <= 5   # asked again over the wait, then gave up
