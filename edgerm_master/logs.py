"""The master core's log lines: one logger per subject and the rate limit on refusals.

The core logs what happens (registrations, refusals, subscriptions, task and agent state
changes) through the stdlib `logging` module, which does no I/O of its own: the handler the
process configures does (docs/master.md, "Logs"). Every line carries its facts as `extra=` fields
(`event`, `agent_id`, `framework_id`, `task_id`, `peer`, ...) for structured output. The steady
heartbeat path logs nothing; refusals are rate-limited per subject (`RefusalLog`), never dropped
without a count, and counted by reason for the metrics (`RefusalLog.counts`). A framework that
declines offers by the hundred is logged once per storm (`DeclineWatch`). The shell and the
store log their failures through `log_store_error` (one line each, the same
fields wherever they are called from). How a record becomes a line: `edgerm.logformat`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from edgerm.wire import DecodeError, decode, pb

__all__ = ["log_agents", "log_frameworks", "log_tasks", "log_operator", "log_store",
           "log_coap", "RefusalLog", "DeclineWatch", "log_store_error",
           "code_name", "reason_name", "agent_name"]

# Loggers by subject, so an operator can turn one up or down.
log_agents = logging.getLogger("edgerm.master.agents")
log_frameworks = logging.getLogger("edgerm.master.frameworks")
log_tasks = logging.getLogger("edgerm.master.tasks")
log_operator = logging.getLogger("edgerm.master.operator")
log_store = logging.getLogger("edgerm.master.store")
log_coap = logging.getLogger("edgerm.master.coap")

# Refusals logged per subject (agents, frameworks, operator) within one window; more are counted
# and summed up in one line when the window ends. A fleet with a wrong token or a flood of forged
# calls cannot fill the disk, and the operator still sees how many there were and the last reason.
REFUSALS_PER_WINDOW = 10
REFUSAL_WINDOW_S = 10.0


class RefusalLog:
    """Rate-limited refusal lines (sans-IO: time is the `now` of the call being refused), and
    every refusal counted by (subject, reason) in `counts` (the subject is the logger's last
    name: agents, frameworks, operator, coap)."""

    __slots__ = ("_window_start", "_logged", "_suppressed", "_last", "_noun", "counts")

    def __init__(self) -> None:
        self._window_start: dict[str, float] = {}
        self._logged: dict[str, int] = {}
        self._suppressed: dict[str, int] = {}
        self._last: dict[str, str] = {}
        self._noun: dict[str, str] = {}
        self.counts: dict[tuple[str, str], int] = {}

    def log(self, logger: logging.Logger, level: int, now: float, text: str,
            extra: dict[str, Any], noun: str = "refusals") -> None:
        """Log `text` unless this logger's window is full (then count it). `noun` names what
        the summary line counts ("refusals", "bad datagrams")."""
        key = logger.name
        count_key = (key.rsplit(".", 1)[-1], str(extra.get("code", "?")))
        self.counts[count_key] = self.counts.get(count_key, 0) + 1
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
            self._noun[key] = noun

    def flush(self, now: float, only: str | None = None) -> None:
        """Sum up the refusals not logged in windows that have ended (or `only`'s)."""
        for key in [only] if only is not None else list(self._suppressed):
            n = self._suppressed.get(key, 0)
            if not n:
                continue
            if only is None and now - self._window_start.get(key, -math.inf) < REFUSAL_WINDOW_S:
                continue
            logging.getLogger(key).warning(
                "%d more %s in %g s not logged one by one; the last: %s", n,
                self._noun.get(key, "refusals"), REFUSAL_WINDOW_S, self._last[key],
                extra={"event": "refusals_suppressed", "count": n})
            del self._suppressed[key]


# A framework declining this many offers within one window is in a decline storm: it keeps
# being offered what it does not want (it should suppress, or decline with a longer
# refuse_seconds). Logged once when the storm starts and once when a window passes without one.
DECLINE_STORM_OFFERS = 100
DECLINE_STORM_WINDOW_S = 60.0


class DeclineWatch:
    """Declined offers per framework, and the storm lines (sans-IO: `now` is the call's)."""

    __slots__ = ("_window_start", "_declined", "_storm")

    def __init__(self) -> None:
        self._window_start: dict[str, float] = {}
        self._declined: dict[str, int] = {}
        self._storm: dict[str, int] = {}  # framework -> offers declined since its storm began

    def declined(self, framework_id: str, name: str, n: int, now: float, peer: str) -> None:
        start = self._window_start.get(framework_id)
        if start is None or now - start >= DECLINE_STORM_WINDOW_S:
            self._end_window(framework_id, now)
            self._window_start[framework_id] = now
            self._declined[framework_id] = 0
        count = self._declined[framework_id] + n
        self._declined[framework_id] = count
        if framework_id in self._storm:
            self._storm[framework_id] += n
        elif count >= DECLINE_STORM_OFFERS:
            self._storm[framework_id] = count
            log_frameworks.warning(
                "framework %s %r is in an offer decline storm: %d offers declined in %g s; "
                "it should suppress offers it does not need or decline with a longer "
                "refuse_seconds", framework_id, name, count,
                now - self._window_start[framework_id],
                extra={"event": "offer_decline_storm", "framework_id": framework_id,
                       "framework_name": name, "declined": count, "peer": peer})

    def flush(self, now: float) -> None:
        """End the windows that have passed (the shell's timer calls this)."""
        for fid in [f for f, t in self._window_start.items()
                    if now - t >= DECLINE_STORM_WINDOW_S]:
            self._end_window(fid, now)
            if fid in self._storm:  # still on: the next window decides whether it ends
                self._window_start[fid] = now
                self._declined[fid] = 0
            else:
                del self._window_start[fid]
                self._declined.pop(fid, None)

    def forget(self, framework_id: str) -> None:
        self._window_start.pop(framework_id, None)
        self._declined.pop(framework_id, None)
        self._storm.pop(framework_id, None)

    def _end_window(self, fid: str, now: float) -> None:
        """A window ended: a storm whose last window had fewer declines is over."""
        if fid in self._storm and self._declined.get(fid, 0) < DECLINE_STORM_OFFERS:
            total = self._storm.pop(fid)
            log_frameworks.info(
                "framework %s: offer decline storm over (%d offers declined in it)", fid, total,
                extra={"event": "offer_decline_storm_over", "framework_id": fid,
                       "declined": total})


def log_store_error(what: str, error: BaseException, **fields: Any) -> None:
    """One ERROR line for a store operation that failed (a commit, a recovery read, a lost
    connection to the replicated store). `what` says what was being done; `fields` add facts
    (`backend`, `endpoint`, ...). The caller decides what happens next (stop, retry, step down)
    and logs that only if it is a new event."""
    log_store.error("store error while %s: %s: %s", what, type(error).__name__, error,
                    exc_info=error if not isinstance(error, OSError) else None,
                    extra={"event": "store_error", "operation": what,
                           "error": f"{type(error).__name__}: {error}", **fields})


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
