"""An attacker on the path alters what it forwards: bit flips in every byte region of a
protected request (the master refuses each and changes nothing, and the genuine request, let
through afterwards, is still accepted: a forgery does not use up its sequence number), flips
of the parts OSCORE leaves unprotected (header, token: the genuine call is processed at most
once), reordered calls (the older one is refused), and forged answers to the agent (a flipped
one, an old protected answer given to a later call): the agent drops them and acts on none."""

from __future__ import annotations

import trio

from edgerm.coap.codes import ACK
from edgerm.testing_onpath import HOLD, Datagram, flip_bit, regions, with_mid, with_token
from edgerm.wire import DecodeError, decode, pb

from .agents import task_args
from .conftest import Scene, is_plain_refusal

TS = pb.TaskState


async def hold_a_protected_request(scene: Scene) -> Datagram:
    """Hold every datagram of the agent back; the first one that is a protected request."""
    peek = scene.peek()
    scene.relay.rule["up"] = HOLD

    def protected() -> Datagram | None:
        return next((d for d in scene.relay.held["up"] if peek.request(d.data)), None)
    held = await scene.relay.wait_for(protected, 10.0)
    assert isinstance(held, Datagram)
    return held


async def steady(scene: Scene) -> None:
    await scene.registered()
    await scene.start_spin()
    await scene.settled()


async def test_flips_in_the_protected_regions_are_refused(scene: Scene) -> None:
    await steady(scene)
    held = await hold_a_protected_request(scene)
    before = await scene.snapshot()
    bad = []
    for region, rng in regions(held.data).items():
        if region in ("header", "token"):
            continue    # not protected by OSCORE: test_flips_of_header_and_token
        for pos in sorted({rng.start, (rng.start + rng.stop) // 2, rng.stop - 1}):
            for bit in (0, 7):
                answer = await scene.relay.exchange(flip_bit(held.data, pos, bit),
                                                    via="attacker", timeout=0.5)
                if not is_plain_refusal(answer):
                    bad.append(f"{region} byte {pos} bit {bit}: answered "
                               f"{answer.message if answer else None}")
    # From the agent's own address and with its Message ID: a refused forgery must not fill
    # the deduplication cache for the genuine request that follows.
    answer = await scene.relay.exchange(flip_bit(held.data, -1), via="agent", timeout=0.5)
    assert is_plain_refusal(answer), answer
    assert not bad, "\n".join(bad)
    after = await scene.snapshot(settle=False)
    assert after == before
    mark = len(scene.relay.recorded)
    scene.relay.rule["up"] = None
    await scene.relay.release("up")
    await scene.relay.wait_for(lambda: scene.relay.answer_to(held), 5.0)
    reply = scene.answer_opened(held)
    assert reply is not None and not reply.HasField("error"), \
        f"the genuine request was not accepted after its forgeries: " \
        f"{scene.relay.answer_to(held)}\n{scene.describe(mark)}"
    await scene.agent_keeps_working(mark)
    assert scene.spin_running()


async def test_flips_of_header_and_token_process_the_genuine_call_at_most_once(
        scene: Scene) -> None:
    """Header and token are outside OSCORE's protection (RFC 8613 §4.1.1, §5): a copy with
    another Message ID or token is the genuine call under another label. The master may
    process it, but only once: every later copy is refused, and nothing else changes."""
    await steady(scene)
    held = await hold_a_protected_request(scene)
    before = await scene.snapshot()
    accepted = []
    r = regions(held.data)
    sent = [held.data] + [flip_bit(held.data, pos, bit) for pos in (*r["header"], *r["token"])
                          for bit in range(8)]
    for data in sent:
        answer = await scene.relay.exchange(data, via="attacker", timeout=0.3)
        if answer is None or is_plain_refusal(answer):
            continue
        reply = scene.answer_opened(Datagram(-1, "up", 0, data, "inject"), answer)
        if reply is not None and not reply.HasField("error"):
            accepted.append(data)
    assert accepted == [held.data], [a.hex() for a in accepted]
    assert await scene.snapshot(settle=False) == before
    mark = len(scene.relay.recorded)
    scene.relay.rule["up"] = None
    await scene.relay.release("up")
    await scene.agent_keeps_working(mark)
    assert scene.spin_running()


async def test_reordered_calls_the_older_is_refused(scene: Scene) -> None:
    """The attacker holds a call back until the agent has given up on it and made the next
    one, then delivers the newer, and the older once the newer is answered: the newer is
    accepted, the older refused."""
    await steady(scene)
    peek = scene.peek()
    scene.relay.rule["up"] = HOLD
    mark = len(scene.relay.recorded)
    # (A retransmission of a call that got through before the hold is that call's, answered
    # from the deduplication cache: not one the attacker delayed.)
    passed = {d.data for d in scene.relay.requests()[:mark] if d.index < mark}

    def two_calls() -> bool:
        seqs = {o.seq for d in scene.relay.held["up"]
                if d.data not in passed and (o := peek.request(d.data))}
        return len(seqs) >= 2
    await scene.relay.wait_for(two_calls, 15.0)
    scene.relay.rule["up"] = None
    before = await scene.snapshot()
    opened = [(d, o) for d in scene.relay.held["up"]
              if d.data not in passed and (o := peek.request(d.data))]
    newest = max(o.seq for _, o in opened)
    # The newest first, and only once it is answered the older ones (delivered together, the
    # master's workers may take them in either order: then both are accepted, each once,
    # which is no replay).
    newer = await scene.relay.release(
        "up", which=lambda d: any(d is n and o.seq == newest for n, o in opened))
    await scene.relay.wait_for(lambda: all(scene.relay.answer_to(d) for d in newer), 5.0)
    await scene.relay.release("up")
    await scene.relay.wait_for(lambda: all(scene.relay.answer_to(d) for d, _ in opened), 5.0)
    for d, o in opened:
        answer = scene.relay.answer_to(d)
        if o.seq == newest:
            reply = scene.answer_opened(d)
            assert reply is not None and not reply.HasField("error"), reply
        else:
            assert is_plain_refusal(answer), (o.seq, newest, answer)
    assert await scene.snapshot(settle=False) == before
    await scene.agent_keeps_working(len(scene.relay.recorded))


MARK = "withheld-launch-marker-4b7e"


async def test_forged_answers_are_dropped_by_the_agent(scene: Scene) -> None:
    """The attacker withholds every answer of the master that carries a launch (so the agent
    could learn of it from nothing else), forwards the first with a flipped bit, and gives
    the second call the first call's genuine protected answer (Message ID and token set to
    the second's). Had the agent taken either, the task would start; it starts only once
    the attacker lets the master's own answers through."""
    await scene.registered()
    scene.sha["hello"] = await scene.upload("hello")
    peek = scene.peek()
    relay = scene.relay
    carrying: list[tuple[int, bytes]] = []   # (request MID, genuine answer) per call

    def request_of(msg_mid: int, token: bytes, is_ack: bool) -> Datagram | None:
        for d in reversed(relay.select("up", "agent")):
            m = d.message
            if m is not None and ((is_ack and m.mid == msg_mid) or
                                  (not is_ack and token and m.token == token)):
                return d
        return None

    def carries_launch(data: bytes) -> Datagram | None:
        m = Datagram(-1, "down", 0, data, "master").message
        if m is None:
            return None
        req = request_of(m.mid, m.token, m.mtype == ACK)
        if req is None:
            return None
        opened = peek.response(data, req.data)
        if opened is None:
            return None
        try:
            reply = decode(pb.AgentReply, opened.inner.payload)
        except DecodeError:
            return None
        if any(c.WhichOneof("command") == "launch" and MARK in task_args(c.launch.spec)
               for c in reply.commands):
            return req
        return None

    def withhold(data: bytes) -> list[tuple[float, bytes]]:
        req = carries_launch(data)
        m = Datagram(-1, "down", 0, data, "master").message
        if req is None or m is None:
            return [(0.0, data)]
        if m.mtype != ACK:
            return []           # a notification carrying it: withheld
        mids = [mid for mid, _ in carrying]
        if m.mid not in mids:
            carrying.append((m.mid, data))
            mids.append(m.mid)
        if m.mid == mids[0]:    # the first call's answer: flipped in its tag
            return [(0.0, flip_bit(data, -1))]
        if m.mid == mids[1]:    # the second's: the first's genuine answer instead
            first = carrying[0][1]
            forged = with_token(with_mid(first, m.mid), m.token) \
                if len(m.token) == (first[0] & 0x0F) else with_mid(first, m.mid)
            return [(0.0, forged)]
        return []

    relay.rule["down"] = withhold
    await scene.launch("late", "hello", MARK)
    await relay.wait_for(lambda: len(carrying) >= 3, 20.0)
    await trio.sleep(0.5)
    assert scene.fw.states("late") == [], \
        f"the agent acted on a forged answer: {scene.fw.states('late')}\n{scene.agent.log()}"
    relay.rule["down"] = None
    st = await scene.fw.wait_state("late", TS.FINISHED, TS.FAILED, TS.ERROR)
    assert st.state == TS.FINISHED, st
    await scene.agent_keeps_working(len(relay.recorded))
