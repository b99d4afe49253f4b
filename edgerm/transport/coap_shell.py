"""What the Trio CoAP server and client share: sockets, sending, receiving and the one timer.

Design (why it looks like this):

* All protocol decisions are in :class:`edgerm.coap.CoapEndpoint`; a shell only moves
  datagrams and arms one timer — the aioquic ``transmit()`` pattern. :class:`UdpShell` is that
  part; :mod:`.coap_server` adds handler workers, :mod:`.coap_client` waiting callers.
* The receive loop never awaits anything a peer controls. It reads every datagram that is
  ready from a non-blocking socket (``trio.lowlevel.wait_readable`` then ``recvfrom`` until
  ``BlockingIOError``), feeds the core, and lets the subclass handle the events. Sends are
  non-blocking too; a full socket buffer drops the datagram (counted) and retransmission,
  which is the core's job, recovers CON traffic. Reading and writing the raw socket directly
  instead of through ``trio.socket`` saves a scheduler round-trip per datagram, which is most
  of the cost at 20k requests/s.
* The timer task sleeps in a cancel scope whose deadline is the core's ``get_timer()``;
  every ``_transmit()`` pulls that deadline earlier if needed, so there is one timer, never a
  sleep per message.

Error handling: socket send errors and ICMP errors surfacing as ``OSError`` on receive are
counted in ``shell_stats`` and never end the loop; any other receive error propagates.
"""

from __future__ import annotations

import errno
import ipaddress
import math
import random
import socket
from dataclasses import dataclass
from typing import Any, NoReturn

import trio

from edgerm.coap.config import CoapConfig
from edgerm.coap.endpoint import CoapEndpoint
from edgerm.coap.events import Addr

# Datagrams read per wake-up before yielding, so a flood cannot starve the handler tasks.
_RECV_BATCH = 64
# Receive buffer: bigger than any datagram we accept; oversized ones are refused by the core.
_RECV_SIZE = 65535
# Kernel socket buffers sized for bursts of thousands of small datagrams (capped by the
# kernel's rmem_max/wmem_max).
_SOCKET_BUFFER = 4 * 1024 * 1024
# errnos that a UDP recvfrom reports for an ICMP error from an earlier send; not fatal.
_TRANSIENT_RECV_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH,
                          errno.ECONNRESET, errno.EINTR}


def open_udp_socket(family: int, sockaddr: Any) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, _SOCKET_BUFFER)
            except OSError:
                pass  # a smaller buffer only costs burst tolerance
        if family == socket.AF_INET6 and sockaddr[0] in ("::", ""):
            # Dual stack: one socket serves IPv6 and IPv4-mapped peers.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


async def resolve(host: str, port: int) -> tuple[int, Any]:
    """(family, sockaddr) for a host; literals skip the resolver."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"cannot resolve {host!r}") from None
        family, _, _, _, sockaddr = infos[0]
        return family, sockaddr
    if ip.version == 6:
        return socket.AF_INET6, (ip.compressed, port, 0, 0)
    return socket.AF_INET, (ip.compressed, port)


@dataclass
class ShellStats:
    """Counters of the Trio shell (the core's are in ``endpoint.stats``)."""

    send_errors: int = 0
    recv_errors: int = 0
    # Requests answered 5.03 because their peer's quota or the queue was full.
    overloaded: int = 0
    # Waiting requests answered 5.03 to make room for a peer holding fewer.
    displaced: int = 0
    handler_errors: int = 0
    handler_timeouts: int = 0


class UdpShell:
    """What server and client share: the endpoint, sockets, transmit and the one timer."""

    def __init__(self, config: CoapConfig | None, rng: random.Random | None) -> None:
        self.config = config or CoapConfig()
        self.endpoint = CoapEndpoint(self.config, rng=rng)
        self.shell_stats = ShellStats()
        self._sockets: dict[int, socket.socket] = {}
        self._timer_scope = trio.CancelScope()
        self._timer_generation = -1
        self._clock: trio.abc.Clock | None = None

    def _now(self) -> float:
        # trio.current_time() costs ~1 µs through its KeyboardInterrupt-protection wrapper;
        # the clock object itself is the same source (and honours MockClock in tests).
        clock = self._clock
        if clock is None:
            clock = self._clock = trio.lowlevel.current_clock()
        return clock.current_time()

    def _socket_for(self, addr: Addr) -> socket.socket | None:
        return self._sockets.get(socket.AF_INET6 if len(addr) == 4 else socket.AF_INET)

    def _transmit(self) -> None:
        endpoint = self.endpoint
        datagrams = endpoint.datagrams_to_send(self._now())
        if datagrams:
            sockets = self._sockets
            single = next(iter(sockets.values())) if len(sockets) == 1 else None
            for data, addr in datagrams:
                sock = single or self._socket_for(addr)
                if sock is None:
                    self.shell_stats.send_errors += 1
                    continue
                try:
                    sock.sendto(data, addr)
                except OSError:
                    # Includes BlockingIOError: never wait for a peer; CON traffic is
                    # retransmitted by the core, NON is best-effort by definition.
                    self.shell_stats.send_errors += 1
        # Only something newly scheduled can make the next deadline earlier; skip the lookup
        # (and the cancel-scope update) when nothing was.
        if endpoint.timer_generation != self._timer_generation:
            self._timer_generation = endpoint.timer_generation
            deadline = endpoint.get_timer()
            if deadline is not None and deadline < self._timer_scope.deadline:
                self._timer_scope.deadline = deadline

    def _process_events(self) -> None:
        raise NotImplementedError

    async def _timer_loop(self) -> NoReturn:
        endpoint = self.endpoint
        while True:
            deadline = endpoint.get_timer()
            with trio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            endpoint.handle_timer(self._now())
            self._timer_generation = -1  # re-read the deadline after every expiry run
            self._process_events()
            self._transmit()

    async def _receive_loop(self, sock: socket.socket) -> NoReturn:
        endpoint = self.endpoint
        receive = endpoint.receive_datagram
        while True:
            await trio.lowlevel.wait_readable(sock)
            now = self._now()
            for _ in range(_RECV_BATCH):
                try:
                    data, addr = sock.recvfrom(_RECV_SIZE)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno not in _TRANSIENT_RECV_ERRNOS:
                        raise
                    self.shell_stats.recv_errors += 1
                    continue
                receive(data, addr, now)
            self._process_events()
            self._transmit()

    def _close_sockets(self) -> None:
        for sock in self._sockets.values():
            trio.lowlevel.notify_closing(sock)
            sock.close()
        self._sockets.clear()


__all__ = ["ShellStats", "UdpShell", "open_udp_socket", "resolve"]
