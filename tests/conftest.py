"""Fixtures shared by several test folders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgerm_agent.testing import private_docker_engine


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[str]:
    """One private Docker engine for the whole session (with the busybox test image); yields
    its DOCKER_HOST. Never skips: if it cannot start, every Docker test fails with its log."""
    with private_docker_engine() as host:
        yield host
