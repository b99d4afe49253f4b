"""bench/fleet.py keeps working: a tiny fleet registers and heartbeats through the real master.

Only correctness is asserted (every agent registered, every reply 2.04 with a valid MAC, the
numbers present, processes and temporary files cleaned up), never a rate: the machine is shared.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "fleet.py"


def test_fleet_bench_tiny_fleet(tmp_path: Path) -> None:
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, str(BENCH), "--agents", "2000", "--generators", "2", "--sockets", "8",
         "--interval", "2", "--hb-seconds", "3", "--verify-every", "1", "--reg-timeout", "60"],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {r["metric"]: r for r in map(json.loads, out.stdout.splitlines())}
    assert rows["registered"]["value"] == 2000
    assert rows["registration_errors"]["value"] == 0
    assert rows["heartbeat_errors"]["value"] == 0
    # 2,000 agents every 2 s for 3 s: each agent heartbeats once or twice.
    assert rows["heartbeats_per_s"]["value"] * 3 >= 2000
    for metric in ("registrations_per_s", "heartbeat_rtt_p99", "master_rss_peak",
                   "master_cpu_per_heartbeat"):
        assert rows[metric]["value"] > 0, metric
    assert "registered 2,000/2,000" in out.stderr  # progress, at least at the phase's end
    assert "heartbeats answered" in out.stderr
    assert list(tmp_path.iterdir()) == [], "the benchmark left files behind"


def test_fleet_bench_encoders_match_the_wire_module() -> None:
    """The generator's hand-made payloads are what edgerm.wire and edgerm.oscore would send."""
    import importlib.util

    from edgerm.oscore import agent_context, master_context, seal_request, seal_response
    from edgerm.wire import sign, token_key

    spec = importlib.util.spec_from_file_location("fleet", BENCH)
    assert spec and spec.loader
    fleet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fleet)

    secret = bytes(range(16))
    for aid, seq in ((1, 1), (23, 24), (255, 256), (70_000, 2**32 - 1)):
        # The OSCORE-protected steady heartbeat: option and ciphertext as edgerm.oscore makes
        # them, after the 8-byte header and token.
        option, ct = seal_request(agent_context(secret, aid), seq, fleet.HEARTBEAT_PLAINTEXT)
        data = fleet.protected_heartbeat(7, b"\x01\x02\x03\x04", fleet.agent_keys(secret, aid),
                                         seq)
        assert data[8:] == bytes((0x90 | len(option),)) + option + b"\xff" + ct
        keys = fleet.agent_keys(secret, aid)
        _, reply = seal_response(master_context(secret, aid), keys[0], seq, b"\x44")
        assert fleet.open_reply(keys, seq, reply) == b"\x44"
    tpl = fleet.RegisterTemplate()
    nonce = b"\x00\x01\x02\x03\x04\x05\x06\x07"
    assert tpl.payload(nonce) == sign(tpl._call(nonce), token_key(fleet.TOKEN))
