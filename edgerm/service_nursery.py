"""A nursery for async context managers whose background tasks only ever end by cancellation.

Since Trio 0.25 a nursery wraps every exception that crosses it in an ExceptionGroup. For a
context manager like `Framework.connect()` or `open_coap_client()` that is wrong for the caller:
the error of their own block, or the one startup error of the background task, should come out
as itself (`CallError`, `CoapTimeout`), as documented. The background tasks are cancelled when the
block ends and never fail on their own, so a group with one exception holds exactly that error;
a group of several (a real concurrent failure) is raised as it is.

When an enclosing scope is cancelled as the block fails (the master closes a framework's
connection just as the user leaves `Framework.connect`), the background tasks' `Cancelled`
belongs to that outer scope, and this nursery's group holds it beside the error. The error
still leaves as itself: the outer scope would strip those `Cancelled` anyway, and a reconnect
loop between here and there must see the error it catches, not a group.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

__all__ = ["open_service_nursery"]


@asynccontextmanager
async def open_service_nursery() -> AsyncIterator[trio.Nursery]:
    """`async with open_service_nursery() as nursery:` — like `trio.open_nursery()`, but a
    lone exception leaves unwrapped. The caller cancels `nursery.cancel_scope` when its block
    ends (as every such context manager must)."""
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        _, errors = group.split(trio.Cancelled)
        lone = group if errors is None else errors
        if len(lone.exceptions) == 1:
            raise lone.exceptions[0] from None
        raise
