"""The gateway core (edgerm_agent/gateway.py) with a hand-held clock: a device's newer call
supersedes its call still waiting at the gateway (the device is its kid), so a device that gave
up on a first registration and retried it (fresh nonce) does not leave the master a second,
abandoned agent."""

from __future__ import annotations

from edgerm.coap.codes import Code
from edgerm.oscore import pack_forwarded as pack
from edgerm.wire import decode, encode, pb
from edgerm_agent.gateway import Answer, GatewayCore, GatewaySettings, Persist

MOTE = ("fe80::1", 5683)   # a device's source address on the device link
OTHER = ("fe80::2", 5683)


def register(nonce: int, name: str = "mote-1", seq: int = 1) -> bytes:
    return encode(pb.AgentCall(seq=seq, register=pb.Register(name=name, nonce=bytes([nonce]) * 8)))


def hb(agent_id: int, seq: int) -> bytes:
    """A device's protected request (kid = agent id, Partial IV = seq; opaque ciphertext)."""
    return pack(0x02, bytes([0x09, seq, agent_id]), b"\x5a" * 9)


def reply(seq: int, **kw: object) -> bytes:
    return encode(pb.AgentReply(seq=seq, mac=bytes(8), **kw))  # type: ignore[arg-type]


def answers(effects: list) -> dict[int, Answer]:  # type: ignore[type-arg]
    return {e.call_id: e for e in effects if isinstance(e, Answer)}


def busy_core() -> tuple[GatewayCore, int]:
    """A core with another device's batch in flight (a slow, lossy uplink): new calls wait."""
    core = GatewayCore(GatewaySettings(window_s=0.002))
    core.device_call(100, hb(9, 1), 0.0, OTHER)
    batch = core.poll(0.002)
    assert batch is not None
    return core, batch.batch_id


def test_a_retried_first_registration_reaches_the_master_once() -> None:
    core, busy = busy_core()
    # the device registers while the uplink is busy; its CoAP exchange gives up (7 s) before
    # the gateway's reply timeout (20 s) and it registers again with a fresh nonce
    assert core.device_call(1, register(0xA1), 0.1, MOTE) == []
    effects = core.device_call(2, register(0xB2), 7.1, MOTE)
    core.batch_result(busy, [reply(1)], 8.0)
    batch = core.poll(8.0)
    assert batch is not None and batch.calls == (register(0xB2),)  # one Register, the newest
    got = answers(effects)
    assert got[1].code == Code.SERVICE_UNAVAILABLE  # "try again": it was never sent
    assert decode(pb.AgentReply, got[1].payload).error.code == pb.UNAVAILABLE
    assert core.stats["superseded"] == 1
    got = answers(core.batch_result(batch.batch_id, [reply(1, registered=pb.Registered(
        agent_id=42, nonce=bytes(8)))], 8.1))
    assert got[2].code == Code.CHANGED
    assert core.poll(9.0) is None


def test_other_devices_and_other_names_are_not_superseded() -> None:
    core, busy = busy_core()
    core.device_call(1, register(0xA1), 0.1, MOTE)
    core.device_call(2, register(0xB2), 0.1, OTHER)                 # another device
    core.device_call(3, register(0xC3, name="mote-2"), 0.1, MOTE)   # two simulated on one address
    core.device_call(4, register(0xD4), 0.1)                        # no address known
    core.device_call(5, hb(7, 3), 0.1, MOTE)                        # an agent id is another key
    core.batch_result(busy, [reply(1)], 1.0)
    batch = core.poll(1.0)
    assert batch is not None and len(batch.calls) == 5
    assert core.stats["superseded"] == 0


def test_a_newer_call_of_an_agent_replaces_its_waiting_one_but_never_a_kept_row() -> None:
    core, busy = busy_core()
    core.up = False      # a cut: the device's request is kept (and answered "try again")
    effects = core.device_call(1, hb(7, 5), 0.1, MOTE)
    (persist,) = [e for e in effects if isinstance(e, Persist)]
    core.row_durable(persist.row.row_id)
    core.up = True
    core.device_call(2, hb(7, 6), 0.2, MOTE)
    # the same agent from another address (it moved) still is the same device
    got = answers(core.device_call(3, hb(7, 7), 0.3, OTHER))
    assert got[2].code == Code.SERVICE_UNAVAILABLE and 1 not in got
    core.batch_result(busy, [reply(1)], 1.0)
    batch = core.poll(1.0)
    assert batch is not None and batch.calls == (hb(7, 5), hb(7, 7))  # in seq order


def test_a_newer_call_waits_while_the_older_one_is_in_flight() -> None:
    core = GatewayCore(GatewaySettings(window_s=0.0))
    core.device_call(1, register(0xA1), 0.0, MOTE)
    first = core.poll(0.0)
    assert first is not None and first.calls == (register(0xA1),)
    # in flight: it cannot be called back; the newer one is held, not sent beside it
    assert answers(core.device_call(2, register(0xB2), 7.0, MOTE)) == {}
    assert core.poll(7.0) is None
    core.batch_result(first.batch_id, [reply(1, registered=pb.Registered(
        agent_id=42, nonce=bytes(8)))], 8.0)
    second = core.poll(8.0)
    assert second is not None and second.calls == (register(0xB2),)
