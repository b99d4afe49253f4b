"""Write proto/vectors/vectors.json: the shared test vectors of the EdgeRM wire format.

Every codec (Python, MicroPython, C) must pass them byte for byte:
- `vectors`: {name, type, json, hex}. Decoding `hex` as `type` gives the message whose protobuf JSON
  form is `json`; encoding that message gives exactly `hex`.
- `noncanonical`: {name, type, hex, canonical}. Legal but not deterministic input (indefinite
  lengths, long integer heads, unknown fields, a longer float than needed) must decode; encoding
  the result gives `canonical`.
- `negative`: {name, type, hex, reason, level}. Must be rejected. `level` "cbor" means any CBOR
  decoder that enforces the rules of docs/wire.md rejects it (truncation, duplicate keys, bad keys,
  depth, reserved encodings, invalid UTF-8); "schema" means it is well-formed CBOR that breaks the
  field types of proto/edgerm.proto.
- `limits`: the decode limits the negative vectors assume.
- `auth`: the first registration's keys (docs/protocol.md, "Authentication"): from `token` and
  the two nonces every implementation must compute `token_key` (SHA-256 of the token), `secret`
  (HMAC-SHA256(token_key, "edgerm secret" || agent_nonce || master_nonce), first 16 bytes), and
  the vectors `register_first` (signed with token_key) and `registered` (signed with secret).

The generator derives `hex` with the Python codec, and the test suite checks every vector against
an independent decoder (cbor2) as well, so a codec bug cannot hide in its own vectors. Run
`python proto/vectors/make_vectors.py` after a schema change; tests fail while the file is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edgerm.wire import encode, pb  # noqa: E402

OUT = Path(__file__).resolve().parent / "vectors.json"
SHA = bytes(range(32))
SECRET = bytes(range(16))
AGENT_TOKEN = "dev-agent-token-0123456789"
AGENT_NONCE = bytes.fromhex("a0a1a2a3a4a5a6a7")
MASTER_NONCE = bytes.fromhex("b0b1b2b3b4b5b6b7")


def realistic() -> list[tuple[str, Message]]:
    """Messages as the system really sends them, named for what they are."""
    from edgerm.wire import derive_secret, sign, token_key

    hb = pb.AgentCall(agent_id=1, seq=1000, heartbeat=pb.Heartbeat())
    sign(hb, SECRET)
    status = pb.AgentCall(
        agent_id=1, seq=1001,
        status=pb.StatusUpdate(update_id=7, task=3, state=pb.FINISHED),
    )
    sign(status, SECRET)
    register = pb.AgentCall(seq=1, register=pb.Register(
        name="permamote-02",
        resources=pb.Resources(cpus=1.0, mem_mb=0.0625, devices=[
            pb.Device(name="temp", kind=pb.SENSOR, shares=4),
            pb.Device(name="humidity", kind=pb.SENSOR, shares=4),
            pb.Device(name="press", kind=pb.SENSOR, shares=4),
        ]),
        attributes=[pb.Attribute(name="os", text="zephyr")],
        executors=[pb.WASM], protocol_version=1, nonce=AGENT_NONCE,
        max_payload=256,
    ))
    sign(register, token_key(AGENT_TOKEN))
    reregister = pb.AgentCall(agent_id=12, seq=1, register=pb.Register(
        name="gw-1", protocol_version=1, update_next=41,
        resources=pb.Resources(cpus=4.0, mem_mb=3800.0, disk_mb=20000.0,
                               ports=[pb.Range(begin=31000, end=32000)]),
        executors=[pb.DOCKER, pb.WASM],
        tasks=[pb.TaskReport(task=1, state=pb.RUNNING), pb.TaskReport(task=2, state=pb.STARTING)],
    ))
    sign(reregister, SECRET)
    registered = pb.AgentReply(seq=1, registered=pb.Registered(
        agent_id=1, nonce=MASTER_NONCE, heartbeat_ms=20000, jitter_ms=2000))
    sign(registered, derive_secret(AGENT_TOKEN, AGENT_NONCE, MASTER_NONCE))
    launch = pb.AgentReply(seq=1002, update_ack=7, commands=[pb.Command(id=5, launch=pb.Launch(
        task=4, spec=pb.TaskSpec(
            name="sampler",
            resources=pb.Resources(cpus=0.1, mem_mb=0.0625,
                                   devices=[pb.Device(name="temp", shares=1)]),
            wasm=pb.WasmTask(sha256=SHA, size=812, args=["10", "500"],
                             env=[pb.EnvVar(name="UNIT", value="C")]),
        )))])
    sign(launch, SECRET)
    kill = pb.AgentReply(seq=1003, commands=[pb.Command(id=6, kill=pb.Kill(task=4))])
    sign(kill, SECRET)
    push = pb.AgentReply(commands=[
        pb.Command(id=7, fetch=pb.FetchModule(sha256=SHA, size=812)),
        pb.Command(id=8, reregister=pb.ReRegister()),
    ])
    sign(push, SECRET)
    failed = pb.AgentCall(agent_id=1, seq=1004, status=pb.StatusUpdate(
        update_id=8, task=4, state=pb.FAILED, reason=pb.EXITED_NONZERO, exit_code=-3,
        message="exit 3: sensor temp: I/O error"))
    sign(failed, SECRET)
    publish = pb.AgentCall(agent_id=1, seq=1005, publish=pb.Publish(
        update_id=9, task=4, data=b"\xfb\x40\x35\x00\x00\x00\x00\x00\x00"))
    sign(publish, SECRET)
    module_req = pb.AgentCall(agent_id=2, seq=17, module=pb.ModuleRequest(
        sha256=SHA, offset=1024, length=1024))
    error = pb.AgentReply(seq=5, error=pb.Error(
        code=pb.UNAUTHENTICATED, message="stale seq 4 (last 9): re-register"))
    not_leader = pb.AgentReply(seq=6, error=pb.Error(
        code=pb.NOT_LEADER, message="this master is a standby; use the leader",
        leader="coap://10.0.0.2:5683"))
    hb_changed = pb.AgentCall(agent_id=300, seq=70000, heartbeat=pb.Heartbeat(
        command_ack=8, resources=pb.Resources(cpus=0.5, mem_mb=100000.0)))
    subscribe = pb.FrameworkCall(call_id=1, subscribe=pb.Subscribe(
        name="sensor-sampling", token="fw-token", failover_timeout_s=60.0, role="science"))
    accept = pb.FrameworkCall(framework_id="f-3", call_id=2, accept=pb.Accept(
        offer_ids=["o-17"], refuse_seconds=5.0, launch=[pb.TaskInfo(
            task_id="sample-1", spec=pb.TaskSpec(
                name="sampler", resources=pb.Resources(cpus=0.1, mem_mb=1.0),
                wasm=pb.WasmTask(sha256=SHA, size=812, timeout_s=60)))]))
    offers = pb.FrameworkEvent(offers=pb.Offers(offers=[pb.Offer(
        offer_id="o-17", agent_id=1, agent_name="permamote-02", expires_in_s=10.0,
        resources=pb.Resources(cpus=0.9, devices=[pb.Device(name="temp", kind=pb.SENSOR,
                                                            shares=3, unit="Cel")]),
        attributes=[pb.Attribute(name="os", text="zephyr")], executors=[pb.WASM])]))
    update = pb.FrameworkEvent(update=pb.TaskStatus(
        task_id="sample-1", state=pb.LOST, reason=pb.AGENT_LOST, agent_id=1,
        uuid=bytes(16), timestamp=1795000000.25))
    docker = pb.TaskInfo(task_id="web", spec=pb.TaskSpec(
        name="web", resources=pb.Resources(cpus=0.5, mem_mb=64.0,
                                           ports=[pb.Range(begin=8080, end=8080)]),
        docker=pb.DockerTask(image="edgerm/busybox:latest", command=["httpd", "-f", "-p", "8080"],
                             network=pb.HOST, env=[pb.EnvVar(name="A", value="b")],
                             ports=[pb.PortMapping(container_port=80, host_port=8080)])))
    mpy = pb.TaskSpec(name="blink", micropython=pb.MicroPythonTask(sha256=SHA, size=300, mpy=True))
    return [
        ("heartbeat_steady", hb),
        ("heartbeat_changed", hb_changed),
        ("status_finished", status),
        ("status_failed_negative_exit", failed),
        ("publish_reading", publish),
        ("register_first", register),
        ("reregister_linux_gateway", reregister),
        ("registered", registered),
        ("launch_wasm", launch),
        ("kill", kill),
        ("push_fetch_and_reregister", push),
        ("module_request", module_req),
        ("error_stale_seq", error),
        ("error_not_leader", not_leader),
        # A gateway's uplink: two devices' signed calls in one message, the master's two signed
        # replies back (docs/gateway.md). The entries are the devices' exact bytes.
        ("gateway_batch", pb.GatewayBatch(calls=[encode(hb), encode(status)])),
        ("gateway_replies", pb.GatewayReplies(replies=[
            encode(pb.AgentReply(seq=1000, mac=bytes(8))),
            encode(pb.AgentReply(seq=1001, mac=bytes(8), update_ack=7))])),
        ("framework_subscribe", subscribe),
        ("framework_accept", accept),
        ("framework_offers", offers),
        ("framework_update_lost", update),
        ("taskinfo_docker", docker),
        ("taskspec_micropython", mpy),
        ("attribute_scalar_zero_in_oneof", pb.Attribute(name="zone", scalar=0.0)),
        ("heartbeat_empty_submessage", pb.AgentCall(heartbeat=pb.Heartbeat())),
        ("empty_message", pb.Ping()),
        ("float_widths", pb.Resources(cpus=65504.0, mem_mb=100000.0, disk_mb=0.1)),
        ("float_specials",
         pb.Resources(cpus=float("inf"), mem_mb=-0.5, disk_mb=5.960464477539063e-08)),
        ("uint64_max", pb.Range(begin=0, end=2**64 - 1)),
        ("int_boundaries",
         pb.AgentCall(agent_id=23, seq=24, heartbeat=pb.Heartbeat(command_ack=255))),
        ("int_boundaries_2",
         pb.AgentCall(agent_id=256, seq=65535, heartbeat=pb.Heartbeat(command_ack=65536))),
        ("uint32_max", pb.AgentCall(agent_id=2**32 - 1)),
        ("sint32_min", pb.StatusUpdate(exit_code=-(2**31))),
        ("utf8_text", pb.Error(code=pb.BAD_REQUEST, message="Grüße, 温度 ✓")),
        ("string_len_23_24", pb.Set(items=["a" * 23, "b" * 24])),
        ("string_len_255_256", pb.Set(items=["c" * 255, "d" * 256])),
        ("bool_true", pb.PortMapping(container_port=53, host_port=5353, udp=True)),
        ("cluster_state", pb.ClusterState(
            now=1795000000.5, version="0.1.0",
            agents=[pb.AgentView(agent_id=1, name="a", state="active", last_seen=1.5,
                                 executors=[pb.WASM, pb.MICROPYTHON], transport="coap")],
            frameworks=[pb.FrameworkView(framework_id="f-1", name="n", weight=2.0, connected=True,
                                         tasks=3, dominant_share=0.25)],
            tasks=[pb.TaskView(task_id="t", framework_id="f-1", agent_id=1, state=pb.RUNNING,
                               executor=pb.WASM)])),
    ]


def _sample(fd: FieldDescriptor, variant: int) -> Any:
    t = fd.type
    T = FieldDescriptor
    if t == T.TYPE_STRING:
        return f"{fd.name}-{variant}"
    if t == T.TYPE_BYTES:
        return bytes([fd.number, variant, 0xFF])
    if t == T.TYPE_BOOL:
        return True
    if t in (T.TYPE_DOUBLE, T.TYPE_FLOAT):
        return 1.5 * (fd.number + variant)
    if t == T.TYPE_ENUM:
        values = [v.number for v in fd.enum_type.values if v.number != 0]
        return values[(fd.number + variant) % len(values)]
    if t in (T.TYPE_SINT32, T.TYPE_INT32, T.TYPE_SINT64, T.TYPE_INT64):
        return -(fd.number * 1000 + variant)
    return fd.number * 1000 + variant


def filled(cls: type[Message], variant: int = 0, depth: int = 0) -> Message:
    """Every field set (one member per oneof, chosen by `variant`), submessages two levels deep."""
    msg = cls()
    for oneof in cls.DESCRIPTOR.oneofs:
        chosen = oneof.fields[variant % len(oneof.fields)]
        _fill_field(msg, chosen, variant, depth)
    for fd in cls.DESCRIPTOR.fields:
        if fd.containing_oneof is None:
            _fill_field(msg, fd, variant, depth)
    return msg


def _fill_field(msg: Message, fd: FieldDescriptor, variant: int, depth: int) -> None:
    repeated = fd.is_repeated
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        if depth >= 2:
            if not repeated:
                getattr(msg, fd.name).SetInParent()
            return
        sub_cls = getattr(pb, fd.message_type.name)
        if repeated:
            for i in range(2):
                getattr(msg, fd.name).add().CopyFrom(filled(sub_cls, variant + i, depth + 1))
        else:
            getattr(msg, fd.name).CopyFrom(filled(sub_cls, variant, depth + 1))
        return
    if repeated:
        getattr(msg, fd.name).extend([_sample(fd, variant), _sample(fd, variant + 1)])
    else:
        setattr(msg, fd.name, _sample(fd, variant))


def every_message() -> list[tuple[str, Message]]:
    out = []
    for name in sorted(pb.DESCRIPTOR.message_types_by_name):
        cls = getattr(pb, name)
        widest = max([len(o.fields) for o in cls.DESCRIPTOR.oneofs] or [1])
        for variant in range(widest):
            out.append((f"all_fields_{name}_{variant}", filled(cls, variant)))
    return out


def noncanonical() -> list[dict[str, str]]:
    def v(name: str, type_: str, hex_in: str, canonical: str) -> dict[str, str]:
        return {"name": name, "type": type_, "hex": hex_in, "canonical": canonical}

    # Each hex below is derived by hand; the comment reads it.
    return [
        # {_ 1: 1, 2: 1000} -> {1: 1, 2: 1000}
        v("indefinite_map", "AgentCall", "bf0101021903e8ff", "a20101021903e8"),
        # {1: [_ (_ "a", "aa")]} -> {1: ["aaa"]}
        v("indefinite_array_and_strings", "Set", "a1019f7f6161626161ffff", "a1018163616161"),
        # {3: (_ h'0102', h'03')} -> {3: h'010203'}
        v("indefinite_bytes_chunks", "Publish", "a1035f42010241 03ff".replace(" ", ""),
          "a10343010203"),
        # {1: 1 in 4 bytes, 2: 2 in 8 bytes} -> shortest heads
        v("long_int_heads", "AgentCall", "a2011a00000001021b0000000000000002", "a201010202"),
        # {1 as a one-byte-extended key: 1} -> {1: 1}
        v("long_key_head", "AgentCall", "a1180101", "a10101"),
        # {1: 1, 99: [_ 1, {2: "x"}]} -> the unknown field 99 is skipped
        v("unknown_field_skipped", "AgentCall", "a2010118639f01a1026178ff", "a10101"),
        # {42: 1(1600000000), 1: 5}: unknown tagged field, keys out of order -> {1: 5}
        v("unknown_field_tagged", "Heartbeat", "a2182ac11a5f5e10000105", "a10105"),
        # {1: 1.0 as float64} -> float16
        v("double_that_fits_half", "Resources", "a101fb3ff0000000000000", "a101f93c00"),
        # {1: 1.0 as float32} -> float16
        v("single_that_fits_half", "Resources", "a101fa3f800000", "a101f93c00"),
        # {1: 0, 2: 0, 3: h'', 4: {}}: defaults are dropped, the present oneof member stays
        v("default_value_written", "AgentCall", "a401000200034004a0", "a104a0"),
    ]


def negative() -> list[dict[str, str]]:
    def n(name: str, type_: str, hex_in: str, reason: str, level: str) -> dict[str, str]:
        return {"name": name, "type": type_, "hex": hex_in, "reason": reason, "level": level}

    deep = "a11863" + "81" * 20 + "00"
    return [
        n("empty_input", "AgentCall", "", "truncated input", "cbor"),
        n("truncated_map", "AgentCall", "a20101", "truncated input", "cbor"),
        n("truncated_int_head", "AgentCall", "a1011a0000", "truncated input", "cbor"),
        n("truncated_string", "Error", "a1026568656c", "truncated input", "cbor"),
        n("string_length_beyond_input", "Error", "a1027a7fffffff41", "over the limit",
          "cbor"),
        n("trailing_bytes", "AgentCall", "a1010100", "trailing bytes", "cbor"),
        n("duplicate_key", "AgentCall", "a201010102", "duplicate key", "cbor"),
        n("text_key", "AgentCall", "a1616101", "map key must be a non-negative integer", "cbor"),
        n("negative_key", "AgentCall", "a12001", "map key must be a non-negative integer", "cbor"),
        n("not_a_map", "AgentCall", "8101", "expected map", "cbor"),
        n("nesting_too_deep", "AgentCall", deep, "nesting deeper than 16", "cbor"),
        n("indefinite_map_without_break", "AgentCall", "bf0101", "truncated input", "cbor"),
        n("reserved_additional_info", "AgentCall", "a1011c", "reserved additional information",
          "cbor"),
        n("lone_break", "AgentCall", "a11863ff", "unexpected break", "cbor"),
        n("invalid_utf8", "Error", "a10262c328", "invalid UTF-8", "cbor"),
        n("indefinite_string_bad_chunk", "Error", "a1027f4161ff", "bad chunk", "cbor"),
        n("wrong_type_text_for_int", "AgentCall", "a1016131", "expected integer", "schema"),
        n("wrong_type_float_for_int", "AgentCall", "a101f93c00", "expected integer", "schema"),
        n("wrong_type_int_for_float", "Resources", "a10101", "expected float", "schema"),
        n("wrong_type_int_for_bool", "PortMapping", "a10301", "expected bool", "schema"),
        n("wrong_type_bytes_for_text", "Error", "a1024161", "expected text string", "schema"),
        n("wrong_type_text_for_bytes", "AgentCall", "a1036161", "expected byte string", "schema"),
        n("wrong_type_scalar_for_message", "AgentCall", "a10501", "expected map", "schema"),
        n("wrong_type_scalar_for_repeated", "Set", "a1016161", "expected array", "schema"),
        n("uint32_overflow", "AgentCall", "a1011b0000000100000000", "out of range", "schema"),
        n("negative_for_uint32", "AgentCall", "a10120", "out of range", "schema"),
        n("sint32_overflow", "StatusUpdate", "a1061a80000000", "out of range", "schema"),
        n("two_oneof_members", "AgentCall", "a205a006a0", "a second member of oneof", "schema"),
        n("null_for_string", "Error", "a102f6", "expected text string", "schema"),
    ]


def to_json(msg: Message) -> Any:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def build() -> dict[str, Any]:
    vectors = []
    for name, msg in realistic() + every_message():
        vectors.append({"name": name, "type": msg.DESCRIPTOR.name, "json": to_json(msg),
                        "hex": encode(msg).hex()})
    return {
        "about": "EdgeRM wire vectors; see proto/vectors/make_vectors.py and docs/wire.md",
        "schema": "proto/edgerm.proto",
        "limits": {"max_depth": 16, "max_string": 65536, "max_bytes": 65536, "max_items": 4096},
        "vectors": vectors,
        "noncanonical": noncanonical(),
        "negative": negative(),
        "auth": auth(),
    }


def auth() -> dict[str, str]:
    from edgerm.wire import derive_secret, token_key

    return {
        "token": AGENT_TOKEN,
        "token_key": token_key(AGENT_TOKEN).hex(),
        "agent_nonce": AGENT_NONCE.hex(),
        "master_nonce": MASTER_NONCE.hex(),
        "secret": derive_secret(AGENT_TOKEN, AGENT_NONCE, MASTER_NONCE).hex(),
        "register_vector": "register_first",
        "registered_vector": "registered",
    }


def main() -> None:
    OUT.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
