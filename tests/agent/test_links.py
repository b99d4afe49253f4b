"""The agent's links over real sockets on loopback: what happens when the network is slower
than the agent's patience."""

from __future__ import annotations

import pytest
import trio

from edgerm.coap.codes import Code
from edgerm.transport.coap import CoapServer, Request, Response, Site
from edgerm.wire import CONTENT_FORMAT_CBOR, encode, pb
from edgerm_agent.links import CoapLink, Link, PushHandler, run_replaceable


async def test_first_observe_response_after_the_caller_gave_up_does_not_crash_the_link(
) -> None:
    """On a lossy link the call registering the Observe can time out before the master's
    first response arrives; the late response must end that observation, not the agent."""
    release = trio.Event()
    registrations = 0

    async def commands(request: Request) -> Response:
        nonlocal registrations
        if request.observation is None:  # the link deregistering (Observe 1)
            return Response(Code.CONTENT, b"bye", CONTENT_FORMAT_CBOR)
        registrations += 1
        if registrations == 1:
            await release.wait()  # answered late (a separate response)
        return Response(Code.CONTENT, f"first {registrations}".encode(), CONTENT_FORMAT_CBOR,
                        observe=True)

    site = Site()
    site.add("c", commands, methods=(Code.FETCH,), observable=True)
    heartbeat = encode(pb.AgentCall(agent_id=1, seq=2, heartbeat=pb.Heartbeat()))
    pushes: list[bytes] = []
    async with trio.open_nursery() as nursery:
        host, port = (await nursery.start(CoapServer(site).serve, "127.0.0.1", 0))[:2]
        link = CoapLink(host, port, ack_timeout_s=0.5)
        await nursery.start(link.run, lambda data, seq, protected: pushes.append(data))
        with trio.move_on_after(0.3) as gave_up:
            await link.observe(heartbeat, lambda data, seq, protected: pushes.append(data))
        assert gave_up.cancelled_caught and link.observation_alive
        release.set()
        with trio.fail_after(5):
            while link.observation_alive:
                await trio.sleep(0.01)
        # The link (and its nursery) still work: the next registration gets its answer.
        with trio.fail_after(5):
            first = await link.observe(heartbeat, lambda data, seq, protected: pushes.append(data))
        assert first.data == b"first 2" and not first.protected
        assert link.observation_alive and pushes == []
        nursery.cancel_scope.cancel()


class _ClosingLink(Link):
    """A link whose connection fails in the same step as its cancellation: the group a Trio
    nursery raises when the session's receive sees the close while the reader is cancelled."""

    async def run(self, on_push: PushHandler, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        except trio.Cancelled as cancelled:
            raise BaseExceptionGroup("closed while cancelled",
                                     [cancelled, OSError("connection closed")]) from None


async def test_a_link_failing_as_it_is_replaced_does_not_end_the_agent() -> None:
    scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_replaceable, _ClosingLink(), lambda *_: None, scope)
        scope.cancel()  # the move: the nursery must close without an error
    assert scope.cancel_called


async def test_a_link_failing_on_its_own_still_fails() -> None:
    class Broken(Link):
        async def run(self, on_push: PushHandler, *,
                      task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            raise OSError("no route")

    with pytest.raises(BaseExceptionGroup) as caught:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_replaceable, Broken(), lambda *_: None, trio.CancelScope())
    assert caught.group_contains(OSError, match="no route")
