"""Binding the master's servers and naming peers: `ListenError` (a port the master cannot serve
on, with what to do), `listen()`, `peer_address()` and `functools_partial()` for the service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

__all__ = ["ListenError", "listen", "peer_address", "functools_partial"]


class ListenError(Exception):
    """A port the master must serve on cannot be bound (in use, not allowed, no such address).
    The message says which and what to do."""


async def listen(what: str, flag: str, host: str, port: int,
                 start: Callable[[], Awaitable[Any]]) -> Any:
    """`await start()` (a server's `nursery.start`), its bind failure as a `ListenError`."""
    try:
        return await start()
    except (OSError, ExceptionGroup) as e:
        # serve_websocket binds inside a nursery of its own: its OSError comes in a group.
        error = e
        while isinstance(error, ExceptionGroup):
            matched, rest = error.split(OSError)
            if matched is None or rest is not None or len(matched.exceptions) != 1:
                raise
            error = matched.exceptions[0]
        assert isinstance(error, OSError)
        raise ListenError(
            f"cannot serve {what} on {host}:{port}: {error.strerror or error}; stop what uses "
            f"that port or choose another with {flag} (0 picks a free one)") from None


def peer_address(remote: Any) -> str:
    """"host:port" of a CoAP address tuple or a trio-websocket Endpoint, for log lines."""
    if isinstance(remote, tuple) and len(remote) >= 2:
        host, port = str(remote[0]), remote[1]
    elif remote is not None and hasattr(remote, "address"):
        host, port = str(remote.address), remote.port
    else:
        return ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def functools_partial(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
    """`functools.partial` that keeps `task_status` passable by `nursery.start`."""

    async def run(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> Any:
        return await fn(*args, task_status=task_status, **kwargs)

    return run
