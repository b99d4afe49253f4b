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


# Machine-wide state some tests share, so that under pytest-xdist (`-n N --dist loadgroup`,
# scripts/test.sh) they run on one worker, one after the other: the firmware build directories
# (make; the gateway's system tests build the POSIX agent too), the network namespaces, the
# private Docker engine. Every other test file is a group of its own (its module fixtures are
# set up once).
_SHARED_GROUPS = {"firmware": "build+netns", "system": "build+netns", "scripts": "build+netns"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.parent.name
        if folder in _SHARED_GROUPS:
            group = _SHARED_GROUPS[folder]
        elif "docker_engine" in getattr(item, "fixturenames", ()):
            group = "docker"
        else:
            group = str(item.path)
        item.add_marker(pytest.mark.xdist_group(group))
