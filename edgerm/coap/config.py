"""All tunables of the CoAP core and its Trio shell, in one frozen dataclass.

RFC 7252 §4.8 transmission parameters (defaults below are the RFC's)::

    +-------------------+---------------+
    | name              | default value |
    +-------------------+---------------+
    | ACK_TIMEOUT       | 2 seconds     |
    | ACK_RANDOM_FACTOR | 1.5           |
    | MAX_RETRANSMIT    | 4             |
    | NSTART            | 1             |
    | DEFAULT_LEISURE   | 5 seconds     |
    | PROBING_RATE      | 1 byte/second |
    +-------------------+---------------+

and the derived times of §4.8.2 (properties below): MAX_TRANSMIT_SPAN 45 s, MAX_TRANSMIT_WAIT
93 s, MAX_LATENCY 100 s, PROCESSING_DELAY = ACK_TIMEOUT, MAX_RTT 202 s, EXCHANGE_LIFETIME
247 s, NON_LIFETIME 145 s. On a constrained or lossy link change ``ack_timeout``,
``max_retransmit`` and ``block_size`` together; the derived lifetimes follow.

Every limit that bounds memory held on behalf of peers is here too, so one object tells an
operator how much a flood of peers can cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgerm.coap.options import size_to_szx


@dataclass(frozen=True)
class CoapConfig:
    # --- RFC 7252 §4.8 transmission parameters -------------------------------------------
    ack_timeout: float = 2.0
    ack_random_factor: float = 1.5
    max_retransmit: int = 4
    max_latency: float = 100.0

    # --- message layer ----------------------------------------------------------------------
    # A handler slower than this gets an Empty ACK first and its answer as a separate CON
    # response (RFC 7252 §5.2.2); below ACK_TIMEOUT so the client does not retransmit meanwhile.
    empty_ack_delay: float = 1.0
    # Remembered (peer, message id) pairs for deduplication, ~200 B each (100k ~ 20 MB). A
    # request answered with an error (4.xx/5.xx) is not remembered. When the table is full the
    # oldest entry of the peer holding the most is evicted: a new request is never refused.
    max_dedup_entries: int = 100_000
    # Entries one peer (address and port) may hold; beyond it its own oldest is evicted. An
    # agent holds EXCHANGE_LIFETIME / heartbeat interval (~50); a gateway multiplexing many
    # agents over one port holds more and only loses dedup for its oldest exchanges.
    max_dedup_per_peer: int = 2048
    # Token length our client picks by default; agents ask for 1 or 2 to keep datagrams short.
    token_length: int = 4
    # Largest datagram accepted; a bigger request is answered 4.13 (it should use Block1).
    max_datagram_size: int = 1500

    # --- block-wise (RFC 7959) --------------------------------------------------------------
    # Preferred block size, 16..1024, a power of two. Agents on constrained links use 64.
    block_size: int = 1024
    # Largest request body we reassemble from Block1 (or accept in one datagram): beyond it 4.13.
    max_request_payload: int = 64 * 1024
    # Concurrent Block1 reassemblies; a new one beyond this is answered 5.03.
    max_block1_transfers: int = 256
    # Cached large responses served block by block; oldest evicted beyond this.
    max_block2_entries: int = 256
    max_block2_bytes: int = 16 * 1024 * 1024
    # How long a partial Block1 upload or a cached Block2 representation is kept.
    block_lifetime: float = 60.0
    # Largest response body our client reassembles from Block2.
    max_response_payload: int = 16 * 1024 * 1024

    # --- Observe (RFC 7641) -----------------------------------------------------------------
    # Registered observers; beyond it a registration falls back to a plain response without
    # the Observe option, which is how RFC 7641 §4.1 says a server declines.
    max_observers: int = 10_000
    # Notifications are CON by default so a vanished observer is detected (RST or timeout).
    notify_confirmable: bool = True
    # Notifications buffered per client-side observation before the oldest is dropped.
    max_queued_notifications: int = 64

    # --- Trio shell -------------------------------------------------------------------------
    # Requests waiting for a handler worker; when full, a request from a peer holding fewer
    # than the biggest holder displaces that holder's newest (answered 5.03), else it is
    # answered 5.03 itself, so the receive loop never waits and a flood cannot starve others.
    max_pending_requests: int = 4096
    # Requests one peer (address and port) may have waiting or running; beyond it 5.03. Above
    # NSTART=1 clients; room for a load generator or gateway with a window of 64.
    max_pending_per_peer: int = 128
    # The same for all ports of one source address together, so opening many ports does not
    # take the whole queue; a quarter of it leaves room for a NAT with many agents behind it.
    max_pending_per_ip: int = 1024
    # Handler tasks serving requests concurrently.
    handler_workers: int = 64
    # A handler running longer than this is cancelled and answered 5.03.
    handler_timeout: float = 30.0
    # Default overall time our client waits for a response (retransmissions run inside it).
    request_timeout: float = 120.0

    def __post_init__(self) -> None:
        if not 16 <= self.block_size <= 1024 or self.block_size & (self.block_size - 1):
            raise ValueError("block_size must be a power of two between 16 and 1024")
        if not 0 <= self.token_length <= 8:
            raise ValueError("token_length must be 0..8")
        if self.ack_timeout <= 0 or self.ack_random_factor < 1 or self.max_retransmit < 0:
            raise ValueError("invalid retransmission parameters")
        if min(self.max_dedup_entries, self.max_dedup_per_peer, self.max_pending_requests,
               self.max_pending_per_peer, self.max_pending_per_ip, self.handler_workers) < 1:
            raise ValueError("limits on dedup entries, pending requests and workers must be >= 1")

    @property
    def block_szx(self) -> int:
        return size_to_szx(self.block_size)

    @property
    def max_transmit_span(self) -> float:
        return self.ack_timeout * ((1 << self.max_retransmit) - 1) * self.ack_random_factor

    @property
    def max_transmit_wait(self) -> float:
        return self.ack_timeout * ((1 << (self.max_retransmit + 1)) - 1) * self.ack_random_factor

    @property
    def processing_delay(self) -> float:
        return self.ack_timeout

    @property
    def max_rtt(self) -> float:
        return 2 * self.max_latency + self.processing_delay

    @property
    def exchange_lifetime(self) -> float:
        return self.max_transmit_span + 2 * self.max_latency + self.processing_delay

    @property
    def non_lifetime(self) -> float:
        return self.max_transmit_span + self.max_latency


__all__ = ["CoapConfig"]
