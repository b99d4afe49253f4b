"""The CLI and local-cluster tests share the framework tests' fixtures
(tests/framework/conftest.py): `fake_master`, the scripted master, and `real_cluster`, a real
master and Linux agent; this re-exports them and the constants the tests name."""

from __future__ import annotations

from ..framework.conftest import (  # noqa: F401 - fixtures are found by name
    AGENT_TOKEN,
    FRAMEWORK_TOKEN,
    OPERATOR_TOKEN,
    WASM_DIR,
    fake_master,
    real_cluster,
    wait_for_agent,
    wasm_modules,
)
