"""scripts/docker_images.sh end to end: a Debian base made with mmdebstrap, the master and agent
images built on it, a master container and an agent container that register with each other.

Opt-in (EDGERM_TEST_DOCKER_IMAGES=1): from nothing it takes about 2.5 minutes (mmdebstrap
downloads and unpacks Debian's python3), 0.5-2 with the base cached in ~/.cache/edgerm: more
than the gateway system tests' whole budget on a fresh CI machine; docs/gateway.md
("Deploying") has the figures. Without the variable the test says how to run it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_images_build_and_the_containers_register() -> None:
    if os.environ.get("EDGERM_TEST_DOCKER_IMAGES") != "1":
        pytest.skip("opt-in, ~0.5-2.5 min: EDGERM_TEST_DOCKER_IMAGES=1 pytest "
                    "tests/scripts/test_docker_images.py")
    proc = subprocess.run(["bash", str(REPO / "scripts" / "docker_images.sh")],
                          capture_output=True, text=True, timeout=880, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "container-agent" in proc.stdout and "active" in proc.stdout, proc.stdout
