"""WAMR itself in the builds CI can run: the interpreter cross-compiled for Cortex-M4 with the
portable executor (port/wamr) on the bare-metal layer (port/baremetal), running hello.wasm,
sampler.wasm and trap.wasm through the EdgeRM ABI in QEMU (mps2-an386, semihosting); a
checkout without WAMR's sources is told how to get them instead of passing; the Zephyr port's
executor glue against Zephyr's kernel signatures."""

from __future__ import annotations

import re
import subprocess

from .conftest import BUILD, FIRMWARE, make, must


def test_wamr_runs_the_examples_on_cortex_m4_in_qemu() -> None:
    out = must(make("m4-wamr"))
    assert "WAMR on Cortex-M4: 0 failures" in out, out[-3000:]
    tasks = re.findall(r"task (\d): state (\d+) reason (\d+) exit (-?\d+), (\d+) publishes", out)
    # hello FINISHED with 2 publishes; sampler FINISHED with 3; sampler without its sensor
    # FAILED EXITED_NONZERO 1; trap FAILED TRAPPED.
    # hello with its memory trimmed FINISHED with 1.
    assert tasks == [("1", "5", "0", "0", "2"), ("2", "5", "0", "0", "3"),
                     ("3", "6", "1", "1", "0"), ("4", "6", "11", "0", "0"),
                     ("5", "5", "0", "0", "1")], out[-3000:]
    # What one running task takes from the pool: its 64 KiB page and a few KiB around it.
    pools = [int(p) for p in re.findall(r"slot ram: pool (\d+)", out)]
    assert pools and all(65536 < p < 96 * 1024 for p in pools), pools
    # Trimmed by WAMR (its memory is what the module uses: ~5 KiB of data and stack).
    trimmed = int(re.search(r"slot ram \(trimmed memory\): pool (\d+)", out).group(1))
    assert trimmed < 32 * 1024, trimmed
    header = subprocess.run(["arm-none-eabi-readelf", "-A", str(BUILD / "m4-wamr.elf")],
                            capture_output=True, text=True, check=True).stdout
    assert "Tag_CPU_arch: v7E-M" in header and "Tag_CPU_arch_profile: Microcontroller" in header


def test_a_checkout_without_wamr_is_told_how_to_get_it(tmp_path: object) -> None:
    proc = subprocess.run(
        ["make", "-C", str(FIRMWARE), "agent-wamr", "WAMR_DIR=/nonexistent/wamr",
         f"B={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "WAMR sources not found" in out and "west update" in out and "WAMR_DIR=" in out, out


def test_zephyr_port_matches_the_executor_interface_and_zephyr_signatures() -> None:
    """Zephyr is not available here: port/zephyr's wamr_os.c, net.c, settings.c, shell.c and
    agent_thread.c are compiled against stand-ins with Zephyr v4.2's signatures
    (tests/zephyr_api), the real core headers, port/common/masters.h, wamr_exec.h and WAMR's
    wasm_export.h. A change of the executor's interface, of the list of masters or of a Zephyr
    call's types that the Zephyr port misses fails."""
    out = must(make("zephyr-api-check"))
    assert "compile against Zephyr's signatures" in out, out[-2000:]
    for name in ("wamr_os.c", "net.c", "settings.c", "shell.c", "agent_thread.c"):
        assert f"port/zephyr/{name}" in out, out[-2000:]
