"""The MicroPython agent, for real under `micropython -X heapsize=64k`, against a scripted
master over loopback UDP: register, heartbeat, launch/finish/fail/kill, module download with
Block2 and hash check, restarts of either side, and garbage at the agent's socket."""

from __future__ import annotations

import pytest
import trio

from edgerm.coap.message import decode_message_untrusted
from edgerm.wire import pb
from edgerm_master.testing_scripted_master import ScriptedMaster

from .conftest import needs_micropython

pytestmark = needs_micropython

SAMPLER = b"""
async def main():
    n = int(args[0]) if args else 3
    for i in range(n):
        publish(str(read_sensor("temp")), "temp")
        await sleep_ms(5)
    log("done %d" % n)
"""
FAILER = b"""
async def main():
    await sleep_ms(1)
    raise ValueError("boom")
"""
SLEEPER = b"""
async def main():
    while True:
        await sleep_ms(20)
"""
HOG = b"""
async def main():
    junk = []
    while True:
        junk.append(bytearray(1024))
        await sleep_ms(0)
"""


def _config(port: int) -> dict:  # type: ignore[type-arg]
    return {"master": f"127.0.0.1:{port}", "token": "tok", "name": "mp-test",
            "heartbeat_ms": 300, "ack_timeout_ms": 150, "max_retransmit": 2, "log_level": 2,
            "block_szx": 2,
            "sensors": [{"name": "temp", "unit": "Cel", "sim": [20.5, 21.0, 21.5]}]}


def _mp_task(sha: bytes, size: int, *args: str, devices: tuple[str, ...] = ("temp",),
             timeout_s: int = 0) -> pb.TaskSpec:
    return pb.TaskSpec(
        name="t", resources=pb.Resources(devices=[pb.Device(name=d) for d in devices]),
        micropython=pb.MicroPythonTask(sha256=sha, size=size, args=list(args), timeout_s=timeout_s))


async def _start(nursery: trio.Nursery, agent_factory, **cfg):  # type: ignore[no-untyped-def]
    m = ScriptedMaster(heartbeat_ms=300)
    await m.bind()
    nursery.start_soon(m.serve)
    a = agent_factory({**_config(m.port), **cfg})
    await a.start()
    await m.wait_for(lambda: 1 in m.agents and m.agents[1].heartbeats >= 1)
    return m, a


async def test_register_heartbeat_and_tasks(agent_factory) -> None:  # type: ignore[no-untyped-def]
    async with trio.open_nursery() as n:
        m, a = await _start(n, agent_factory)
        rec = m.agents[1]
        reg = rec.registrations[0]
        assert reg.name == "mp-test" and reg.protocol_version == 1
        assert list(reg.executors) == [pb.MICROPYTHON]
        assert len(reg.nonce) == 8 and m.refused_registrations == 0
        assert [d.name for d in reg.resources.devices] == ["temp"]
        await m.wait_for(lambda: rec.heartbeats >= 3)

        # A task that finishes, publishing three readings; the launch is sent twice.
        sha = m.add_module(SAMPLER)
        launch = pb.Launch(task=1, spec=_mp_task(sha, len(SAMPLER), "3"))
        m.command(1, launch=launch)
        m.command(1, launch=launch)
        await m.wait_for(lambda: pb.FINISHED in m.states(1, 1))
        assert m.states(1, 1) == [pb.STARTING, pb.RUNNING, pb.FINISHED]
        assert [p.data for p in rec.publishes] == [b"20.5", b"21.0", b"21.5"]
        assert {p.topic for p in rec.publishes} == {"temp"}
        fin = rec.statuses[-1]
        assert fin.message == "done 3\n"

        # An exception: FAILED TRAPPED with its text.
        sha2 = m.add_module(FAILER)
        m.command(1, launch=pb.Launch(task=2, spec=_mp_task(sha2, len(FAILER))))
        await m.wait_for(lambda: pb.FAILED in m.states(1, 2))
        st = [s for s in rec.statuses if s.task == 2][-1]
        assert st.reason == pb.TRAPPED and "ValueError: boom" in st.message

        # A kill of a running task, of an ended one, of an unknown one.
        sha3 = m.add_module(SLEEPER)
        m.command(1, launch=pb.Launch(task=3, spec=_mp_task(sha3, len(SLEEPER))))
        await m.wait_for(lambda: pb.RUNNING in m.states(1, 3))
        m.command(1, kill=pb.Kill(task=3))
        m.command(1, kill=pb.Kill(task=1))
        m.command(1, kill=pb.Kill(task=99))
        await m.wait_for(lambda: m.states(1, 99) and pb.KILLED in m.states(1, 3)
                         and len(m.states(1, 1)) == 4)
        assert m.states(1, 1)[-1] == pb.FINISHED  # a kill after the end re-reports the end
        k3 = [s for s in rec.statuses if s.task == 3][-1]
        assert (k3.state, k3.reason) == (pb.KILLED, pb.KILL_REQUESTED)
        k99 = [s for s in rec.statuses if s.task == 99][-1]
        assert (k99.state, k99.reason) == (pb.KILLED, pb.KILLED_BEFORE_LAUNCH)

        # Task 5 reuses the cached SLEEPER module (the cache is by hash, not by declared size):
        # nothing is downloaded. It ends before the heap hog below: MicroPython's heap is not
        # compacted, and a task beside the hog, or right after it in the heap the hog left in
        # pieces, may meet MemoryError (each seen once, under load).
        served = len(m.block_answers)
        m.command(1, launch=pb.Launch(task=5, spec=_mp_task(sha3, len(SAMPLER))))
        await m.wait_for(lambda: pb.RUNNING in m.states(1, 5))
        assert len(m.block_answers) == served
        m.command(1, kill=pb.Kill(task=5))
        await m.wait_for(lambda: pb.KILLED in m.states(1, 5))

        # WASM is not this agent's; a wrong hash, a missing module, a heap hog.
        m.command(1, launch=pb.Launch(task=4, spec=pb.TaskSpec(wasm=pb.WasmTask(sha256=sha))))
        bogus = b"\0" + sha3[1:]
        m.modules[bogus] = SAMPLER  # served under a name it does not hash to
        m.command(1, launch=pb.Launch(task=6, spec=_mp_task(bogus, len(SAMPLER))))
        m.command(1, launch=pb.Launch(task=7, spec=_mp_task(b"\1" * 32, 10)))
        shah = m.add_module(HOG)
        m.command(1, launch=pb.Launch(task=8, spec=_mp_task(shah, len(HOG))))
        await m.wait_for(lambda: all(m.states(1, t) and m.states(1, t)[-1] >= pb.FINISHED
                                     for t in (4, 6, 7, 8)), timeout=20)
        last = {s.task: s for s in rec.statuses}
        assert (last[4].state, last[4].reason) == (pb.ERROR, pb.UNSUPPORTED_EXECUTOR)
        assert (last[6].state, last[6].reason) == (pb.ERROR, pb.MODULE_HASH_MISMATCH)
        assert (last[7].state, last[7].reason) == (pb.ERROR, pb.MODULE_UNAVAILABLE)
        assert (last[8].state, last[8].reason) == (pb.FAILED, pb.MEMORY_LIMIT)

        # The agent is alive after all of it and its update ids were applied in order.
        beats = rec.heartbeats
        await m.wait_for(lambda: rec.heartbeats > beats + 1)
        assert a.alive(), a.output()
        ids = sorted(u.update_id for u in [*rec.statuses, *rec.publishes])
        assert ids == list(range(1, len(ids) + 1))
        n.cancel_scope.cancel()


async def test_restarts_and_garbage(agent_factory) -> None:  # type: ignore[no-untyped-def]
    async with trio.open_nursery() as n:
        m, a = await _start(n, agent_factory)
        rec = m.agents[1]

        # Garbage from the master's address: not CoAP, CoAP with bad CBOR, a reply to nothing.
        for junk in (b"", b"\xff" * 40, b"\x40", b"\x62\x44\x00\x01\xab\xcd\xff\xa1\x01",
                     b"\x62\x44\x00\x01\xab\xcd\xc1\x3c\xff\x9f\x9f\x9f",
                     b"\x52\x45\x12\x34\x00\x00\xff\xa0"):
            await m.inject(junk)
        beats = rec.heartbeats
        await m.wait_for(lambda: rec.heartbeats >= beats + 2)

        # The agent restarts: same agent_id and secret, a protected re-registration, at a
        # Partial IV past every one it sent before (the state file's bound), though steady
        # heartbeats wrote nothing: a datagram recorded before the restart, replayed from
        # elsewhere (so no retransmission cache answers it), stays refused with an unprotected
        # 4.01 and changes nothing (issues 10, 16).
        sha = m.add_module(SLEEPER)
        m.command(1, launch=pb.Launch(task=1, spec=_mp_task(sha, len(SLEEPER))))
        await m.wait_for(lambda: pb.RUNNING in m.states(1, 1))
        await a.stop()
        old_seq, old_heartbeat = rec.last_seq, rec.calls[-1]
        await a.start()
        await m.wait_for(lambda: len(rec.registrations) == 2)
        again = rec.registrations[1]
        assert not again.nonce and again.update_next == rec.update_ack + 1
        assert list(m.agents) == [1]
        assert rec.reg_seqs[1] > old_seq
        beats = rec.heartbeats
        await m.wait_for(lambda: rec.heartbeats > beats)
        last = rec.last_seq
        answer = m._datagram(old_heartbeat, ("192.0.2.1", 9))
        assert answer is not None
        refused = decode_message_untrusted(answer)
        assert refused.code == 0x81 and refused.opt(9) is None
        assert rec.heartbeats == beats + 1 and rec.last_seq == last

        # The master goes silent (a restart) for longer than the CoAP retransmission budget;
        # the agent keeps trying and carries on, and its queued update gets through once.
        m.deaf = True
        m.command(1, kill=pb.Kill(task=5))  # queued while it is down
        await trio.sleep(2.0)
        m.deaf = False
        await m.wait_for(lambda: m.states(1, 5) == [pb.KILLED], timeout=20)
        assert a.alive(), a.output()

        # The master loses everything (a wiped data directory): the agent's protected calls are
        # refused, its re-registration too, so it registers afresh with the token's key and numbers
        # its updates from 1 again (a fresh nonce, a new secret); the task of its old identity ends without a report.
        m.agents.clear()
        await m.wait_for(lambda: 1 in m.agents and m.agents[1].heartbeats >= 1, timeout=20)
        fresh = m.agents[1]
        assert len(fresh.registrations[0].nonce) == 8 and len(m.nonces) == 2
        assert fresh.secret != rec.secret
        sha = m.add_module(SAMPLER)
        m.command(1, launch=pb.Launch(task=1, spec=_mp_task(sha, len(SAMPLER), "1")))
        await m.wait_for(lambda: pb.FINISHED in m.states(1, 1))
        assert [s.update_id for s in fresh.statuses][:1] == [1]
        assert m.states(1, 1) == [pb.STARTING, pb.RUNNING, pb.FINISHED]
        n.cancel_scope.cancel()


@pytest.mark.parametrize("observe", [False, True])
async def test_refused_updates_are_dropped_transient_ones_retried(  # type: ignore[no-untyped-def]
        agent_factory, observe: bool) -> None:
    async with trio.open_nursery() as n:
        # observe off: heartbeats are POSTs to `a`, as to a master without `c`
        m, a = await _start(n, agent_factory, observe=observe)
        rec = m.agents[1]
        # Update 1 (task 1's KILLED) is refused for good; update 2 is refused twice as
        # UNAVAILABLE (transient) and then applied; the refused one must not block the rest.
        m.refuse[1] = (pb.NOT_FOUND, 1)
        m.refuse[2] = (pb.UNAVAILABLE, 2)
        m.command(1, kill=pb.Kill(task=1))
        await m.wait_for(lambda: rec.refused == [1])
        m.command(1, kill=pb.Kill(task=2))
        m.command(1, kill=pb.Kill(task=3))
        await m.wait_for(lambda: m.states(1, 3) == [pb.KILLED], timeout=15)
        # the refused update is gone; the next one took its id and went through after retries
        assert m.states(1, 1) == []
        assert rec.refused == [1, 2, 2]
        assert [(s.update_id, s.task) for s in rec.statuses] == [(1, 2), (2, 3)]
        # a BAD_REQUEST is final too
        m.refuse[3] = (pb.BAD_REQUEST, 1)
        m.command(1, kill=pb.Kill(task=4))
        m.command(1, kill=pb.Kill(task=5))
        await m.wait_for(lambda: m.states(1, 5) == [pb.KILLED])
        assert m.states(1, 4) == [] and rec.statuses[-1].update_id == 3
        assert "refused for good" in a.output()
        n.cancel_scope.cancel()


async def test_observe_pushes_commands_before_the_next_heartbeat(agent_factory) -> None:  # type: ignore[no-untyped-def]
    async with trio.open_nursery() as n:
        m = ScriptedMaster(heartbeat_ms=30_000)
        await m.bind()
        n.start_soon(m.serve)
        a = agent_factory(_config(m.port))
        await a.start()
        await m.wait_for(lambda: 1 in m.agents and m.agents[1].observer is not None)
        rec = m.agents[1]
        beats = rec.heartbeats
        t0 = trio.current_time()
        m.command(1, kill=pb.Kill(task=7))
        await m.wait_for(lambda: m.states(1, 7) == [pb.KILLED], timeout=10)
        # well within the 30 s heartbeat interval: the push carried it, and the agent's
        # command_ack followed at once (a heartbeat of its own, not the periodic one)
        assert trio.current_time() - t0 < 30.0 / 10
        await m.wait_for(lambda: rec.command_ack == 1)
        assert trio.current_time() - t0 < 30.0 / 10
        assert rec.pushes == 1 and rec.heartbeats == beats + 1
        n.cancel_scope.cancel()


async def test_a_reply_and_a_notification_queued_together_are_both_read(agent_factory) -> None:  # type: ignore[no-untyped-def]
    # The answer to a heartbeat (FETCH c) and a notification carrying a new command wait in
    # the agent's socket together (sent while the agent is stopped). Both must be read as
    # two datagrams: the reply without a retransmission, the command at once (the periodic
    # heartbeat is 30 s away, and only the notification carries it).
    async with trio.open_nursery() as n:
        m = ScriptedMaster(heartbeat_ms=30_000)
        await m.bind()
        n.start_soon(m.serve)
        a = agent_factory({**_config(m.port), "ack_timeout_ms": 2000})
        await a.start()
        await m.wait_for(lambda: 1 in m.agents and m.agents[1].observer is not None)
        rec = m.agents[1]
        m.hold = a.hold

        def glue(path: list[str], answer: bytes) -> bool:
            if path != ["c"]:
                return False
            m.command(1, push=False, kill=pb.Kill(task=8))  # not in this answer: built before
            return True

        m.glue = glue
        # A pushed kill makes the agent report and heartbeat its command_ack at once; the
        # answer to that heartbeat is the one glued to the notification with kill 8.
        m.command(1, kill=pb.Kill(task=7))
        await m.wait_for(lambda: m.states(1, 8) == [pb.KILLED], timeout=10)
        assert m.glue is None and m.states(1, 7) == [pb.KILLED]
        await m.wait_for(lambda: rec.command_ack == 2)
        assert m.retransmissions == 0
        assert rec.pushes == 2 and a.output().count("edgerm: pushed") == 2, a.output()
        assert "dropped" not in a.output()
        n.cancel_scope.cancel()


async def test_a_final_block_queued_with_a_notification_is_read_alone(agent_factory) -> None:  # type: ignore[no-untyped-def]
    # The last Block2 block of a module (shorter than the block size) and a notification wait
    # in the agent's socket together. Read as one datagram, the block would be the module's
    # tail plus the notification: short enough to pass for a final block, and the download
    # would end in MODULE_HASH_MISMATCH.
    async with trio.open_nursery() as n:
        m = ScriptedMaster(heartbeat_ms=30_000)
        await m.bind()
        n.start_soon(m.serve)
        a = agent_factory({**_config(m.port), "ack_timeout_ms": 2000, "block_szx": 4})
        await a.start()
        await m.wait_for(lambda: 1 in m.agents and m.agents[1].observer is not None)
        rec = m.agents[1]
        module = SAMPLER + b"#" * (256 + 10 - len(SAMPLER))  # two blocks of 256, the last 10 B
        assert len(module) == 266
        sha = m.add_module(module)
        m.hold = a.hold

        def glue(path: list[str], answer: bytes) -> bool:
            if path[:1] != ["m"] or m.last_block2 & 8:
                return False  # not the final block (its Block2 is inside OSCORE)
            m.command(1, push=False, kill=pb.Kill(task=99))
            return True

        m.glue = glue
        m.command(1, launch=pb.Launch(task=1, spec=_mp_task(sha, len(module), "2")))
        await m.wait_for(lambda: m.states(1, 1)[-1:] > [pb.RUNNING] and m.states(1, 99),
                         timeout=10)
        assert m.glue is None
        assert m.states(1, 1) == [pb.STARTING, pb.RUNNING, pb.FINISHED], rec.statuses
        assert m.states(1, 99) == [pb.KILLED]
        assert m.retransmissions == 0
        assert rec.pushes == 2 and a.output().count("edgerm: pushed") == 2, a.output()
        n.cancel_scope.cancel()


async def test_a_module_block_answered_5_03_is_asked_for_again(agent_factory) -> None:  # type: ignore[no-untyped-def]
    # A gateway answers a plain 5.03 while its uplink is being retried, here five times in a
    # row (23 s: a lossy uplink's retries take that long): the download pauses and goes on
    # from that block; the task runs.
    async with trio.open_nursery() as n:
        m, a = await _start(n, agent_factory)
        module = SAMPLER + b"#" * (64 * 3 - len(SAMPLER))  # three blocks of 64
        sha = m.add_module(module)
        m.unavailable_blocks = 5
        m.command(1, launch=pb.Launch(task=1, spec=_mp_task(sha, len(module), "2")))
        await m.wait_for(lambda: m.states(1, 1)[-1:] == [pb.FINISHED], timeout=60)
        assert m.states(1, 1) == [pb.STARTING, pb.RUNNING, pb.FINISHED]
        assert m.unavailable_blocks == 0
        n.cancel_scope.cancel()


async def test_forged_unauthenticated_replies_are_rate_limited(agent_factory) -> None:  # type: ignore[no-untyped-def]
    from edgerm.coap.message import decode_message_untrusted, encode_message
    from edgerm.wire import encode

    async with trio.open_nursery() as n:
        m, a = await _start(n, agent_factory)
        rec = m.agents[1]
        regs = len(rec.registrations)
        # A spoofer answers every heartbeat (a FETCH: it cannot read the protected call, but
        # the outer code shows it) with an unprotected 4.01 (it has the token and message id;
        # the agent believes the first matching datagram). The agent's re-registrations are
        # protected and go through, but each next heartbeat is refused again.
        forged = encode(pb.AgentReply(error=pb.Error(code=pb.UNAUTHENTICATED, message="x")))
        real = m._datagram
        sent = [0]

        def spoof(data: bytes, addr: object) -> bytes | None:
            req = decode_message_untrusted(data)
            if req.mtype == 0 and req.code == 5 and req.payload:
                sent[0] += 1
                return encode_message(2, 0x81, req.mid, req.token, [], forged)
            return real(data, addr)

        m._datagram = spoof  # type: ignore[method-assign]
        await trio.sleep(4.0)
        m._datagram = real  # type: ignore[method-assign]
        # Heartbeats kept going (every 300 ms at most), but re-registrations came at most once
        # per 1, 2, 4... s: at 0, 1, 3 s, not after every forged reply.
        rereg = len(rec.registrations) - regs
        assert sent[0] >= 8, sent
        assert 1 <= rereg <= 3, (rereg, sent)
        assert "4.01 ignored" in a.output()
        # once the spoofer is gone, the agent carries on under its own identity
        beats = rec.heartbeats
        await m.wait_for(lambda: rec.heartbeats > beats + 2)
        assert list(m.agents) == [1] and a.alive()
        n.cancel_scope.cancel()


STEADY = """
import sys
sys.path.insert(0, CODE)
import asyncio
import gc
import agent
import coap

async def watch():
    seen = 0
    st = agent._s  # indices: agent.py's _S_SEQ, _S_REGISTERED, _S_QUEUE consts
    while True:
        await asyncio.sleep_ms(2)
        if st[9] != seen and not coap.busy and st[10] and not st[4]:
            seen = st[9]
            gc.collect()
            print("HEAP", seen, gc.mem_alloc())

async def main():
    asyncio.create_task(watch())
    await agent.run(sys.argv[1])

asyncio.run(main())
"""


@pytest.mark.parametrize("observe", [True, False])
async def test_a_steady_heartbeat_allocates_nothing_that_survives(  # type: ignore[no-untyped-def]
        mpy_build, tmp_path, observe: bool) -> None:
    # The heap in use (after gc.collect) right after each heartbeat, once registered with
    # nothing queued: 40 heartbeats later, its floor is not a byte higher than after the first
    # ones (a sample can catch the loop at another point, with another frame alive; anything a
    # heartbeat left behind would raise every later sample). Observe (FETCH c) and POST a.
    import json
    import re
    import subprocess

    from .conftest import MICROPYTHON

    m = ScriptedMaster(heartbeat_ms=20)
    await m.bind()
    cfg = {**_config(m.port), "heartbeat_ms": 20, "observe": observe, "log_level": 0,
           "ack_timeout_ms": 2000,
           "state": str(tmp_path / "state.cbor"), "cache": str(tmp_path / "cache")}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "steady.py").write_text(f"CODE = {str(mpy_build)!r}\n" + STEADY)
    out = tmp_path / "steady.log"
    async with trio.open_nursery() as n:
        n.start_soon(m.serve)
        with open(out, "wb") as f:
            proc = await trio.lowlevel.open_process(
                [str(MICROPYTHON), "-X", "heapsize=64k", str(tmp_path / "steady.py"),
                 str(tmp_path / "config.json")], stdout=f, stderr=subprocess.STDOUT)
        try:
            await m.wait_for(lambda: 1 in m.agents and m.agents[1].heartbeats >= 50, timeout=30)
        finally:
            proc.kill()
            await proc.wait()
        n.cancel_scope.cancel()
    heap = [int(b) for _, b in re.findall(r"HEAP (\d+) (\d+)", out.read_text())]
    assert len(heap) >= 45, out.read_text()[-2000:]
    assert min(heap[-10:]) <= min(heap[5:15]), heap


async def test_a_wrong_token_is_refused_and_the_agent_keeps_trying(agent_factory) -> None:  # type: ignore[no-untyped-def]
    # The master knows another token: every first registration is refused (unsigned 4.01),
    # each with a fresh nonce, and the agent backs off and carries on; none gets registered.
    async with trio.open_nursery() as n:
        m = ScriptedMaster(token="the-right-token", heartbeat_ms=300)
        await m.bind()
        n.start_soon(m.serve)
        a = agent_factory({**_config(m.port), "token": "a-wrong-token"})
        await a.start()
        await m.wait_for(lambda: m.refused_registrations >= 3, timeout=15)
        assert m.agents == {} and m.nonces == set()
        assert a.alive(), a.output()
        with trio.fail_after(5):  # the agent logs each refusal once it has read it
            while a.output().count("registration refused: 2") < 3:
                await trio.sleep(0.05)
        assert "registered" not in a.output().replace("registration refused", "")
        n.cancel_scope.cancel()


async def test_a_registered_reply_not_signed_with_the_derived_secret_is_dropped(  # type: ignore[no-untyped-def]
        agent_factory) -> None:
    # An impostor master that accepts the first registration but lacks the token: it cannot
    # derive the secret, so its Registered (signed with a secret of its own, as the master of
    # the old protocol sent it) is dropped, and the agent registers with the real one later.
    from edgerm.wire import decode, derive_secret, sign

    async with trio.open_nursery() as n:
        m = ScriptedMaster(heartbeat_ms=300)
        await m.bind()
        real = m._agent_call
        forged = [0]

        def impostor(payload: bytes, observer: object = None,
                     protected: object = None) -> tuple[int, bytes]:
            call = decode(pb.AgentCall, payload)
            if call.WhichOneof("call") == "register" and not call.agent_id and forged[0] < 3:
                forged[0] += 1
                nonce = b"\x55" * 8
                reply = pb.AgentReply(seq=call.seq, registered=pb.Registered(
                    agent_id=7, nonce=nonce, heartbeat_ms=300))
                return 0x44, sign(reply, derive_secret("not-the-token", call.register.nonce,
                                                       nonce))
            return real(payload, observer, protected)  # type: ignore[arg-type]

        m._agent_call = impostor  # type: ignore[method-assign]
        n.start_soon(m.serve)
        a = agent_factory(_config(m.port))
        await a.start()
        await m.wait_for(lambda: 1 in m.agents and m.agents[1].heartbeats >= 2, timeout=20)
        assert forged[0] == 3
        assert a.output().count("unauthenticated reply dropped") >= 3, a.output()
        assert "registered 7" not in a.output() and "registered 1" in a.output()
        n.cancel_scope.cancel()
