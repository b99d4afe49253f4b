"""What the master logs: peers that leave are normal and logged as nothing; a handler that
breaks is an error with its traceback."""

from __future__ import annotations

from pathlib import Path

import trio
from trio_websocket import ConnectionClosed

from edgerm.transport.websocket import only_disconnects


def test_disconnects_alone_are_not_failures() -> None:
    closed = ConnectionClosed(None)
    assert only_disconnects(closed)
    assert only_disconnects(ExceptionGroup("nursery", [closed, ConnectionClosed(None)]))
    assert only_disconnects(ExceptionGroup("outer", [ExceptionGroup("inner", [closed])]))
    assert not only_disconnects(ValueError("bug"))
    assert not only_disconnects(ExceptionGroup("nursery", [closed, ValueError("bug")]))


async def test_clients_leaving_leave_no_error_in_the_log(tmp_path: Path) -> None:
    from trio_websocket import open_websocket_url

    from edgerm_master.testing_io import MasterProcess

    master = MasterProcess(str(tmp_path / "m"), heartbeat_ms=200).start()
    try:
        host, port = master.ws
        for path in ("/agent", "/framework", "/agent", "/framework"):
            async with open_websocket_url(f"ws://{host}:{port}{path}"):
                await trio.sleep(0.05)
        await trio.sleep(0.3)
    finally:
        master.stop()
    log = open(master.log_path).read()
    assert "handler failed" not in log and "Traceback" not in log, log[-2000:]


async def test_the_real_master_logs_events_once_with_peer_addresses(tmp_path: Path) -> None:
    """End to end: what a registration, a refused registration and a refused state request
    leave on the real master's stderr."""
    from trio_websocket import open_websocket_url

    from edgerm.wire import encode, pb
    from edgerm_master.testing import ScriptedAgent
    from edgerm_master.testing_io import MasterProcess

    master = MasterProcess(str(tmp_path / "m"), heartbeat_ms=200).start()
    try:
        host, port = master.ws
        good, bad = ScriptedAgent("good-agent"), ScriptedAgent("bad", token="wrong")
        async with open_websocket_url(f"ws://{host}:{port}/agent") as ws:
            await ws.send_message(good.register_call())
            good.handle_reply(await ws.get_message())
        async with open_websocket_url(f"ws://{host}:{port}/agent") as ws:
            await ws.send_message(bad.register_call())
            await ws.get_message()
        async with open_websocket_url(f"ws://{host}:{port}/state") as ws:
            await ws.send_message(encode(pb.StateRequest(token="guess")))
            await ws.get_message()
        assert good.agent_id
        log = ""
        with trio.move_on_after(10):
            while "refused a state request" not in log:
                await trio.sleep(0.05)
                log = open(master.log_path).read()
    finally:
        master.stop()
    log = open(master.log_path).read()
    registered = [line for line in log.splitlines() if "registered over websocket" in line]
    assert len(registered) == 1, log
    assert f"INFO edgerm.master.agents: agent {good.agent_id} 'good-agent' registered over " \
           f"websocket from 127.0.0.1:" in registered[0]
    refused = [line for line in log.splitlines() if "refused a call from an agent" in line]
    assert len(refused) == 1 and "WARNING edgerm.master.agents" in refused[0], log
    assert "at 127.0.0.1:" in refused[0] and "UNAUTHENTICATED" in refused[0]
    state = [line for line in log.splitlines() if "refused a state request" in line]
    assert len(state) == 1 and "wrong operator token" in state[0], log
    assert "Traceback" not in log
