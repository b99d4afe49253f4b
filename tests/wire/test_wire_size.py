"""The byte budgets of bench/wire_size.py hold (sizes are deterministic, so this is no timing)."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "wire_size.py"


def test_wire_size_budgets(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("wire_size", BENCH)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main() == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    budgets = {r["metric"]: r for r in rows if r["goal"]}
    assert set(budgets) >= {"registration_payload", "heartbeat_datagram", "status_update_datagram"}
    assert all(r["ok"] for r in budgets.values())
