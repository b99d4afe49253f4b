"""Log output for EdgeRM's processes: one event a line, as text or JSON (`--log-format`).

The code logs through the stdlib `logging` module with its facts as `extra=` fields (`event`,
`agent_id`, `peer`, ...: docs/operations.md, "Logs"); this module only decides how a record
becomes one line on the process's stream:

    text: 2026-12-07T03:30:00.123Z WARNING edgerm.master.agents: refused a call ...
          event=agent_refused peer=127.0.0.1:40000 code=UNAUTHENTICATED
    json: {"ts": "2026-12-07T03:30:00.123Z", "level": "WARNING",
           "logger": "edgerm.master.agents", "msg": "refused a call ...",
           "event": "agent_refused", "peer": "127.0.0.1:40000", "code": "UNAUTHENTICATED"}

(each on one line: they are wrapped here only).
A line never breaks: newlines in a message or a traceback are escaped (text) or inside a JSON
string (json), so `grep`, `jq` and log shippers see one event per line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "TextFormatter", "JsonFormatter", "configure_logging",
           "extra_fields"]

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")

# The attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of a record, in the order they were given."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


def _plain(value: Any) -> Any:
    """A field value JSON can carry (bytes as hex, anything else unknown as its str)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


class TextFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER: message key=value ...` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"{_timestamp(record)} {record.levelname} {record.name}: "
                 f"{_one_line(record.getMessage())}"]
        for key, value in extra_fields(record).items():
            text = value if isinstance(value, str) else json.dumps(_plain(value))
            if text == "" or any(c in text for c in " \"=\n"):
                text = json.dumps(text)
            parts.append(f"{key}={_one_line(text)}")
        if record.exc_info:
            parts.append("exc=" + json.dumps(self.formatException(record.exc_info)))
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, then the record's `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _timestamp(record), "level": record.levelname,
                               "logger": record.name, "msg": record.getMessage()}
        for key, value in extra_fields(record).items():
            if key not in out:
                out[key] = _plain(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str = "info", fmt: str = "text", stream: IO[str] | None = None
                      ) -> None:
    """Send every `logging` record at `level` or above to `stream` (stderr) as `fmt` lines.
    Replaces the root logger's handlers (a process calls this once, at start)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
