"""edgerm_master.listen: a port in use is a ListenError that says what to do; peer addresses."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
import trio

from edgerm_master.listen import ListenError, listen, peer_address


async def test_a_port_in_use_is_a_listen_error_naming_the_flag() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def start() -> object:
            return await trio.open_tcp_listeners(port, host="127.0.0.1")

        with pytest.raises(ListenError, match=f"127.0.0.1:{port}.*--ws-port"):
            await listen("WebSocket", "--ws-port", "127.0.0.1", port, start)


def test_peer_address_of_tuples_and_endpoints() -> None:
    assert peer_address(("10.0.0.1", 5683)) == "10.0.0.1:5683"
    assert peer_address(("::1", 5683, 0, 0)) == "[::1]:5683"
    assert peer_address(SimpleNamespace(address="10.0.0.2", port=80)) == "10.0.0.2:80"
    assert peer_address(None) == ""
