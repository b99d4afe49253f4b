"""The Zephyr agent's C core, built as a Linux program (firmware/zephyr/port/posix) with each WASM
executor (wasm3 in a child process per task; WAMR on threads, the device's executor), against
the real master (`python -m edgerm_master`) over loopback UDP, with a framework on the real
WebSocket API: register (the token never on the wire: the first Register carries the agent's
nonce and is signed with SHA-256(token), the master answers with its nonce, and both derive the
secret, which never crosses the link either; an agent with another token is refused), launch
the example WASM tasks, receive their published results, a trap and a non-zero exit, set a
simulated actuator the task claimed, kill a runaway loop, garbage datagrams, an agent restart
that re-registers with the same identity, and a power cut just after a task ended whose end the
master had not acknowledged (the saved update queue brings it back)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket_url

from edgerm import oscore
from edgerm.wire import (
    DecodeError,
    decode,
    derive_secret,
    pb,
    token_key,
    verify,
)
from edgerm_master.testing import ScriptedFramework
from edgerm_master.testing_io import MasterProcess, UdpRelay, WsFrameworkClient, end_process

from .conftest import CONFORMANCE, EXAMPLES

NAME = "zephyr-posix-e2e"
TOKEN = "tok"


class RecordingRelay(UdpRelay):
    """The relay, keeping every datagram it forwards: `up` from the agent, `down` to it."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(target)
        self.up: list[bytes] = []
        self.down: list[bytes] = []

    async def _up(self) -> None:
        while True:
            data, self.client = await self.front.recvfrom(65536)
            self.up.append(data)
            if self.forwarding:
                await self.back.sendto(data, self.target)

    async def _down(self) -> None:
        while True:
            data, _ = await self.back.recvfrom(65536)
            self.down.append(data)
            if self.forwarding and not self.drop_down and self.client is not None:
                await self.front.sendto(data, self.client)


def _coap_payload(d: bytes) -> bytes:
    """The payload of a CoAP datagram (RFC 7252 section 3), b"" when it has none or is not one."""
    try:
        if len(d) < 4 or d[0] >> 6 != 1:
            return b""
        i = 4 + (d[0] & 15)
        while i < len(d):
            if d[i] == 0xFF:
                return d[i + 1:]
            delta, length = d[i] >> 4, d[i] & 15
            i += 1
            i += {13: 1, 14: 2}.get(delta, 0)
            if length == 13:
                length, i = d[i] + 13, i + 1
            elif length == 14:
                length, i = int.from_bytes(d[i:i + 2], "big") + 269, i + 2
            i += length
    except IndexError:
        pass
    return b""


def _messages(datagrams: list[bytes], cls: Any) -> list[Any]:
    out = []
    for d in datagrams:
        payload = _coap_payload(d)
        if payload:
            try:
                out.append(decode(cls, payload))
            except DecodeError:
                pass
    return out


def _protected(datagrams: list[bytes], secret: bytes, agent_id: int
               ) -> list[tuple[pb.AgentCall, int, bytes]]:
    """The agent's OSCORE calls among the datagrams, each verified with the master's context
    for (secret, agent_id): (AgentCall, seq = Partial IV, datagram), in order."""
    ctx = oscore.master_context(secret, agent_id)
    out = []
    for d in datagrams:
        try:
            _, piv, msg = oscore.unprotect_request_datagram(
                lambda kid: ctx if kid == ctx.recipient_id else None, d)
            call = decode(pb.AgentCall, msg.payload) if msg.payload else None
        except (oscore.OscoreError, DecodeError, ValueError):
            continue
        if call is not None:
            out.append((call, piv, d))
    return out


async def _replay(remote: tuple[str, int], datagram: bytes) -> int:
    """Send a recorded datagram to the master afresh (another socket, so not a CoAP
    retransmission it answers from its cache); the code of its answer."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with sock:
        await sock.bind(("127.0.0.1", 0))
        await sock.sendto(datagram, remote)
        with trio.fail_after(5):
            data, _ = await sock.recvfrom(2048)
    return data[1]


def _state_secret(path: Path) -> tuple[int, bytes]:
    fields = dict(kv.split("=", 1) for kv in path.read_text().split())
    return int(fields["agent_id"]), bytes.fromhex(fields["secret"])


class PosixAgent:
    """The agent binary as a subprocess; its JSON-line events are read from a log file."""

    def __init__(self, binary: Path, master: tuple[str, int], workdir: Path,
                 token: str = TOKEN, name: str = NAME) -> None:
        self.binary = binary
        self.master = master
        self.token = token
        self.name = name
        self.state = workdir / f"{name}.state" if name != NAME else workdir / "agent.state"
        self.log = workdir / f"{name}.log" if name != NAME else workdir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(self.binary), "--master", f"{self.master[0]}:{self.master[1]}",
                 "--token", self.token, "--state", str(self.state), "--name", self.name,
                 "--sensor", "temp=21.5:Cel", "--actuator", "relay=0:1"],
                stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        return end_process(self.proc)

    def power_cut(self) -> None:
        """SIGKILL: nothing is flushed or saved on the way down."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


async def _subscribed(ws: Any) -> WsFrameworkClient:
    """A framework ("fw") subscribed over the WebSocket `ws` to a master's /framework."""
    c = WsFrameworkClient(ws, ScriptedFramework(name="fw", token="framework-token"))
    await c.send(c.fw.subscribe())
    await c.until_kind("subscribed")
    return c


async def _until(c: WsFrameworkClient, pred: Any, timeout: float = 20.0) -> None:
    """Receive events until `pred()` holds, acknowledging every status update on the way."""
    try:
        with trio.fail_after(timeout):
            while not pred():
                ev = await c.receive()
                if ev.WhichOneof("event") == "update" and ev.update.uuid:
                    await c.send(c.fw.acknowledge(ev.update))
    except trio.TooSlowError:
        raise AssertionError(f"timed out; offers {list(c.fw.offers.values())} updates "
                             f"{list(c.fw.updates)} outputs {list(c.fw.outputs)} "
                             f"errors {c.fw.errors}") from None


def _answer(fw: ScriptedFramework, before: int) -> pb.FrameworkEvent | None:
    for ev in fw.events[before:]:
        if ev.call_id == fw.call_id:
            return ev
    return None


async def _upload(c: WsFrameworkClient, data: bytes) -> bytes:
    before = len(c.fw.events)
    await c.send(c.fw.upload(data, pb.WASM_MODULE, "t"))
    await _until(c, lambda: _answer(c.fw, before) is not None)
    ev = _answer(c.fw, before)
    assert ev is not None and ev.WhichOneof("event") == "module_stored", ev
    return bytes(ev.module_stored.sha256)


def _spec(wasm: bytes, sha: bytes, *args: str, devices: tuple[str, ...] = (),
          timeout_s: int = 0) -> pb.TaskSpec:
    return pb.TaskSpec(name="w", resources=pb.Resources(
        cpus=0.1, mem_mb=0.0625, devices=[pb.Device(name=d, shares=1) for d in devices]),
        wasm=pb.WasmTask(sha256=sha, size=len(wasm), args=list(args), timeout_s=timeout_s))


def _fitting(fw: ScriptedFramework, spec: pb.TaskSpec) -> list[str]:
    """Ids of our agent's offers, when together they hold what `spec` needs (the master may
    offer an agent's resources in several pieces; one accept may name them all)."""
    need = spec.resources
    mine = [o for o in fw.offers.values() if o.agent_name == NAME]
    cpus = sum(o.resources.cpus for o in mine)
    mem = sum(o.resources.mem_mb for o in mine)
    shares: dict[str, int] = {}
    for o in mine:
        for d in o.resources.devices:
            # (shares 0: an exclusive device, such as an actuator: one unit)
            shares[d.name] = shares.get(d.name, 0) + (d.shares or 1)
    ok = (cpus >= need.cpus - 1e-9 and mem >= need.mem_mb - 1e-9
          and all(shares.get(d.name, 0) >= d.shares for d in need.devices))
    return [o.offer_id for o in mine] if ok else []


async def _launch(c: WsFrameworkClient, task_id: str, spec: pb.TaskSpec) -> None:
    fw = c.fw
    await _until(c, lambda: bool(_fitting(fw, spec)))
    before = len(fw.events)
    await c.send(fw.accept(_fitting(fw, spec), [pb.TaskInfo(task_id=task_id, spec=spec)]))
    await _until(c, lambda: _answer(fw, before) is not None)
    ev = _answer(fw, before)
    assert ev is not None and ev.WhichOneof("event") == "accepted", ev


def _last(fw: ScriptedFramework, task_id: str) -> pb.TaskStatus:
    return [u for u in fw.updates if u.task_id == task_id][-1]


def _wasm(name: str) -> bytes:
    return (EXAMPLES / "build" / f"{name}.wasm").read_bytes()


async def test_posix_agent_against_the_real_master(posix_agent: Path, tmp_path: Path) -> None:
    master = MasterProcess(str(tmp_path / "master"), agent_token=TOKEN, heartbeat_ms=300)
    await trio.to_thread.run_sync(master.start)
    relay = RecordingRelay(master.coap)
    await relay.bind()
    agent = PosixAgent(posix_agent, ("127.0.0.1", relay.port), tmp_path)
    intruder = PosixAgent(posix_agent, master.coap, tmp_path, token="not-the-token",
                          name="intruder")
    try:
        async with trio.open_nursery() as nursery, \
                open_websocket_url(f"ws://{master.ws[0]}:{master.ws[1]}/framework") as ws:
            nursery.start_soon(relay.run)
            agent.start()
            c = await _subscribed(ws)
            fw = c.fw

            # Registered: an offer for the agent, WASM only, its sensor as a device.
            await _until(c, lambda: any(o.agent_name == NAME for o in fw.offers.values()))
            offer = next(o for o in fw.offers.values() if o.agent_name == NAME)
            agent_id = offer.agent_id
            assert list(offer.executors) == [pb.WASM]
            assert sorted((d.name, d.kind) for d in offer.resources.devices) == \
                [("relay", pb.ACTUATOR), ("temp", pb.SENSOR)]
            # (The master offers the agent as it answers: the answer may still be on its way.)
            with trio.fail_after(10):
                while not any(e.get("state") == "active" for e in agent.events()):
                    await trio.sleep(0.02)
            assert agent.state.exists()  # the identity is persisted

            # The first registration: a fresh 8-byte nonce, signed with SHA-256(token), the
            # token nowhere on the wire; the master's reply carries its nonce and is signed
            # with the secret both derive, which the agent keeps and which was never sent.
            firsts = [m for m in _messages(relay.up, pb.AgentCall)
                      if m.HasField("register") and m.agent_id == 0]
            assert len(firsts) == 1, firsts
            first = firsts[0]
            assert len(first.register.nonce) == 8 and len(first.mac) == 8
            assert verify(first, token_key(TOKEN))
            assert not any(TOKEN.encode() in d for d in relay.up)
            registered = [m for m in _messages(relay.down, pb.AgentReply)
                          if m.HasField("registered") and m.seq == first.seq]
            assert registered and len(registered[-1].registered.nonce) == 8
            reply = registered[-1]
            assert reply.registered.agent_id == agent_id
            secret = derive_secret(TOKEN, first.register.nonce, reply.registered.nonce)
            assert verify(reply, secret)
            assert _state_secret(agent.state) == (agent_id, secret)
            assert not any(secret in d for d in relay.up + relay.down)

            # An agent given another token is refused (4.01) and never gets an identity.
            intruder.start()
            with trio.fail_after(10):
                while not any(e.get("event") == "state" for e in intruder.events()):
                    await trio.sleep(0.05)
            await trio.sleep(1.5)
            assert intruder.alive(), intruder.log.read_text()[-3000:]
            assert [e["state"] for e in intruder.events()
                    if e.get("event") == "state"] == ["registering"]
            assert _state_secret(intruder.state)[0] == 0
            assert not any(o.agent_name == "intruder" for o in fw.offers.values())
            intruder.stop()

            # The sampler reads the sensor it holds and publishes each reading (an f64).
            sampler = _wasm("sampler")
            sha = await _upload(c, sampler)
            await _launch(c, "s1", _spec(sampler, sha, "temp", "3", devices=("temp",)))
            await _until(c, lambda: pb.FINISHED in fw.states("s1"))
            readings = [struct.unpack("<d", o.data)[0] for o in fw.outputs if o.task_id == "s1"]
            assert readings == [21.5, 21.5, 21.5]
            assert fw.states("s1")[-2:] == [pb.RUNNING, pb.FINISHED]
            # Every later call is OSCORE with the context of that secret (kid = agent id, seq
            # = Partial IV: no agent_id, seq or mac inside), the module download included; no
            # reading and no module byte crosses the link in clear.
            later = _protected(relay.up, secret, agent_id)
            assert len(later) >= 5
            assert all(not (m.agent_id or m.seq or m.mac) for m, _, _ in later)
            assert not _messages(relay.up, pb.AgentCall)[1:], "a plain call after registering"
            assert not any(struct.pack("<d", 21.5) in d for d in relay.up + relay.down)
            assert not any(sampler[i:i + 16] in d for d in relay.down
                           for i in range(0, len(sampler) - 16, 16))

            # hello publishes its arguments in order; the cached module needs no download.
            hello = _wasm("hello")
            hsha = await _upload(c, hello)
            await _launch(c, "h1", _spec(hello, hsha, "a", "bc"))
            await _until(c, lambda: pb.FINISHED in fw.states("h1"))
            assert [o.data for o in fw.outputs if o.task_id == "h1"] == [b"a", b"bc"]

            # An actuator the task claimed is set, and the agent records it (abi_calls sets
            # the relay to 1, tries 7 and NaN, out of range, then sets it to 0).
            calls = (CONFORMANCE / "build" / "abi_calls.wasm").read_bytes()
            csha = await _upload(c, calls)
            await _launch(c, "a1", _spec(calls, csha, "alpha", "b", devices=("temp", "relay")))
            await _until(c, lambda: pb.FINISHED in fw.states("a1"))
            assert [(e["name"], e["value"]) for e in agent.events()
                    if e.get("event") == "actuator"] == [("relay", 1), ("relay", 0)]

            # A sensor the task does not hold is denied: sampler exits 1 and says why.
            await _launch(c, "s2", _spec(sampler, sha, "temp", "1"))
            await _until(c, lambda: pb.FAILED in fw.states("s2"))
            s2 = _last(fw, "s2")
            assert (s2.reason, s2.exit_code) == (pb.EXITED_NONZERO, 1)
            assert "read_sensor failed: -2" in s2.message

            # A trap: FAILED TRAPPED with the trap text.
            trap = _wasm("trap")
            tsha = await _upload(c, trap)
            await _launch(c, "t1", _spec(trap, tsha))
            await _until(c, lambda: pb.FAILED in fw.states("t1"))
            assert _last(fw, "t1").reason == pb.TRAPPED
            assert "trap" in _last(fw, "t1").message

            # A runaway loop is killed on request, and times out when given a limit.
            spin = _wasm("spin")
            ssha = await _upload(c, spin)
            await _launch(c, "k1", _spec(spin, ssha))
            await _until(c, lambda: pb.RUNNING in fw.states("k1"))
            await c.send(fw.kill("k1"))
            await _until(c, lambda: pb.KILLED in fw.states("k1"))
            await _launch(c, "k2", _spec(spin, ssha, timeout_s=1))
            await _until(c, lambda: pb.FAILED in fw.states("k2"))
            assert _last(fw, "k2").reason == pb.TIMEOUT

            # Garbage from the master's address: dropped, counted, nothing changes. (An empty
            # datagram, a lone byte run, a truncated header, a reply with a bogus token, a CON
            # request, a 2.04 whose payload is deeply nested CBOR.)
            for junk in (b"", b"\xff" * 40, b"\x40\x00", b"\x62\x44\x00\x01\xab\xcd\xff\xa1",
                         b"\x40\x02\x00\x09\xb1a", b"\x60\x44\x00\x01\xff" + b"\x81" * 300):
                await relay.inject(junk)
            await _launch(c, "h2", _spec(hello, hsha, "still here"))
            await _until(c, lambda: pb.FINISHED in fw.states("h2"))

            # The agent restarts: the same identity re-registers; a task it was running does
            # not stay RUNNING; new tasks run.
            await _launch(c, "k3", _spec(spin, ssha))
            await _until(c, lambda: pb.RUNNING in fw.states("k3"))
            assert agent.stop() == 0
            mark = len(relay.up)
            agent.start()
            # (It may be UNREACHABLE for a moment first: three missed 300 ms heartbeats.)
            await _until(c, lambda: fw.states("k3")[-1] not in (pb.RUNNING, pb.UNREACHABLE),
                         timeout=30)
            k3 = _last(fw, "k3")
            assert (k3.state, k3.reason) == (pb.FAILED, pb.AGENT_RESTARTED), k3
            await _launch(c, "s3", _spec(sampler, sha, "temp", "1", devices=("temp",)))
            await _until(c, lambda: pb.FINISHED in fw.states("s3"))
            offer = next(o for o in fw.offers.values() if o.agent_name == NAME)
            assert offer.agent_id == agent_id
            states = [e["state"] for e in agent.events() if e.get("event") == "state"]
            assert states.count("reregistering") == 1 and states[-1] == "active", states
            # Re-registration: OSCORE with the kept secret, no nonce either way, secret kept.
            rereg_calls = [m for m, _, _ in _protected(relay.up, secret, agent_id)
                           if m.HasField("register")]
            assert rereg_calls and all(not m.register.nonce for m in rereg_calls)
            assert not [m for m in _messages(relay.down, pb.AgentReply)
                        if m.HasField("registered") and m.registered.nonce
                        and m is not reply and m.seq != first.seq]
            assert _state_secret(agent.state) == (agent_id, secret)
            assert agent.alive(), agent.log.read_text()[-3000:]

            # seq never goes back (issue 10): the re-registration is past every seq sent before
            # the restart, so a heartbeat recorded before it, replayed, is refused (4.01).
            before = _protected(relay.up[:mark], secret, agent_id)
            after = _protected(relay.up[mark:], secret, agent_id)
            old_beat = [d for m, _, d in before if m.HasField("heartbeat")][-1]
            rereg_call, rereg_seq, rereg = next(c for c in after if c[0].HasField("register"))
            assert rereg_seq > max(seq for _, seq, _ in before)
            assert pb.RUNNING not in [t.state for t in rereg_call.register.tasks]
            assert await _replay(master.coap, old_beat) == 0x81

            # A power cut just after a task ended, before the master acknowledged the end or
            # its last readings (the relay loses every reply): the update queue the agent saved
            # when the task ended comes back after the reboot; the task is re-registered as
            # FINISHED (not FAILED AGENT_RESTARTED) and every reading arrives exactly once.
            await _launch(c, "s4", _spec(sampler, sha, "temp", "4", "150", devices=("temp",)))
            await _until(c, lambda: pb.RUNNING in fw.states("s4"))
            # That re-registration listing no running task, replayed while s4 runs, is refused:
            # the master does not fail s4 as AGENT_RESTARTED (it FINISHes below).
            assert await _replay(master.coap, rereg) == 0x81
            mark = len(agent.events())
            relay.drop_down = True
            with trio.fail_after(10):
                while not any(e.get("event") == "task" and e.get("state") == pb.FINISHED
                              for e in agent.events()[mark:]):
                    await trio.sleep(0.02)
            agent.power_cut()
            assert (tmp_path / "agent.state.queue").exists()
            relay.drop_down = False
            agent.start()
            await _until(c, lambda: any(s in fw.states("s4") for s in (pb.FINISHED, pb.FAILED)),
                         timeout=30)
            assert pb.FAILED not in fw.states("s4") and _last(fw, "s4").state == pb.FINISHED
            assert [struct.unpack("<d", o.data)[0] for o in fw.outputs
                    if o.task_id == "s4"] == [21.5] * 4
            assert agent.alive(), agent.log.read_text()[-3000:]
            nursery.cancel_scope.cancel()
    finally:
        agent.stop()
        intruder.stop()
        await trio.to_thread.run_sync(master.stop)
        if os.environ.get("EDGERM_KEEP_LOGS"):
            print(agent.log.read_text())
