"""OSCORE cost per message: edgerm.oscore against aiocoap's OSCORE, side by side in one run.

    python bench/oscore.py [--n 20000]

Each figure is operations per second on one core for a steady heartbeat (POST "a", CBOR
payload a1 05 a0) and its empty reply, with the same security context on both sides:
- request_protect: the agent seals a heartbeat (ours: protect_request; aiocoap: protect of
  a Message);
- request_unprotect: the master opens one (ours: unprotect_request; aiocoap: unprotect with
  its replay window);
- master_inline: what the master's inline heartbeat path adds per heartbeat: open the request
  and seal the reply reusing its nonce (ours: the hot path open_request + seal_response on raw
  bytes; aiocoap: unprotect + protect of Messages);
- mac_inline (reference, no OSCORE): the agent-link MAC this replaces, HMAC-SHA256 over the
  call (compare) and over the reply, on ready encodings (edgerm.wire.compute_mac).
Goal: the master does >= 10,000 heartbeats/s over CoAP with OSCORE on 2 cores; the inline
OSCORE work must stay a small part of the 100 us per heartbeat that leaves, so >= 50,000/s.
Prints JSON lines {"metric", "value", "unit", "goal", "impl"}.
"""

from __future__ import annotations

import argparse
import hmac
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgerm import oscore  # noqa: E402
from edgerm.wire import compute_mac, encode, pb  # noqa: E402

SECRET = bytes(range(16))
AGENT_ID = 5
PAYLOAD = encode(pb.AgentCall(heartbeat=pb.Heartbeat()))
OPTS = [(11, b"a")]   # a protected request: no inner Content-Format (the resource says CBOR)
REPLY = encode(pb.AgentReply())


def emit(metric: str, value: float, unit: str, goal: str, impl: str) -> None:
    print(json.dumps({"metric": metric, "value": round(value), "unit": unit, "goal": goal,
                      "impl": impl}), flush=True)


def rate(n: int, fn: Callable[[int], Any]) -> float:
    """Operations per second of fn(i) for i in 1..n, best of three rounds."""
    best = 0.0
    for r in range(3):
        base = r * n
        t0 = time.perf_counter()
        for i in range(base + 1, base + n + 1):
            fn(i)
        best = max(best, n / (time.perf_counter() - t0))
    return best


def ours(n: int) -> dict[str, float]:
    agent = oscore.agent_context(SECRET, AGENT_ID)
    master = oscore.master_context(SECRET, AGENT_ID)
    lookup = {master.recipient_id: master}.get
    reqs = [oscore.protect_request(agent, i, 0x02, OPTS, PAYLOAD) for i in range(1, 3 * n + 2)]
    reply_pt = oscore.encode_plaintext(0x44, [(12, b"<")], REPLY)

    def inline(i: int) -> None:
        value, ct = reqs[i]
        kid, piv = oscore.parse_request_option(value)
        ctx = lookup(kid)
        assert ctx is not None
        piv, pt = oscore.open_request(ctx, value, ct)
        oscore.seal_response(ctx, kid, piv, reply_pt)

    return {
        "request_protect": rate(n, lambda i: oscore.protect_request(agent, i, 0x02, OPTS,
                                                                    PAYLOAD)),
        "request_unprotect": rate(n, lambda i: oscore.unprotect_request(lookup, *reqs[i])),
        "master_inline": rate(n, inline),
    }


def aiocoap_side(n: int) -> dict[str, float]:
    import aiocoap
    import aiocoap.oscore as ao
    from aiocoap.message import Direction

    class Ctx(ao.CanProtect, ao.CanUnprotect, ao.SecurityContextUtils):
        def post_seqnoincrease(self) -> None:  # no persistence: measure the crypto path
            pass

    def context(sender: bytes, recipient: bytes) -> Any:
        c = Ctx()
        c.alg_aead = ao.AES_CCM_16_64_128()
        c.hashfun = ao.hashfunctions["sha256"]
        c.sender_id, c.recipient_id, c.id_context = sender, recipient, None
        c.derive_keys(b"", SECRET)
        c.sender_sequence_number = 1
        c.recipient_replay_window = ao.ReplayWindow(32, lambda: None)
        c.recipient_replay_window.initialize_empty()
        return c

    agent = context(oscore.kid_of(AGENT_ID), b"")
    master = context(b"", oscore.kid_of(AGENT_ID))

    def request() -> Any:
        m = aiocoap.Message(code=aiocoap.POST, uri_path=["a"], payload=PAYLOAD)
        m.direction = Direction.OUTGOING
        return m

    def protect(_: int) -> Any:
        return agent.protect(request())[0]

    def wire(_: int) -> bytes:
        outer = agent.protect(request())[0]
        outer.mid, outer.token, outer.mtype = 1, b"\x42", aiocoap.CON
        return bytes(outer.encode())

    def unprotect_of(data: bytes) -> Any:
        m = aiocoap.Message.decode(data)
        m.direction = Direction.INCOMING
        return master.unprotect(m)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        out = {"request_protect": rate(n, protect)}
        datagrams = [wire(i) for i in range(3 * n + 2)]
        out["request_unprotect"] = rate(n, lambda i: unprotect_of(datagrams[i]))
        datagrams = [wire(i) for i in range(3 * n + 2)]

        def inline(i: int) -> None:
            _, request_id = unprotect_of(datagrams[i])
            r = aiocoap.Message(code=aiocoap.CHANGED, content_format=60, payload=REPLY)
            r.direction = Direction.OUTGOING
            master.protect(r, request_id)

        out["master_inline"] = rate(n, inline)
    return out


def mac_inline(n: int) -> float:
    """The MAC path on bytes as cheap as it gets: HMAC over the unsigned call, compare, HMAC
    over the unsigned reply (encodings prepared, as the OSCORE side's plaintexts are)."""
    unsigned = [encode(pb.AgentCall(agent_id=AGENT_ID, seq=i, heartbeat=pb.Heartbeat()))
                for i in range(1, 3 * n + 2)]
    macs = [compute_mac(SECRET, u) for u in unsigned]
    reply = encode(pb.AgentReply(seq=1))

    def inline(i: int) -> None:
        assert hmac.compare_digest(compute_mac(SECRET, unsigned[i]), macs[i])
        compute_mac(SECRET, reply)

    return rate(n, inline)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    n = p.parse_args().n
    a = ours(n)
    b = aiocoap_side(n)
    goals = {"request_protect": "", "request_unprotect": "", "master_inline": ">= 50000"}
    for metric in ("request_protect", "request_unprotect", "master_inline"):
        emit(f"oscore_{metric}_per_s", a[metric], "1/s", goals[metric], "edgerm")
        emit(f"oscore_{metric}_per_s", b[metric], "1/s", "", "aiocoap")
    emit("mac_inline_per_s", mac_inline(n), "1/s", "", "edgerm (MAC, for comparison)")


if __name__ == "__main__":
    main()
