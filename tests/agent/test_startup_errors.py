"""Start-up errors: a missing or garbled config or checkpoint stops the agent with exit code 2
and one line saying what is wrong and what to do; nothing is overwritten."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgerm_agent.__main__ import main

CONFIG = """
name = "a"
work_dir = "{work}"
[master]
url = "ws://127.0.0.1:9/agent"
[executors]
enabled = ["wasm"]
"""


def write_config(tmp_path: Path, text: str | None = None) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG.format(work=tmp_path / "work") if text is None else text)
    return path


def run_main(capsys: pytest.CaptureFixture[str], config: Path) -> tuple[int, str]:
    code = main([str(config)])
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err  # one line, no traceback
    return code, err


def test_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(capsys, tmp_path / "nope.toml")
    assert code == 2
    assert err == (f"edgerm-agent: config {tmp_path / 'nope.toml'} not found: write one "
                   "(docs/agent.md lists the keys; master.url is required) or give the right "
                   "path")


@pytest.mark.parametrize("text, expect", [
    ("name = \n", "not valid TOML"),
    ("[master\nurl='x'", "not valid TOML"),
    ("name = 'a'\n", "master.url: required"),
    ("[master]\nurl = 'http://x'\n", "master.url: scheme 'http'"),
    (b"\xff\xfe garbage".decode("latin-1"), "not valid TOML"),
])
def test_garbled_config(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                        expect: str) -> None:
    code, err = run_main(capsys, write_config(tmp_path, text))
    assert code == 2
    assert err.startswith(f"edgerm-agent: config {tmp_path / 'agent.toml'}: ") and expect in err


@pytest.mark.parametrize("text, expect", [
    # A typo is named as such, not reported as the required key it was meant to be.
    ("master_url = 'ws://h:1/agent'\n", "unknown key 'master_url' (the top level takes "),
    ("[master]\nuri = 'ws://h:1/agent'\n", "unknown key 'master.uri' ([master] takes "
                                             "ca_file, max_payload, token, url, urls)"),
    ("[master]\nurl = 'ws://h:1/agent'\n[timing]\nheartbeat = 2\n",
     "unknown key 'timing.heartbeat'"),
    ("[master]\nurl = 'ws://h:1/agent'\n[[devices]]\nname = 't'\nconstant = 1\nunits = 'C'\n",
     "unknown key 'devices[0].units'"),
])
def test_unknown_key_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                              expect: str) -> None:
    code, err = run_main(capsys, write_config(tmp_path, text))
    assert code == 2
    assert err.startswith(f"edgerm-agent: config {tmp_path / 'agent.toml'}: {expect}")
    assert "master.url: required" not in err


def test_the_real_process_names_an_unknown_key(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[master]\nurl = 'ws://h:1/agent'\ntokn = 'x'\n")
    out = subprocess.run([sys.executable, "-m", "edgerm_agent", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.startswith(f"edgerm-agent: config {config}: unknown key 'master.tokn' ")
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


GOOD_TASK = {"task": 1, "spec": "a0", "state": 3}


@pytest.mark.parametrize("content, why", [
    (b"{\"version\": 1, \"agent_id\": 4", "not valid JSON"),
    (b"\x00\x01\x02", "not valid JSON"),
    (b"", "not valid JSON"),
    (b"[1, 2]", "not a version 1 agent checkpoint"),
    (json.dumps({"version": 7}).encode(), "not a version 1 agent checkpoint"),
    (json.dumps({"version": 1, "secret": "zz"}).encode(), "ValueError"),
    (json.dumps({"version": 1, "tasks": [{"task": "one"}]}).encode(), "ValueError"),
    (json.dumps({"version": 1, "tasks": [{"state": 3}]}).encode(), "KeyError"),
    (json.dumps({"version": 1, "tasks": [{**GOOD_TASK, "spec": "ff00ff"}]}).encode(),
     "DecodeError"),
    (json.dumps({"version": 1, "updates": [{"status": 5}]}).encode(), "Error"),
])
def test_corrupt_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes,
                            why: str) -> None:
    config = write_config(tmp_path)
    (tmp_path / "work").mkdir()
    ckpt = tmp_path / "work" / "agent.json"
    ckpt.write_bytes(content)
    code, err = run_main(capsys, config)
    assert code == 2
    assert err.startswith(f"edgerm-agent: checkpoint {ckpt} is corrupt (")
    assert why in err
    assert err.endswith("move it away to register as a new agent (the master then ends the old "
                        "agent's tasks as lost)")
    assert ckpt.read_bytes() == content  # left for the operator to look at


def test_unreadable_checkpoint_and_unwritable_work_dir(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "agent.json").mkdir()  # a directory where the file should be
    code, err = run_main(capsys, write_config(tmp_path))
    assert code == 2 and "cannot read checkpoint" in err and "move it away" in err
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = write_config(tmp_path, CONFIG.format(work=blocker / "work"))
    code, err = run_main(capsys, config)
    assert code == 2 and err.startswith(f"edgerm-agent: work_dir {blocker / 'work'}: ")
    assert "writable directory" in err


def test_the_real_process_exits_2_with_the_message(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "agent.json").write_text("{torn")
    out = subprocess.run([sys.executable, "-m", "edgerm_agent", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.startswith("edgerm-agent: checkpoint ") and "Traceback" not in out.stderr
    assert "move it away" in out.stderr


def test_damaged_checkpoint_slots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgerm_agent.checkpoint import SLOT_NAMES

    (tmp_path / "work").mkdir()
    for name in SLOT_NAMES:
        (tmp_path / "work" / name).write_bytes(b"garbage that is not a slot")
    code, err = run_main(capsys, write_config(tmp_path))
    assert code == 2
    assert err.startswith(f"edgerm-agent: checkpoint {tmp_path / 'work' / 'agent.ckpt.*'} is "
                          "corrupt (agent.ckpt.0: not an agent checkpoint slot; agent.ckpt.1: ")
    assert "move it away to register as a new agent" in err


def test_log_format_json_gives_one_json_object_a_line(tmp_path: Path) -> None:
    """`--log-format json`: what the agent logs while it cannot reach its master (nothing
    listens on port 9) is JSON lines, one event each."""
    import select
    import signal
    import time

    from edgerm_master.testing_io import end_process

    config = write_config(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "edgerm_agent", "--log-format", "json",
                             str(config)], stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        # Until it has said it cannot reach the master (a loaded machine may take seconds to
        # import it; an interrupt during the imports would print Python's own traceback).
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while not any("ws://127.0.0.1:9/agent" in line for line in lines):
            assert time.monotonic() < deadline, f"no word of the unreachable master: {lines}"
            ready, _, _ = select.select([proc.stderr], [], [], 0.5)
            if ready:
                line = proc.stderr.readline()
                assert line, f"the agent exited ({proc.poll()}): {lines}"
                lines.append(line.rstrip("\n"))
    finally:
        end_process(proc, signal.SIGINT)
    assert proc.stderr is not None
    lines += proc.stderr.read().splitlines()
    proc.stderr.close()
    for line in lines:
        event = json.loads(line)
        assert {"ts", "level", "logger", "msg"} <= set(event)
    assert any("ws://127.0.0.1:9/agent" in json.loads(line)["msg"] for line in lines)


def test_gateway_port_in_use_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        config = write_config(tmp_path, f"""
work_dir = "{tmp_path / 'work'}"
[master]
url = "coap://127.0.0.1:9"
[executors]
enabled = ["wasm"]
[gateway]
host = "127.0.0.1"
port = {port}
""")
        code, err = run_main(capsys, config)
    assert code == 2
    assert err.startswith(f"edgerm-agent: cannot serve the devices on 127.0.0.1:{port}")
    assert "[gateway] host/port" in err
