"""EdgeRM shared library: the wire codec (`edgerm.wire`), CoAP and WebSocket transports
(`edgerm.coap`, `edgerm.transport`), resources and the framework SDK (`edgerm.framework`, on
`edgerm.framework_protocol` and `edgerm.tasks`). The `edgerm` CLI and the local cluster are
applications on top of it, in `edgerm_cli`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgerm.framework import (
        Constraints,
        Framework,
        FrameworkError,
        Module,
        docker_task,
        micropython_task,
        task_info,
        wasm_task,
    )

__all__ = ["Framework", "FrameworkError", "Constraints", "Module", "wasm_task", "docker_task",
           "micropython_task", "task_info"]


def __getattr__(name: str) -> Any:
    # The SDK (Trio, trio-websocket) is loaded on first use, so `import edgerm.wire` in the
    # master and the agents stays as light as the codec itself.
    if name in __all__:
        from edgerm import framework
        return getattr(framework, name)
    raise AttributeError(f"module 'edgerm' has no attribute {name!r}")
