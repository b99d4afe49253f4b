"""The master core's log lines: one logger per subject and the rate limit on refusals.

The core logs what happens (registrations, refusals, subscriptions, task and agent state
changes) through the stdlib `logging` module, which does no I/O of its own: the handler the
process configures does (docs/master.md, "Logs"). Every line carries its facts as `extra=` fields
(`event`, `agent_id`, `framework_id`, `task_id`, `peer`, ...) for structured output. The steady
heartbeat path logs nothing; refusals are rate-limited per subject (`RefusalLog`), never dropped
without a count.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from edgerm.wire import DecodeError, decode, pb

__all__ = ["log_agents", "log_frameworks", "log_tasks", "log_operator", "RefusalLog",
           "code_name", "reason_name", "agent_name"]

# Loggers by subject, so an operator can turn one up or down.
log_agents = logging.getLogger("edgerm.master.agents")
log_frameworks = logging.getLogger("edgerm.master.frameworks")
log_tasks = logging.getLogger("edgerm.master.tasks")
log_operator = logging.getLogger("edgerm.master.operator")

# Refusals logged per subject (agents, frameworks, operator) within one window; more are counted
# and summed up in one line when the window ends. A fleet with a wrong token or a flood of forged
# calls cannot fill the disk, and the operator still sees how many there were and the last reason.
REFUSALS_PER_WINDOW = 10
REFUSAL_WINDOW_S = 10.0


class RefusalLog:
    """Rate-limited refusal lines (sans-IO: time is the `now` of the call being refused)."""

    __slots__ = ("_window_start", "_logged", "_suppressed", "_last")

    def __init__(self) -> None:
        self._window_start: dict[str, float] = {}
        self._logged: dict[str, int] = {}
        self._suppressed: dict[str, int] = {}
        self._last: dict[str, str] = {}

    def log(self, logger: logging.Logger, level: int, now: float, text: str,
            extra: dict[str, Any]) -> None:
        key = logger.name
        if now - self._window_start.get(key, -math.inf) >= REFUSAL_WINDOW_S:
            self.flush(now, key)
            self._window_start[key] = now
            self._logged[key] = 0
        if self._logged[key] < REFUSALS_PER_WINDOW:
            self._logged[key] += 1
            logger.log(level, "%s", text, extra=extra)
        else:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            self._last[key] = text

    def flush(self, now: float, only: str | None = None) -> None:
        """Sum up the refusals not logged in windows that have ended (or `only`'s)."""
        for key in [only] if only is not None else list(self._suppressed):
            n = self._suppressed.get(key, 0)
            if not n:
                continue
            if only is None and now - self._window_start.get(key, -math.inf) < REFUSAL_WINDOW_S:
                continue
            logging.getLogger(key).warning(
                "%d more refusals in %g s not logged one by one; the last: %s", n,
                REFUSAL_WINDOW_S, self._last[key],
                extra={"event": "refusals_suppressed", "count": n})
            del self._suppressed[key]


def code_name(code: int) -> str:
    try:
        return str(pb.ErrorCode.Name(code))
    except ValueError:
        return str(code)


def reason_name(reason: int) -> str:
    try:
        return str(pb.Reason.Name(reason))
    except ValueError:
        return str(reason)


def agent_name(info: bytes) -> str:
    """An agent's name from its encoded registration (for log lines on rare events only)."""
    try:
        return decode(pb.Register, info).name
    except DecodeError:
        return "?"
