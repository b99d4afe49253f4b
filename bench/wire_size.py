"""Encoded sizes of the messages that cross the smallest links, against their budgets.

Prints JSON lines {"metric", "value", "unit", "goal", "ok"} and exits 1 when a budget is missed.
Payloads come from edgerm.wire. Every call after the first registration crosses CoAP
OSCORE-protected (issue 16, docs/protocol.md): the `AgentCall` without agent_id, seq and mac,
inside a plaintext (inner POST, Uri-Path `a`; no Content-Format: the resource implies CBOR;
the small agents' default heartbeat is FETCH `c` with an inner and outer Observe) that
edgerm.oscore seals (AES-CCM-16-64-128: 8-byte tag) with the agent id as kid and the seq as
Partial IV; the outer datagram (header, token, the OSCORE option, payload marker, ciphertext)
is encoded by aiocoap, an independent CoAP implementation, with the 1-byte token our small
agents use. The first registration stays plain (Uri-Path, Content-Format, the signed
payload). An 802.15.4 frame leaves about 81 bytes for the application.
"""

from __future__ import annotations

import json
import sys
import warnings

from edgerm.oscore import agent_context, master_context, protect_request, protect_response
from edgerm.wire import CONTENT_FORMAT_CBOR, NONCE_LEN, encode, pb, sign, token_key

SECRET = bytes(range(16))
SHA = bytes(32)


def coap_datagram(payload: bytes, token: bytes = b"\x01") -> int:
    """A plain CON POST `a` (a first registration)."""
    from aiocoap import CON, POST, Message

    with warnings.catch_warnings():
        # aiocoap would rather own mid and token; we only measure its encoding.
        warnings.simplefilter("ignore")
        msg = Message(mtype=CON, code=POST, mid=0x1234, token=token, uri_path=["a"],
                      content_format=CONTENT_FORMAT_CBOR, payload=payload)
        return len(msg.encode())


def oscore_datagram(call: pb.AgentCall, agent_id: int, seq: int, token: bytes = b"\x01",
                    observe: bool = False, inner_cf: bool = False) -> int:
    """`call` (bare: no agent_id, seq or mac) as the CON POST `a` the agent sends under OSCORE,
    or with `observe` its Observe registration (FETCH `c`, Observe 0 inside and out);
    `inner_cf`: with the inner Content-Format 60 agents sent before it was dropped."""
    from aiocoap import CON, FETCH, POST, Message

    inner = [(6, b""), (11, b"c")] if observe else [(11, b"a")]
    if inner_cf:
        inner.append((12, bytes((CONTENT_FORMAT_CBOR,))))
    code = FETCH if observe else POST
    option, ciphertext = protect_request(agent_context(SECRET, agent_id), seq, code, inner,
                                         encode(call))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        msg = Message(mtype=CON, code=code, mid=0x1234, token=token, payload=ciphertext)
        if observe:
            msg.opt.observe = 0
        msg.opt.oscore = option
        return len(msg.encode())


def oscore_reply_datagram(reply: bytes, agent_id: int, seq: int,
                          token: bytes = b"\x01") -> int:
    """The encoded AgentReply `reply` (no seq or mac) as the master's piggybacked ACK 2.04,
    reusing the request's nonce."""
    from aiocoap import ACK, CHANGED, Message

    option, ciphertext = protect_response(
        master_context(SECRET, agent_id), bytes((agent_id,)), seq, 0x44,
        [(12, bytes((CONTENT_FORMAT_CBOR,)))], reply)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        msg = Message(mtype=ACK, code=CHANGED, mid=0x1234, token=token, payload=ciphertext)
        msg.opt.oscore = option
        return len(msg.encode())


def bare_heartbeat() -> pb.AgentCall:
    # Two tasks are running and nothing changed: the heartbeat says so by saying nothing.
    return pb.AgentCall(heartbeat=pb.Heartbeat())


def bare_status(update_id: int) -> pb.AgentCall:
    return pb.AgentCall(status=pb.StatusUpdate(update_id=update_id, task=2, state=pb.FINISHED))


def reference_registration() -> pb.AgentCall:
    """A Zephyr sensor board's first registration: three sensors, cpus, mem, the WASM executor,
    the os attribute, its nonce, signed with the token's key (the token itself is not sent)."""
    sensor = pb.SENSOR
    call = pb.AgentCall(seq=1, register=pb.Register(
        name="permamote-02",
        resources=pb.Resources(cpus=1.0, mem_mb=0.0625, devices=[
            pb.Device(name="temp", kind=sensor, shares=4),
            pb.Device(name="humidity", kind=sensor, shares=4),
            pb.Device(name="press", kind=sensor, shares=4),
        ]),
        attributes=[pb.Attribute(name="os", text="zephyr")],
        executors=[pb.WASM], protocol_version=1, nonce=bytes(NONCE_LEN), max_payload=256,
    ))
    sign(call, token_key("dev-agent-token-0123456789"))
    return call


def heartbeat(agent_id: int, seq: int) -> bytes:
    # Two tasks are running and nothing changed: the heartbeat says so by saying nothing.
    return sign(pb.AgentCall(agent_id=agent_id, seq=seq, heartbeat=pb.Heartbeat()), SECRET)


def status(agent_id: int, seq: int, update_id: int | None = None) -> bytes:
    return sign(pb.AgentCall(agent_id=agent_id, seq=seq, status=pb.StatusUpdate(
        update_id=seq // 2 if update_id is None else update_id, task=2, state=pb.FINISHED)),
        SECRET)


def launch() -> bytes:
    return sign(pb.AgentReply(seq=1000, commands=[pb.Command(id=3, launch=pb.Launch(
        task=2, spec=pb.TaskSpec(
            name="sampler", resources=pb.Resources(
                cpus=0.1, mem_mb=0.0625, devices=[pb.Device(name="temp", shares=1)]),
            wasm=pb.WasmTask(sha256=SHA, size=812, args=["10", "500"]))))]), SECRET)


def decode_launch() -> pb.AgentReply:
    """The launch reply without seq and mac (as OSCORE carries it)."""
    from edgerm.wire import decode

    reply = decode(pb.AgentReply, launch())
    reply.ClearField("seq")
    reply.ClearField("mac")
    return reply


def main() -> int:
    rows = []

    def row(metric: str, value: int, goal: int | None) -> None:
        rows.append({"metric": metric, "value": value, "unit": "bytes",
                     "goal": f"<= {goal}" if goal is not None else None,
                     "ok": None if goal is None else value <= goal})

    hb = bare_heartbeat()
    st = bare_status(500)
    row("registration_payload", len(encode(reference_registration())), 128)
    row("registration_datagram", coap_datagram(encode(reference_registration())), None)
    row("heartbeat_payload", len(encode(hb)), None)
    row("status_update_payload", len(encode(st)), None)
    row("launch_wasm_payload", len(launch()), None)
    row("heartbeat_datagram", oscore_datagram(hb, 1, 1000), 32)
    row("status_update_datagram", oscore_datagram(st, 1, 1001), 40)
    # The same budgets at the edge of what docs/protocol.md allows a constrained agent: agent id
    # 255, seq at its largest (2**32 - 1: seq never restarts, not even across a reboot; a
    # 4-byte Partial IV), update id 65535, its 1-byte token.
    row("heartbeat_datagram_worst", oscore_datagram(hb, 255, 2**32 - 1), 32)
    row("status_update_datagram_worst", oscore_datagram(bare_status(65_535), 255, 2**32 - 1),
        40)
    # The small agents' default steady heartbeat: FETCH `c` with Observe (inside and out),
    # acknowledging a command (command_ack <= 23: one CBOR byte), at the same worst case; and
    # what it was with the inner Content-Format 60 (the 2 bytes dropped).
    hb_ack = pb.AgentCall(heartbeat=pb.Heartbeat(command_ack=23))
    row("heartbeat_observe_datagram_worst", oscore_datagram(hb_ack, 255, 2**32 - 1,
                                                            observe=True), 32)
    row("heartbeat_observe_datagram_worst_inner_cf", oscore_datagram(
        hb_ack, 255, 2**32 - 1, observe=True, inner_cf=True), None)
    # What the mac cost on the same calls before OSCORE (signed, agent_id and seq inside).
    row("heartbeat_datagram_worst_mac", coap_datagram(heartbeat(255, 2**32 - 1)), None)
    row("status_update_datagram_worst_mac", coap_datagram(status(255, 2**32 - 1, 65_535)),
        None)
    # The master's answer to a steady heartbeat when it has nothing to say: `{}`.
    row("heartbeat_reply_datagram", oscore_reply_datagram(b"\xa0", 1, 1000), None)
    # No budget: a launch is 6LoWPAN-fragmented; it is reported to watch its growth.
    row("launch_wasm_datagram", oscore_reply_datagram(encode(decode_launch()), 1, 1000), None)
    for r in rows:
        print(json.dumps(r))
    return 0 if all(r["ok"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
