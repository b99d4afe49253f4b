"""Test helpers that do I/O for everyone who talks to the master: real processes and real
sockets on loopback (Trio). The sans-IO fakes they drive — `ScriptedAgent`, `ScriptedFramework`
and the in-process `Cluster` — are in `edgerm_master.testing`.

  `MasterProcess` — runs `python -m edgerm_master` on a data directory (start, stop, kill -9,
  restart on the same ports).
  `CoapAgentClient` / `WsAgentClient` — drive a `ScriptedAgent` over CoAP or WebSocket.
  `WsFrameworkClient` — drive a `ScriptedFramework` over WebSocket, pulling events.
  `Framework` / `open_framework()` — a framework over WebSocket whose own task reads events,
  acknowledges every update and records when each state arrived (end-to-end tests, benchmarks).
  `UdpRelay` — a UDP relay between an agent and the master that can cut or spoof the link.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import trio

from edgerm.coap.codes import Code
from edgerm.wire import CONTENT_FORMAT_CBOR, decode, pb
from edgerm_master.testing import ScriptedAgent, ScriptedFramework

__all__ = [
    "MasterProcess", "CoapAgentClient", "WsAgentClient", "WsFrameworkClient", "Framework",
    "open_framework", "UdpRelay", "free_ports", "standby_process", "coap_agent_call",
    "open_protected",
]

TS = pb.TaskState


# --------------------------------------------------------------------------------------------
# Real processes


def end_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM,
                timeout: float = 10.0) -> int:
    """Ask a child to stop with `sig`, SIGKILL it if it has not exited after `timeout` s, reap
    it; its exit code. A child that has already exited is only reaped."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class MasterProcess:
    """`python -m edgerm_master` (or `module`) as a subprocess on `data_dir`, for end-to-end
    tests.

    `start()` waits for the ready line and fills `coap` / `ws` (host, port); `restart()` reuses
    the same ports and data directory; `kill()` is SIGKILL; `stop()` SIGTERM then SIGKILL.
    """

    def __init__(self, data_dir: str, agent_token: str = "agent-token",
                 framework_token: str = "framework-token",
                 operator_token: str = "operator-token", heartbeat_ms: int = 200,
                 extra: Iterable[str] = (), host: str = "127.0.0.1",
                 module: str = "edgerm_master") -> None:
        self.data_dir = data_dir
        self.module = module   # edgerm_master.testing_standby: a master that refuses
        self.host = host
        self.args = [
            "--data-dir", data_dir, "--host", host,
            "--agent-token", agent_token, "--framework-token", framework_token,
            "--operator-token", operator_token, "--heartbeat-ms", str(heartbeat_ms),
            *extra,
        ]
        self.coap_port = 0
        self.ws_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.coap: tuple[str, int] = (host, 0)
        self.ws: tuple[str, int] = (host, 0)
        self.http: tuple[str, int] | None = None   # the HTTP API's, when it is on
        self.log_path = os.path.join(data_dir, "master.log")

    def start(self, timeout: float = 20.0) -> MasterProcess:
        os.makedirs(self.data_dir, exist_ok=True)
        # HTTP on a port of its own choosing (the one it had, on a restart): its default, the
        # WebSocket port + 1, is not known to be free when `ws_port` was given.
        http = [] if "--http-listen" in self.args else [
            "--http-listen", f"{self.host}:{self.http[1] if self.http else 0}"]
        args = [sys.executable, "-m", self.module, *self.args,
                "--coap-port", str(self.coap_port), "--ws-port", str(self.ws_port), *http]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its life
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log)
        log.close()
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "ready":
                h, p = ev["coap"].rsplit(":", 1)
                self.coap = (h, int(p))
                h, p = ev["ws"].rsplit(":", 1)
                self.ws = (h, int(p))
                self.coap_port, self.ws_port = self.coap[1], self.ws[1]
                if "http" in ev:
                    h, p = ev["http"].rsplit(":", 1)
                    self.http = (h, int(p))
                return self
        self.kill()
        with open(self.log_path, "rb") as f:
            tail = f.read()[-3000:].decode(errors="replace")
        raise RuntimeError(f"the master did not become ready; log tail:\n{tail}")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._close()

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        code = end_process(self.proc, timeout=timeout)
        self._close()
        return code

    def _close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def restart(self, kill: bool = True) -> MasterProcess:
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start()

    def __enter__(self) -> MasterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def standby_process(data_dir: str, leader: MasterProcess | None,
                    leader_urls: dict[str, str] | None = None) -> MasterProcess:
    """A started master process that stays a standby (edgerm_master.testing_standby) naming
    `leader` (its coap:// and ws:// URLs), or `leader_urls` instead, or no leader."""
    urls = dict(leader_urls or {})
    if leader is not None and leader_urls is None:
        urls = {"coap": f"coap://{leader.coap[0]}:{leader.coap[1]}",
                "ws": f"ws://{leader.ws[0]}:{leader.ws[1]}"}
    return MasterProcess(data_dir, module="edgerm_master.testing_standby",
                         extra=["--leader-coap", urls.get("coap", ""),
                                "--leader-ws", urls.get("ws", "")]).start()


def free_ports() -> tuple[int, int]:
    """A UDP and a TCP port free right now on loopback: for a master started later (given as
    its `coap_port`, `ws_port`), e.g. the second master of a failover at other ports."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
        u.bind(("127.0.0.1", 0))
        t.bind(("127.0.0.1", 0))
        return u.getsockname()[1], t.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Network drivers (Trio)


class _AgentClient:
    """What every transport's driver of a `ScriptedAgent` shares: `settle()` over `exchange()`."""

    agent: ScriptedAgent

    async def exchange(self) -> pb.AgentReply:
        raise NotImplementedError

    async def settle(self, rounds: int = 1000) -> None:
        """Exchange calls until the agent has nothing left to say (registered, no queue)."""
        a = self.agent
        for _ in range(rounds):
            await self.exchange()
            if not a.need_register and not a.queue and a.applied == a.acked_applied:
                await self.exchange()
                if not a.queue and not a.need_register:
                    return
        raise AssertionError("agent did not settle")


async def coap_agent_call(coap: Any, remote: tuple[str, int], agent: ScriptedAgent,
                          data: bytes, path: str = "a", **kw: Any) -> tuple[int, bytes]:
    """Send `agent`'s signed call `data` over CoAP as the agent link wants it: plain if it is
    a first registration, else OSCORE-protected (`ScriptedAgent.protect`); (the CoAP code,
    inner for a protected answer, and the AgentReply bytes). `kw` goes to `coap.post`."""
    protected = agent.protect(data, path)
    if protected is None:
        resp = await coap.post(remote, path, data, content_format=CONTENT_FORMAT_CBOR,
                               token_length=2, **kw)
        return resp.code, bytes(resp.payload)
    seq, option, ciphertext = protected
    resp = await coap.post(remote, (), ciphertext, options=[(9, option)], token_length=2, **kw)
    return open_protected(agent, seq, resp)


def open_protected(agent: ScriptedAgent, seq: int, resp: Any) -> tuple[int, bytes]:
    """(code, AgentReply) of the response `resp` to `agent`'s protected request `seq`: the
    inner code and payload, or a plain one (a refusal) as it came."""
    option = next((v for n, v in resp.options if n == 9), None)
    if option is None:
        return resp.code, bytes(resp.payload)
    _piv, code, payload = agent.unprotect(seq, option, resp.payload)
    return code, payload


class CoapAgentClient(_AgentClient):
    """Drives a `ScriptedAgent` over real CoAP: `await client.exchange()` sends its next call
    (POST `a`) and applies the reply. Use inside `open_coap_client()`:

        async with open_coap_client() as coap:
            client = CoapAgentClient(coap, master.coap, agent)
    """

    def __init__(self, coap: Any, remote: tuple[str, int], agent: ScriptedAgent) -> None:
        self.coap = coap
        self.remote = remote
        self.agent = agent
        self.codes: list[int] = []

    async def send(self, data: bytes, path: str = "a") -> pb.AgentReply:
        """Send the signed call `data`: plain if it is a first registration, else
        OSCORE-protected (`ScriptedAgent.protect`). `codes` gets the (inner) CoAP code."""
        code, reply = await coap_agent_call(self.coap, self.remote, self.agent, data, path)
        self.codes.append(code)
        return self.agent.handle_reply(reply)

    def open(self, seq: int, resp: Any) -> bytes:
        """The AgentReply in the response `resp` to our protected request `seq` (a plain one
        as it came: a refusal); records the inner code in `codes`."""
        code, payload = open_protected(self.agent, seq, resp)
        self.codes.append(code)
        return payload

    async def exchange(self) -> pb.AgentReply:
        return await self.send(self.agent.next_call())

    @asynccontextmanager
    async def observe(self) -> AsyncIterator[AsyncIterator[pb.AgentReply]]:
        """A protected Observe registration on `c` (a heartbeat, FETCH): iterate for the
        applied replies, the first the registration's, then each notification (`codes` gets
        each one's inner code)."""
        protected = self.agent.protect(self.agent.heartbeat_call(), "c")
        assert protected is not None, "register first"
        seq, option, ciphertext = protected
        async with self.coap.observe(self.remote, (), ciphertext, method=Code.FETCH,
                                     options=[(9, option)], token_length=2) as obs:
            async def replies() -> AsyncIterator[pb.AgentReply]:
                async for resp in obs:
                    yield self.agent.handle_reply(self.open(seq, resp))
            yield replies()


class WsAgentClient(_AgentClient):
    """Drives a `ScriptedAgent` over a WebSocket to `/agent`; pushed replies (seq 0) are applied
    as they come by `await client.receive()`."""

    def __init__(self, ws: Any, agent: ScriptedAgent) -> None:
        self.ws = ws
        self.agent = agent
        self.pushed: list[pb.AgentReply] = []

    async def exchange(self) -> pb.AgentReply:
        data = self.agent.next_call()
        call = decode(pb.AgentCall, data)
        await self.ws.send_message(data)
        while True:
            reply = self.agent.handle_reply(await self.ws.get_message())
            if reply.seq == call.seq:
                return reply
            self.pushed.append(reply)

    async def receive(self) -> pb.AgentReply:
        reply = self.agent.handle_reply(await self.ws.get_message())
        if reply.seq == 0:
            self.pushed.append(reply)
        return reply


class WsFrameworkClient:
    """Drives a `ScriptedFramework` over a WebSocket to `/framework`."""

    def __init__(self, ws: Any, fw: ScriptedFramework) -> None:
        self.ws = ws
        self.fw = fw

    async def send(self, data: bytes) -> None:
        await self.ws.send_message(data)

    async def receive(self) -> pb.FrameworkEvent:
        return self.fw.handle_event(await self.ws.get_message())

    async def until(self, predicate: Any, timeout: float = 10.0) -> pb.FrameworkEvent:
        """Receive events until `predicate(event)` is true; return that event."""
        with trio.fail_after(timeout):
            while True:
                ev = await self.receive()
                if predicate(ev):
                    return ev

    async def offers(self, timeout: float = 10.0) -> list[pb.Offer]:
        """The offers the framework holds now, or the next ones to arrive."""
        if not self.fw.offers:
            await self.until_kind("offers", timeout)
        return list(self.fw.offers.values())

    async def until_kind(self, kind: str, timeout: float = 10.0) -> Any:
        ev = await self.until(lambda e: e.WhichOneof("event") in (kind, "error"), timeout)
        if ev.WhichOneof("event") == "error" and kind != "error":
            raise AssertionError(f"error instead of {kind}: {ev.error}")
        return getattr(ev, kind)


class Framework:
    """One framework over WebSocket; acknowledges updates, records states and outputs."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.fw = ScriptedFramework()
        self.changed = trio.Event()
        self.accepted_at: dict[str, float] = {}
        self.state_at: dict[tuple[str, int], float] = {}

    async def send(self, data: bytes) -> None:
        await self.ws.send_message(data)

    async def reader(self) -> None:
        while True:
            ev = self.fw.handle_event(await self.ws.get_message())
            if ev.WhichOneof("event") == "update":
                u = ev.update
                self.state_at.setdefault((u.task_id, u.state), trio.current_time())
                if u.uuid:
                    await self.send(self.fw.acknowledge(u))
            self.changed.set()
            self.changed = trio.Event()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        with trio.fail_after(timeout):
            while not (result := predicate()):
                await self.changed.wait()
            return result

    async def upload(self, module: bytes) -> bytes:
        await self.send(self.fw.upload(module, pb.WASM_MODULE))
        sha = hashlib.sha256(module).digest()
        await self.wait_for(lambda: any(e.WhichOneof("event") == "module_stored"
                                        and e.module_stored.sha256 == sha
                                        for e in self.fw.events))
        return sha

    async def launch(self, task_id: str, spec: pb.TaskSpec, timeout: float = 15.0) -> None:
        def roomy() -> pb.Offer | None:
            fits = [o for o in self.fw.offers.values()
                    if o.resources.cpus >= spec.resources.cpus
                    and o.resources.mem_mb >= spec.resources.mem_mb]
            return fits[0] if fits else None
        offer = await self.wait_for(roomy, timeout)
        self.accepted_at[task_id] = trio.current_time()
        await self.send(self.fw.accept([offer.offer_id], [pb.TaskInfo(task_id=task_id,
                                                                       spec=spec)]))

    def states(self, task_id: str) -> list[int]:
        return [u.state for u in self.fw.updates if u.task_id == task_id]

    def last(self, task_id: str) -> pb.TaskStatus | None:
        ups = [u for u in self.fw.updates if u.task_id == task_id]
        return ups[-1] if ups else None

    async def wait_state(self, task_id: str, *states: int, timeout: float = 20.0
                         ) -> pb.TaskStatus:
        def done() -> pb.TaskStatus | None:
            last = self.last(task_id)
            return last if last is not None and last.state in states else None
        try:
            return await self.wait_for(done, timeout)  # type: ignore[no-any-return]
        except trio.TooSlowError:
            raise AssertionError(f"{task_id}: states {[TS.Name(s) for s in self.states(task_id)]}"
                                 f", waited for {[TS.Name(s) for s in states]}") from None


async def open_framework(nursery: trio.Nursery, ws: tuple[str, int],
                         framework_id: str = "", framework_secret: bytes = b"") -> Framework:
    """Subscribe (or fail over into `framework_id`, proven by its secret) and start reading
    events."""
    from trio_websocket import connect_websocket_url

    conn = await connect_websocket_url(nursery, f"ws://{ws[0]}:{ws[1]}/framework")
    f = Framework(conn)
    f.fw.failover_timeout_s = 120.0
    f.fw.framework_id = framework_id
    f.fw.framework_secret = framework_secret
    await f.send(f.fw.subscribe())
    nursery.start_soon(f.reader)
    await f.wait_for(lambda: f.fw.framework_id)
    return f


class UdpRelay:
    """A UDP relay on loopback between one agent and the master, for network-fault tests.

    The agent talks to `port`; the relay forwards to `target` and back while `forwarding` is
    true, and drops both ways while it is false (the agent is cut off); with `drop_down` set it
    loses only what the master sends (the agent's calls arrive, their answers never do).
    `inject(data)` sends a datagram to the agent from the master's side, as a spoofer on the
    path would (the agent's socket may be connected: it hears nobody else).
    Run it with `nursery.start_soon(relay.run)` after `await relay.bind()`.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.forwarding = True
        self.drop_down = False
        self.client: Any = None
        self.port = 0
        self.front = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        self.back = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)

    async def bind(self) -> int:
        await self.front.bind(("127.0.0.1", 0))
        await self.back.bind(("127.0.0.1", 0))
        self.port = int(self.front.getsockname()[1])
        return self.port

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._up)
            nursery.start_soon(self._down)

    def passes(self, direction: str, data: bytes) -> bool:
        """Whether a datagram goes on ("up": agent to master, "down": master to agent).
        Subclasses that lose datagrams by their own rule override this."""
        return self.forwarding and (direction == "up" or not self.drop_down)

    async def _up(self) -> None:
        while True:
            data, self.client = await self.front.recvfrom(65536)
            if self.passes("up", data):
                await self.back.sendto(data, self.target)

    async def _down(self) -> None:
        while True:
            data, _ = await self.back.recvfrom(65536)
            if self.client is not None and self.passes("down", data):
                await self.front.sendto(data, self.client)

    async def inject(self, data: bytes) -> None:
        await self.front.sendto(data, self.client)
