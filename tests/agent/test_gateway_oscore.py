"""End-to-end protection through the gateway (issue 16): a real master process, the gateway in
this process (its uplink through a relay that records every datagram), devices that are real
agent processes speaking OSCORE to the gateway.

- What the gateway forwards holds no sensor value, task argument or module byte in clear, and
  yet the device's task runs and its readings reach the framework.
- A gateway that alters a device's protected request is refused by the master (plain 4.01,
  nothing applied); one that alters the master's protected reply is dropped by the device; in
  both cases the device keeps working once the gateway stops.
- After a master restart the master answers the device with its own Partial IV (it cannot
  prove the request fresh); the gateway relays that too, and the device re-registers (same
  identity) and keeps working.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
import trio

from edgerm.wire import decode, pb
from edgerm_agent.gateway import is_protected
from edgerm_agent.gateway_shell import Gateway
from edgerm_master.testing import wasm_spec
from edgerm_master.testing_io import MasterProcess, open_framework

from .gateway_run import (
    TOKEN,
    RecordingRelay,
    device,
    gateway_config,
    running_gateway,
    wait_until,
)

TS = pb.TaskState
VALUE = 1234.5678                 # the device's sensor reading
ARG = "arg-never-in-clear-5b1e"   # a task argument (the sampler ignores a 4th one)
PROBE = f'[[devices]]\nname = "probe"\nkind = "sensor"\nconstant = {VALUE}\n'


@pytest.fixture
def master(tmp_path: Path) -> Any:
    with MasterProcess(str(tmp_path / "master"), agent_token=TOKEN, heartbeat_ms=300) as m:
        yield m


def _outputs(f: Any, task: str) -> list[bytes]:
    return [o.data for o in f.fw.outputs if o.task_id == task]


async def _run_sampler(f: Any, wasm: bytes, task: str, count: int) -> None:
    """Launch the sampler on the device ("probe", `count` readings) and wait for them all."""
    sha = await f.upload(wasm)
    await f.launch(task, wasm_spec(sha, len(wasm), "probe", str(count), "50", ARG,
                                   devices=["probe"]), timeout=30)
    await f.wait_state(task, TS.FINISHED, timeout=60)
    await wait_until(lambda: len(_outputs(f, task)) == count, 10, "the readings")
    assert _outputs(f, task) == [struct.pack("<d", VALUE)] * count


async def test_the_gateway_forwards_no_reading_argument_or_module_byte_in_clear(
        tmp_path: Path, master: MasterProcess, wasm_modules: dict[str, bytes]) -> None:
    relay = RecordingRelay(master.coap)
    await relay.bind()
    wasm = wasm_modules["sampler"]
    config = gateway_config(tmp_path, [master.coap], uplink=("127.0.0.1", relay.port))
    async with trio.open_nursery() as n:
        n.start_soon(relay.run)
        async with running_gateway(config) as gw:
            dev = device(tmp_path, gw, extra=PROBE).start()
            try:
                f = await open_framework(n, master.ws)
                await _run_sampler(f, wasm, "s1", 3)
            except BaseException:
                print("--- device log ---\n" + dev.log())
                raise
            finally:
                dev.stop()
            assert gw.core is not None and gw.core.stats["calls"] > 5
        n.cancel_scope.cancel()
    seen = b"".join(relay.seen)
    assert len(relay.seen) > 10
    assert struct.pack("<d", VALUE) not in seen and str(VALUE).encode() not in seen
    assert ARG.encode() not in seen
    chunks = [wasm[i:i + 16] for i in range(0, len(wasm) - 16, 16)]
    leaked = [c for c in chunks if c in seen]
    assert not leaked, f"{len(leaked)} of {len(chunks)} module chunks in clear"


class TamperingGateway(Gateway):
    """A gateway that flips one ciphertext bit of a device's protected requests (`requests`
    of them) or of the master's protected replies to it (`replies` of them)."""

    def __init__(self, *args: Any, requests: int = 0, replies: int = 0, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.requests = requests
        self.replies = replies
        self.victim = 0            # the device's agent id; 0: not known yet, nothing altered
        self.refused: list[pb.AgentReply] = []
        self.altered_replies = 0

    async def _send(self, calls: tuple[bytes, ...]) -> list[bytes] | None:
        altered: list[int] = []
        out = list(calls)
        for i, c in enumerate(out):
            if self.requests and self.victim and is_protected(c) and c[-1:] and \
                    c[2 + c[1] - 1] == self.victim:
                out[i] = c[:-1] + bytes([c[-1] ^ 1])
                altered.append(i)
                self.requests -= 1
        replies = await super()._send(tuple(out))
        if replies is None:
            return None
        for i in altered:
            if i < len(replies) and not is_protected(replies[i]):
                self.refused.append(decode(pb.AgentReply, replies[i]))
        for i, r in enumerate(replies):
            c = calls[i]
            if self.replies and self.victim and i not in altered and is_protected(r) \
                    and is_protected(c) and c[2 + c[1] - 1] == self.victim:
                replies[i] = r[:-1] + bytes([r[-1] ^ 1])
                self.replies -= 1
                self.altered_replies += 1
        return replies


async def test_a_tampered_request_or_reply_is_refused_and_the_device_keeps_working(
        tmp_path: Path, master: MasterProcess, wasm_modules: dict[str, bytes]) -> None:
    wasm = wasm_modules["sampler"]
    async with trio.open_nursery() as n, running_gateway(
            gateway_config(tmp_path, [master.coap]), TamperingGateway) as gw:
        assert isinstance(gw, TamperingGateway)
        dev = device(tmp_path, gw, extra=PROBE).start()
        try:
            f = await open_framework(n, master.ws)
            offer = await f.wait_for(lambda: next((o for o in f.fw.offers.values()
                                                   if o.agent_name == "dev"), None), 30)
            assert offer.agent_id < 256       # a 1-byte kid (what the tamperer matches)
            gw.victim = offer.agent_id
            # requests: the master's tag check refuses each, plain 4.01, nothing applied
            gw.requests = 3
            await wait_until(lambda: gw.requests == 0 and len(gw.refused) == 3, 20,
                             lambda: f"3 altered requests answered: {gw.refused} {dev.log()}")
            assert all(r.error.code == pb.UNAUTHENTICATED for r in gw.refused), gw.refused
            assert all(not r.mac and not r.seq for r in gw.refused)   # unprotected refusals
            # replies: the device's tag check drops each (its call counts as failed)
            gw.replies = 3
            await wait_until(lambda: gw.replies == 0, 20, "3 altered replies")
            assert gw.altered_replies == 3
            # the device keeps working: a task launched on it runs and reports its readings
            await _run_sampler(f, wasm, "s2", 2)
            n.cancel_scope.cancel()
        finally:
            dev.stop()


class PivGateway(Gateway):
    """A gateway that notes the replies carrying the master's own Partial IV (a non-empty
    OSCORE option in a reply entry: the master could not reuse the request's nonce)."""

    own_piv = 0

    async def _send(self, calls: tuple[bytes, ...]) -> list[bytes] | None:
        replies = await super()._send(calls)
        for r in replies or ():
            if is_protected(r) and r[1]:
                self.own_piv += 1
        return replies


async def test_after_a_master_restart_replies_with_the_masters_partial_iv_reach_the_device(
        tmp_path: Path, master: MasterProcess, wasm_modules: dict[str, bytes]) -> None:
    """The master restarted: the device is not synced, so the master answers it with its own
    Partial IV (a ReRegister); through the gateway the device takes it, re-registers (same
    identity) and keeps working."""
    wasm = wasm_modules["sampler"]
    async with running_gateway(gateway_config(tmp_path, [master.coap]), PivGateway) as gw:
        assert isinstance(gw, PivGateway)
        dev = device(tmp_path, gw, extra=PROBE).start()
        try:
            async with trio.open_nursery() as n:
                f = await open_framework(n, master.ws)
                first = await f.wait_for(lambda: next((o for o in f.fw.offers.values()
                                                       if o.agent_name == "dev"), None), 30)
                n.cancel_scope.cancel()
            assert gw.own_piv == 0
            await trio.to_thread.run_sync(master.restart)
            await wait_until(lambda: gw.own_piv > 0, 30,
                             lambda: f"a reply with the master's Partial IV: {dev.log()}")
            async with trio.open_nursery() as n:
                f = await open_framework(n, master.ws)
                again = await f.wait_for(lambda: next((o for o in f.fw.offers.values()
                                                       if o.agent_name == "dev"), None), 30)
                assert again.agent_id == first.agent_id     # re-registered, the same identity
                await _run_sampler(f, wasm, "s3", 2)
                n.cancel_scope.cancel()
        finally:
            dev.stop()
