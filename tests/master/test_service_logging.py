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
