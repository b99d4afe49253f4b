"""The Zephyr agent's portable C core: unit tests and the shared wire vectors under ASan and
UBSan on the host, the same tests cross-compiled for Cortex-M4 and run in QEMU, a bounded
libFuzzer run over every parser, and the size report's shape."""

from __future__ import annotations

import json
import re
import subprocess

from .conftest import FIRMWARE, ROOT, make, must

SUMMARY = re.compile(r"edgerm core unit tests: (\d+) checks, (\d+) failures")


def _summary(out: str) -> tuple[int, int]:
    """Checks and failures over both configurations (full schema, device); both must run."""
    runs = SUMMARY.findall(out)
    assert len(runs) == 2, out[-3000:]
    assert "device build" in out, out[-3000:]
    return sum(int(c) for c, _ in runs), sum(int(f) for _, f in runs)


def _vector_counts(out: str) -> tuple[int, int]:
    pos = re.search(r"wire vectors: (\d+) positive vectors checked", out)
    neg = re.search(r"wire vectors: (\d+) negative vectors refused", out)
    assert pos and neg, out[-3000:]
    return int(pos.group(1)), int(neg.group(1))


def _agent_vector_total() -> tuple[int, int]:
    """How many vectors of the agent-link types proto/vectors holds (what the C test must see)."""
    doc = json.loads((ROOT / "proto" / "vectors" / "vectors.json").read_text())
    src = (FIRMWARE / "core" / "src" / "wire.c").read_text()
    types = set(re.findall(r"^TYPE\((\w+),", src, re.M))
    return (sum(v["type"] in types for v in doc["vectors"]),
            sum(v["type"] in types for v in doc["negative"]))


def _oscore_vectors_checked(out: str) -> None:
    """The C tests ran proto/vectors/oscore.json whole: every must-refuse case, per receiver."""
    doc = json.loads((ROOT / "proto" / "vectors" / "oscore.json").read_text())
    refuse = doc["edgerm"]["must_refuse"]
    want = (sum(r["receiver"] == "master" for r in refuse),
            sum(r["receiver"] == "agent" for r in refuse))
    counts = re.findall(r"oscore vectors: (\d+) must-refuse cases for the master, (\d+) for", out)
    assert counts and all((int(m), int(a)) == want for m, a in counts), (counts, want)
    extra = re.findall(r"oscore vectors: (\d+) extra requests, (\d+) extra answers", out)
    want_extra = (len(doc["edgerm"].get("extra_requests", [])),
                  len(doc["edgerm"].get("extra_responses", [])))
    assert extra and all((int(q), int(a)) == want_extra for q, a in extra), (extra, want_extra)
    assert "oscore vectors: RFC 8613 C.1-C.8 and the EdgeRM link checked" in out


def test_unit_and_vectors_under_asan_ubsan() -> None:
    out = must(make("test"))
    checks, failures = _summary(out)
    assert failures == 0 and checks > 1500
    assert _vector_counts(out) == _agent_vector_total()
    _oscore_vectors_checked(out)


def test_unit_and_vectors_on_cortex_m4_in_qemu() -> None:
    out = must(make("test-m4"))
    checks, failures = _summary(out)
    assert failures == 0 and checks > 1500
    assert _vector_counts(out) == _agent_vector_total()
    _oscore_vectors_checked(out)
    # The test ELF really is code for an ARMv7E-M (Cortex-M4) core.
    header = subprocess.run(["arm-none-eabi-readelf", "-A", str(FIRMWARE / "build-host" /
                                                                 "unit-m4.elf")],
                            capture_output=True, text=True, check=True).stdout
    assert "Tag_CPU_arch: v7E-M" in header and "Tag_CPU_arch_profile: Microcontroller" in header


def test_fuzz_parsers_bounded() -> None:
    out = must(make("fuzz", env={"FUZZ_SECONDS": "8", "FUZZ_RUNS": "300000"}))
    assert re.search(r"Done \d+ runs in \d+ second", out), out[-3000:]


def test_size_report_is_json_lines() -> None:
    proc = subprocess.run([str(ROOT / "bench" / "firmware_size")], capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    metrics = {r["metric"] for r in rows}
    assert {"firmware_core_flash", "firmware_core_static_ram", "firmware_aes_flash"} <= metrics
    for r in rows:
        assert set(r) >= {"metric", "value", "unit", "goal"} and r["value"] >= 0
    by_name = {r["metric"]: r["value"] for r in rows}
    assert by_name["firmware_core_flash"] > 4000 and by_name["firmware_agent_state"] > 1000
    # The whole agent with WAMR's interpreter, and a task slot measured in QEMU.
    assert by_name["firmware_wamr_flash"] > 30000
    assert by_name["firmware_agent_wamr_flash"] > by_name["firmware_core_flash"] + \
        by_name["firmware_wamr_flash"]
    assert by_name["firmware_wamr_pool_per_task"] > 65536
    assert by_name["firmware_ram_per_task_slot"] > by_name["firmware_wamr_pool_per_task"]


def test_core_defaults_equal_kconfig_defaults() -> None:
    """core/include/edgerm/config.h (host builds, size report) and Kconfig (the device) hold
    the same options with the same defaults, and every Kconfig int has a range."""
    kconfig = (FIRMWARE / "Kconfig").read_text()
    header = (FIRMWARE / "core" / "include" / "edgerm" / "config.h").read_text()
    blocks = re.findall(r"^config (EDGERM_\w+)\n(.*?)(?=^config |^endmenu|^menu |^module)",
                        kconfig, re.M | re.S)
    kdefaults = {}
    for name, body in blocks:
        kind = re.search(r"^\s+(int|bool|string)\b", body, re.M)
        default = re.search(r"^\s+default (\S+)", body, re.M)
        if kind and kind.group(1) == "int":
            assert re.search(r"^\s+range \d+ \d+", body, re.M), f"{name} has no range"
        if default:
            kdefaults[name] = default.group(1)
    core = dict(re.findall(r"#define CONFIG_(EDGERM_\w+) (\S+)$", header, re.M))
    assert core, "no defaults found in config.h"
    for name, value in core.items():
        if name == "EDGERM_RX_BUF_SIZE":  # an expression there, its value in Kconfig
            assert kdefaults[name] == "576"
            continue
        if name == "EDGERM_WIRE_FULL_SCHEMA":  # a bool: 0 there, off in Kconfig
            assert value == "0" and name not in kdefaults
            continue
        assert kdefaults.get(name) == value, (name, value, kdefaults.get(name))
