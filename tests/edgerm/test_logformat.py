"""Log lines as text or JSON (edgerm.logformat): one event a line, the `extra=` fields kept."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from edgerm.logformat import JsonFormatter, TextFormatter, configure_logging, extra_fields


def record(msg: str = "agent %d registered", *args: object, exc: bool = False,
           **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            import sys
            exc_info = sys.exc_info()
    r = logging.LogRecord("edgerm.master.agents", logging.WARNING, __file__, 1, msg,
                          args or ((7,) if "%" in msg else None), exc_info)
    r.created = 1_780_000_000.25
    r.msecs = 250
    for k, v in extra.items():
        setattr(r, k, v)
    return r


def test_json_has_the_standard_keys_then_the_extra_fields() -> None:
    line = JsonFormatter().format(record(event="agent_registered", agent_id=7,
                                         peer="192.0.2.1:5683", nonce=b"\x01\x02"))
    assert "\n" not in line
    obj = json.loads(line)
    assert obj == {"ts": "2026-05-28T20:26:40.250Z", "level": "WARNING",
                   "logger": "edgerm.master.agents", "msg": "agent 7 registered",
                   "event": "agent_registered", "agent_id": 7, "peer": "192.0.2.1:5683",
                   "nonce": "0102"}


def test_a_traceback_stays_on_the_line() -> None:
    line = JsonFormatter().format(record(exc=True, event="store_error"))
    assert "\n" not in line
    assert "ValueError: boom\nsecond line" in json.loads(line)["exc"]
    text = TextFormatter().format(record("two\nlines", exc=True))
    assert "\n" not in text and "two\\nlines" in text and 'exc="Traceback' in text


def test_text_is_time_level_logger_message_then_key_values() -> None:
    line = TextFormatter().format(record(event="agent_refused", peer="[::1]:9",
                                         code="UNAUTHENTICATED", reason="two words", count=3))
    assert line == ("2026-05-28T20:26:40.250Z WARNING edgerm.master.agents: agent 7 registered "
                    'event=agent_refused peer=[::1]:9 code=UNAUTHENTICATED reason="two words" '
                    "count=3")


def test_extra_fields_are_only_what_the_caller_added() -> None:
    assert extra_fields(record()) == {}
    assert extra_fields(record(event="x")) == {"event": "x"}


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_configure_logging_sets_the_level_and_format(restore_root: None) -> None:
    out = io.StringIO()
    configure_logging("warning", "json", out)
    log = logging.getLogger("edgerm.test")
    log.info("not shown", extra={"event": "quiet"})
    log.warning("shown", extra={"event": "loud"})
    [line] = out.getvalue().splitlines()
    assert json.loads(line)["event"] == "loud"
    with pytest.raises(ValueError, match="log format must be one of text, json"):
        configure_logging("info", "xml", out)
