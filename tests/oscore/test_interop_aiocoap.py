"""Interop with aiocoap's OSCORE, an independent implementation, over real UDP on loopback.

(a) aiocoap's OSCORE client (tests/oscore/aiocoap_peer.py, its own process) holds an agent's
    context (secret 00..0f, Sender ID 05) and talks to a tiny server made of our sans-IO
    unprotect/protect; (b) our protect/unprotect talk to aiocoap's OscoreSiteWrapper server
    holding the master's context. Replays, bit flips and wrong kids are refused both ways.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests_oscore_peers import aiocoap_server, run_aiocoap_client  # type: ignore[import-not-found]

from edgerm import oscore
from edgerm.coap.codes import ACK, CON, Code, is_request
from edgerm.coap.message import decode_message_untrusted, encode_message

SECRET = bytes(range(16))
AGENT_ID = 5
CF_CBOR = (12, b"<")


class OurServer:
    """A blocking-socket CoAP server on a thread: our unprotect, the replay rule, our protect.

    Answers POST ``a`` with 2.04 ``echo:`` + payload, protected, reusing the request nonce;
    refusals are plain (unprotected) ACKs with the error's code. Retransmissions (same MID
    from the same address) get the cached answer, as CoAP deduplication requires.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        ctx = oscore.master_context(SECRET, AGENT_ID)
        self.contexts = {ctx.recipient_id: ctx}
        self.highest: dict[bytes, int] = {}
        self.accepted: list[tuple[bytes, int, bytes]] = []
        self.refused: list[str] = []
        self.cache: dict[tuple[Any, int], bytes] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def handle(self, data: bytes) -> bytes | None:
        msg = decode_message_untrusted(data)
        if msg.mtype != CON or not is_request(msg.code):
            return None
        try:
            kid, piv, inner = oscore.unprotect_request_message(self.contexts.get, msg)
            oscore.check_fresh(piv, self.highest.get(kid, 0))
        except oscore.OscoreError as e:
            self.refused.append(type(e).__name__)
            return encode_message(ACK, e.code, msg.mid, msg.token)
        self.highest[kid] = piv
        self.accepted.append((kid, piv, inner.payload))
        path = b"/".join(inner.opts(11))
        if path != b"a" or inner.code != Code.POST:
            code, payload = Code.NOT_FOUND, b""
        else:
            code, payload = Code.CHANGED, b"echo:" + inner.payload
        return oscore.response_datagram(self.contexts[kid], kid, piv, ACK, msg.mid, msg.token,
                                        code, [CF_CBOR] if payload else [], payload)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            key = (addr, (data[2] << 8) | data[3]) if len(data) >= 4 else None
            if key in self.cache:
                self.sock.sendto(self.cache[key], addr)
                continue
            try:
                reply = self.handle(data)
            except Exception as e:  # a test server bug must fail the test, not hang it
                self.refused.append(f"crash {e!r}")
                continue
            if reply is not None:
                if key is not None:
                    self.cache[key] = reply
                self.sock.sendto(reply, addr)


@pytest.fixture
def our_server() -> Iterator[OurServer]:
    s = OurServer()
    s.thread.start()
    try:
        yield s
    finally:
        s.stop.set()
        s.thread.join(5)
        s.sock.close()


def run_client(port: int, ctxdir: Path, seq: int, payloads: list[bytes]
               ) -> list[dict[str, Any]]:
    return run_aiocoap_client(port, ctxdir, SECRET, oscore.kid_of(AGENT_ID), seq, payloads)


def test_aiocoap_client_to_our_server(our_server: OurServer, tmp_path: Path) -> None:
    payloads = [b"\xa1\x05\xa0", b"\xa1\x06\xa3\x01\x07\x02\x03\x03\x04", b"x" * 200]
    got = run_client(our_server.port, tmp_path / "ctx", 1, payloads)
    assert [g.get("code") for g in got] == ["2.04"] * 3, got
    assert [bytes.fromhex(g["payload"]) for g in got] == [b"echo:" + p for p in payloads]
    assert [(k, piv) for k, piv, _ in our_server.accepted] == [(b"\x05", 1), (b"\x05", 2),
                                                               (b"\x05", 3)]
    assert our_server.refused == []


def test_aiocoap_client_replaying_sequence_numbers_is_refused(our_server: OurServer,
                                                               tmp_path: Path) -> None:
    run_client(our_server.port, tmp_path / "ctx", 10, [b"one", b"two"])
    # A second process restarts the client at seq 10 (a context copied or restored from a
    # backup): our server refuses seqs 10 and 11 as replays, then takes 12.
    got = run_client(our_server.port, tmp_path / "ctx2", 10, [b"a", b"b", b"c"])
    assert our_server.refused == ["Replay", "Replay"], (got, our_server.accepted)
    assert [g.get("plain_code") for g in got[:2]] == ["4.01", "4.01"], got
    assert got[2].get("code") == "2.04" and bytes.fromhex(got[2]["payload"]) == b"echo:c"
    assert [piv for _, piv, _ in our_server.accepted] == [10, 11, 12]


# --- (b) our client against aiocoap's OSCORE server ----------------------------------------

@pytest.fixture
def aiocoap_master(tmp_path: Path) -> Iterator[int]:
    """aiocoap's OscoreSiteWrapper holding the master's context for agent 5; yields its port."""
    with aiocoap_server(tmp_path, SECRET, oscore.kid_of(AGENT_ID)) as port:
        yield port


class OurClient:
    def __init__(self, port: int) -> None:
        self.addr = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(5)
        self.ctx = oscore.agent_context(SECRET, AGENT_ID)
        self.mid = 0x100

    def exchange(self, data: bytes) -> bytes:
        deadline = time.monotonic() + 20
        while True:  # CON retransmission, as a real agent would (loopback rarely needs it)
            self.sock.sendto(data, self.addr)
            try:
                reply, _ = self.sock.recvfrom(2048)
            except TimeoutError:
                assert time.monotonic() < deadline, "no answer from aiocoap"
                continue
            if reply[2:4] == data[2:4]:
                return reply

    def request(self, seq: int, payload: bytes) -> bytes:
        self.mid += 1
        # The agents' protected form: no inner Content-Format (the resource implies CBOR).
        return oscore.request_datagram(self.ctx, seq, CON, self.mid, b"\x42", Code.POST,
                                       [(11, b"a")], payload)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def our_client(aiocoap_master: int) -> Iterator[OurClient]:
    c = OurClient(aiocoap_master)
    try:
        yield c
    finally:
        c.close()


def test_our_client_to_aiocoap_server(our_client: OurClient) -> None:
    for seq, payload in ((1, b"\xa1\x05\xa0"), (2, b"status"), (70000, b"y" * 300)):
        reply = our_client.exchange(our_client.request(seq, payload))
        msg = decode_message_untrusted(reply)
        assert msg.code == Code.CHANGED and msg.opt(9) is not None
        piv, inner = oscore.unprotect_response_datagram(our_client.ctx, seq, reply)
        assert inner.code == Code.CHANGED
        assert inner.payload == b"echo:" + payload
        assert inner.opt(12) == b"<"


def _plain_refusal(reply: bytes) -> int:
    msg = decode_message_untrusted(reply)
    assert msg.opt(9) is None, "a refusal cannot be protected"
    return msg.code


def test_aiocoap_server_refuses_our_attacks(our_client: OurClient) -> None:
    first = our_client.request(5, b"hello")
    assert decode_message_untrusted(our_client.exchange(first)).code == Code.CHANGED
    # The recorded request under a fresh MID (so not a CoAP retransmission): a replay.
    our_client.mid += 1
    replay = first[:2] + our_client.mid.to_bytes(2, "big") + first[4:]
    assert _plain_refusal(our_client.exchange(replay)) == Code.UNAUTHORIZED
    # One flipped ciphertext bit. aiocoap answers 4.00, the RFC's suggestion (§8.2 step 6);
    # EdgeRM's master answers 4.01 (docs/protocol.md: one code for every authentication
    # failure, so a prober learns nothing); both are refusals the agent treats alike.
    bad = bytearray(our_client.request(6, b"hello"))
    bad[-3] ^= 0x10
    assert _plain_refusal(our_client.exchange(bytes(bad))) == Code.BAD_REQUEST
    # Another agent's kid, sealed with the right key: aiocoap has no context for kid 06.
    wrong = oscore.SecurityContext.derive(SECRET, b"\x06", b"")
    our_client.mid += 1
    data = oscore.request_datagram(wrong, 7, CON, our_client.mid, b"\x42", Code.POST,
                                   [(11, b"a")], b"x")
    assert _plain_refusal(our_client.exchange(data)) == Code.UNAUTHORIZED
    # The legitimate agent keeps working.
    reply = our_client.exchange(our_client.request(8, b"still here"))
    assert oscore.unprotect_response_datagram(our_client.ctx, 8, reply)[1].payload == \
        b"echo:still here"
