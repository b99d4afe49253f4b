"""An agent the master refuses (wrong or missing token), as the operator sees it: the real
`edgerm-agent` process logs an ERROR naming the refusal and the master's reason, keeps saying
it at each retry, and backs off instead of retrying fast; over WebSocket and CoAP alike."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgerm_master.testing_io import MasterProcess

REASON = ("UNAUTHENTICATED: first registration not signed with an agent token of this master: "
          "give the agent the token in the master's agent_tokens")


def refusal_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines()
            if "refused to register this agent" in line]


@pytest.mark.parametrize("transport", ["websocket", "coap"])
@pytest.mark.parametrize("token", ["not-the-token", ""])
def test_a_refused_agent_says_why_and_backs_off(tmp_path: Path, transport: str,
                                                token: str) -> None:
    with MasterProcess(str(tmp_path / "m")) as master:
        url = (f"ws://{master.ws[0]}:{master.ws[1]}/agent" if transport == "websocket"
               else f"coap://{master.coap[0]}:{master.coap[1]}")
        config = tmp_path / "agent.toml"
        config.write_text(f'name = "a"\nwork_dir = "{tmp_path / "work"}"\n[master]\n'
                          f'url = "{url}"\ntoken = "{token}"\n[executors]\nenabled = ["wasm"]\n'
                          "[timing]\nbackoff_initial_s = 1\n")
        log = tmp_path / "agent.log"
        with open(log, "wb") as err:
            agent = subprocess.Popen([sys.executable, "-m", "edgerm_agent", str(config)],
                                     stderr=err)
        try:
            started = time.monotonic()
            deadline = started + 30
            while len(refusal_lines(log)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            lines = refusal_lines(log)
            assert len(lines) >= 2, log.read_text()  # says it again at the retry
            # Back-off: the first retry comes ~1 s after the first refusal (±10 %), the next
            # ~2 s later; a fast loop would have piled up many more refusals by now.
            time.sleep(1.0)
            assert len(refusal_lines(log)) <= 3, log.read_text()
        finally:
            agent.send_signal(signal.SIGINT)
            agent.wait(timeout=20)
        first = lines[0]
        assert " ERROR edgerm_agent: the master at " + url in first
        assert REASON in first and "trying again in 1 s" in first
        assert ("this agent has no token: set master.token in its config" in first) == (not token)
        assert "Traceback" not in log.read_text()
        master_log = Path(master.log_path).read_text()
        assert "refused a call from an agent at 127.0.0.1:" in master_log
