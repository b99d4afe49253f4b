"""open_service_nursery: a lone error leaves as itself, several stay grouped."""

from __future__ import annotations

import pytest
import trio

from edgerm.service_nursery import open_service_nursery


async def test_error_of_the_block_leaves_unwrapped() -> None:
    with pytest.raises(KeyError):
        async with open_service_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            try:
                raise KeyError("mine")
            finally:
                nursery.cancel_scope.cancel()


async def test_startup_error_of_a_background_task_leaves_unwrapped() -> None:
    async def fails_to_start(task_status: trio.TaskStatus[None]) -> None:
        raise ValueError("could not start")

    with pytest.raises(ValueError, match="could not start"):
        async with open_service_nursery() as nursery:
            await nursery.start(fails_to_start)


async def test_concurrent_failures_stay_grouped() -> None:
    async def fail(exc: Exception) -> None:
        raise exc  # no checkpoint first, so the other task's cancellation cannot stop it

    with pytest.raises(BaseExceptionGroup) as info:
        async with open_service_nursery() as nursery:
            nursery.start_soon(fail, ValueError("a"))
            nursery.start_soon(fail, KeyError("b"))
    assert len(info.value.exceptions) == 2


async def test_cancellation_passes_through() -> None:
    with trio.move_on_after(0.01) as scope:
        async with open_service_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            await trio.sleep_forever()
    assert scope.cancelled_caught


async def test_error_of_the_block_leaves_unwrapped_while_an_outer_scope_cancels() -> None:
    # The block fails just as an enclosing scope is cancelled (a framework's connection
    # closed by the master while the user leaves `Framework.connect`): the background task's
    # Cancelled belongs to the outer scope, so this nursery's group holds it beside the error.
    # The error must still leave as itself, or callers that catch it (reconnect loops) miss it.
    outer = trio.CancelScope()
    with pytest.raises(KeyError):
        with outer:
            async with open_service_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever)
                await trio.sleep(0)   # the task is asleep in the nursery
                try:
                    outer.cancel()
                    await trio.sleep(0)  # cancelled: the background task gets Cancelled
                finally:
                    raise KeyError("mine")
