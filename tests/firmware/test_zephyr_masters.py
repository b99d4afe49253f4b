"""Issue 12 on the Zephyr port: its provisioning holds a list of masters. Zephyr cannot be built
here, so port/zephyr/settings.c runs on the host under ASan/UBSan against stand-ins with
Zephyr v4.2's signatures (firmware/zephyr/tests/zephyr_api) over an in-memory settings store:
a list saved and loaded back, the old single-master record still read and replaced. The
list logic itself (port/common/masters.c, shared with the POSIX port) is a suite of the C unit
tests (`make test`, test_core.py), and the POSIX port follows the leader with it against real
masters (test_posix_follow_leader.py)."""

from __future__ import annotations

import re

from .conftest import make, must


def test_settings_record_holds_a_list_and_reads_the_old_single_master_record() -> None:
    out = must(make("zephyr-settings-test"))
    found = re.search(r"zephyr settings tests: (\d+) checks, (\d+) failures", out)
    assert found, out[-3000:]
    assert int(found.group(2)) == 0 and int(found.group(1)) >= 30, out[-3000:]
    assert "FAIL" not in out, out[-3000:]

