"""Fuzz the CoAP core with 100,000+ random and mutated datagrams; it must keep answering.

Most datagrams go straight into the sans-IO endpoint (fast, seeded, replayable); the
transport test suite sends a slice over a real socket. Every mutation strategy starts from
valid messages that exercise block-wise, Observe and option decoding, so the mutated bytes
reach deep into the parser and the request layer rather than failing at the header.
"""

from __future__ import annotations

import random

from edgerm.coap import CoapConfig, CoapEndpoint, Code, RequestReceived
from edgerm.coap.codes import ACK, CON, NON
from edgerm.coap.message import decode_message_untrusted, encode_message
from edgerm.coap.options import BLOCK1, BLOCK2, OBSERVE, SIZE1, URI_PATH, URI_QUERY, BlockValue

SEEDS = [
    encode_message(CON, Code.POST, 1, b"\x01", [(URI_PATH, b"a"), (12, b"<")], b"\xa1\x01\x02"),
    encode_message(CON, Code.GET, 2, b"ab", [(URI_PATH, b"m"), (URI_PATH, b"f" * 64),
                                             (BLOCK2, BlockValue(3, False, 2).encode())]),
    encode_message(CON, Code.POST, 3, b"abcd", [(URI_PATH, b"up"),
                                                (BLOCK1, BlockValue(0, True, 2).encode()),
                                                (SIZE1, b"\x10\x00")], b"z" * 64),
    encode_message(NON, Code.FETCH, 4, b"abcdefgh", [(OBSERVE, b""), (URI_PATH, b"c"),
                                                     (URI_QUERY, b"x=1")], b"auth"),
    encode_message(ACK, Code.CONTENT, 5, b"\x09", [(OBSERVE, b"\x01\x02\x03")], b"n"),
    encode_message(CON, Code.GET, 6, b"", [(300, b"x" * 20), (2049, b"")]),
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    choice = rng.randrange(6)
    if choice == 0:  # flip bits
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif choice == 1:  # truncate
        del b[rng.randrange(len(b)):]
    elif choice == 2:  # random byte values at random places
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif choice == 3:  # insert garbage
        i = rng.randrange(len(b) + 1)
        b[i:i] = rng.randbytes(rng.randint(1, 20))
    elif choice == 4:  # token length nibble 9..15 or other versions
        b[0] = (b[0] & 0xF0) | rng.randint(9, 15) if rng.random() < 0.5 else rng.randrange(256)
    else:  # duplicate a slice (repeated options, odd deltas)
        i = rng.randrange(len(b))
        b[i:i] = b[i:i + rng.randint(1, 8)]
    return bytes(b)


def datagrams(rng: random.Random, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        r = rng.random()
        if r < 0.25:
            out.append(rng.randbytes(rng.randrange(0, 40)))
        elif r < 0.3:
            out.append(rng.choice(SEEDS))  # valid ones too, so the request layer is busy
        else:
            out.append(mutate(rng, rng.choice(SEEDS)))
        if len(out[-1]) >= 4 and rng.random() < 0.9:
            # A fresh message id, so most datagrams are new exchanges rather than duplicates.
            out[-1] = out[-1][:2] + rng.randbytes(2) + out[-1][4:]
    return out


def test_core_survives_100k_hostile_datagrams() -> None:
    rng = random.Random(20261122)
    cfg = CoapConfig(max_dedup_entries=20_000, max_block1_transfers=8, max_observers=16,
                     max_block2_entries=8)
    ep = CoapEndpoint(cfg, rng=random.Random(1))
    peers = [(f"192.0.2.{i}", 5683 + i) for i in range(8)]
    now = 0.0
    requests = 0
    body = bytes(3000)
    for i, data in enumerate(datagrams(rng, 100_000)):
        now += 0.01
        ep.receive_datagram(data, rng.choice(peers), now)
        while (ev := ep.next_event()) is not None:
            if isinstance(ev, RequestReceived):
                requests += 1
                # Answer some requests late, some large (block-wise), some with observe.
                if rng.random() < 0.9:
                    ep.respond(ev.request_id, Code.CONTENT, body if ev.path == ("m",) else b"",
                               observe=ev.observe == 0, now=now)
        ep.datagrams_to_send(now)
        if i % 100 == 0:
            t = ep.get_timer()
            if t is not None and t <= now:
                ep.handle_timer(now)
        assert ep.dedup_size <= cfg.max_dedup_entries
        assert ep.observer_count <= cfg.max_observers
    assert ep.stats.received == 100_000
    assert ep.stats.malformed > 20_000  # the fuzzer really did reach the error paths
    assert requests > 5_000
    assert len(ep._server.block1) <= cfg.max_block1_transfers  # noqa: SLF001
    assert len(ep._server.block2) <= cfg.max_block2_entries  # noqa: SLF001

    # After all that, a fresh valid request is still answered correctly.
    peer = ("198.51.100.1", 1)
    ep.receive_datagram(encode_message(CON, Code.GET, 77, b"ok", [(URI_PATH, b"hello")]), peer,
                        now)
    ev = ep.next_event()
    assert isinstance(ev, RequestReceived) and ev.path == ("hello",)
    ep.respond(ev.request_id, Code.CONTENT, b"world")
    out = [(decode_message_untrusted(d), a) for d, a in ep.datagrams_to_send(now) if a == peer]
    assert [(m.mtype, m.code, m.mid, m.token, m.payload) for m, _ in out] == [
        (ACK, Code.CONTENT, 77, b"ok", b"world")]
