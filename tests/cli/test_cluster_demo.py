"""The local cluster's demo framework (edgerm_cli.cluster_demo): example builds and readings."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from edgerm_cli import cluster_demo
from edgerm_cli.cluster_demo import format_reading
from edgerm_cli.cluster_processes import REPO, Console


def test_readings_are_shown_as_numbers() -> None:
    import struct
    assert format_reading(struct.pack("<d", 21.456), "Cel") == "21.46 Cel"
    assert format_reading(b"21.5", "Cel") == "21.50 Cel"
    assert format_reading(b"21.12345", "") == "21.12"   # 8 bytes of text stay text
    assert format_reading(b"\x00\x01", "") == "0001"


async def test_every_example_wasm_task_is_built(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # The cluster's hint and the README run examples/wasm/build/hello.wasm: the cluster builds
    # every example, not only the demo's sampler (here in a copy, as the tests' own fixtures
    # build them all in the clone).
    root = REPO
    shutil.copytree(root / "examples" / "wasm", tmp_path / "examples" / "wasm",
                    ignore=shutil.ignore_patterns("build"))
    (tmp_path / "proto").mkdir()
    shutil.copy(root / "proto" / "edgerm_task.h", tmp_path / "proto")
    monkeypatch.setattr(cluster_demo, "WASM_EXAMPLES", tmp_path / "examples" / "wasm")
    out = io.StringIO()
    sampler = await cluster_demo.build_sampler(Console(out))
    build = tmp_path / "examples" / "wasm" / "build"
    assert sampler == (build / "sampler.wasm").read_bytes()
    assert {p.stem for p in build.glob("*.wasm")} == {
        p.stem for p in (tmp_path / "examples" / "wasm").glob("*.c")}
    assert "hello.wasm" in out.getvalue()
