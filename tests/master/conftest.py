"""Fixtures for the master's tests: a sans-IO `Cluster` on a real SQLite store in tmp_path;
and, for the HTTP API and dashboard tests, the framework tests' `real_cluster` (a real master
and two Linux agents, tests/framework/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from edgerm_master.config import MasterConfig
from edgerm_master.store import Store
from edgerm_master.testing import Cluster

from ..framework.conftest import real_cluster, wasm_modules  # noqa: F401 - found by name


def make_config(**kw: Any) -> MasterConfig:
    base: dict[str, Any] = dict(agent_tokens=["agent-token"], framework_tokens=["framework-token"],
                                operator_tokens=["operator-token"], heartbeat_ms=10_000,
                                unreachable_after_missed=3, lost_after_s=60.0,
                                offer_timeout_s=30.0, status_retry_s=10.0,
                                failover_default_s=60.0, module_grace_s=100.0)
    base.update(kw)
    return MasterConfig(**base)


@pytest.fixture
def new_cluster(tmp_path: Any) -> Iterator[Callable[..., Cluster]]:
    """new_cluster(**config) -> a Cluster persisting to tmp_path; call again to "restart" the
    master on the same store (the old core is simply dropped, as after kill -9)."""
    stores: list[Store] = []
    made: dict[str, Any] = {}

    def make(**kw: Any) -> Cluster:
        if stores:
            stores[-1].close()
        # NORMAL survives a process crash, which is what these tests simulate; FULL (the
        # default) also survives power loss and is what the end-to-end crash test runs.
        store = Store(str(tmp_path / "data"), "NORMAL")
        stores.append(store)
        if kw or "config" not in made:
            made["config"] = make_config(**kw)
        now = made.get("now", 1_000_000.0)
        c = Cluster(config=made["config"], store=store, now=now)
        made["cluster"] = c
        return c

    yield make
    if stores:
        stores[-1].close()


@pytest.fixture
def cluster(new_cluster: Callable[..., Cluster]) -> Cluster:
    return new_cluster()
