"""The master's OSCORE hook on real CoAP (edgerm_master/service_oscore.py): a module fetched
block by block inside OSCORE (GET m/<sha> with an inner Block2, as the small agents fetch),
nothing of it in clear, and a replayed GET refused; a protected call to an unknown route."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from trio_websocket import open_websocket_url

from edgerm.coap.codes import Code
from edgerm.coap.options import BlockValue, decode_block
from edgerm.oscore import protect_request, unprotect_response
from edgerm.transport.coap import open_coap_client
from edgerm.wire import pb
from edgerm_master.testing import ScriptedAgent, ScriptedFramework, wasm_module
from edgerm_master.testing_io import (
    CoapAgentClient,
    MasterProcess,
    WsFrameworkClient,
    open_protected,
)


@pytest.fixture
def master(tmp_path: Any) -> Iterator[MasterProcess]:
    m = MasterProcess(str(tmp_path / "data"), heartbeat_ms=2000)
    m.start()
    yield m
    m.stop()


def protected_get(agent: ScriptedAgent, path: list[bytes], block: BlockValue | None
                  ) -> tuple[int, bytes, bytes]:
    """(seq, OSCORE option, ciphertext) of a GET `path` from `agent` (its next seq)."""
    agent.seq += 1
    options = [(11, seg) for seg in path]
    if block is not None:
        options.append((23, block.encode()))
    option, ciphertext = protect_request(agent.oscore_context(), agent.seq, Code.GET, options,
                                         b"")
    return agent.seq, option, ciphertext


async def test_a_module_fetched_block_by_block_inside_oscore(master: MasterProcess) -> None:
    mod = wasm_module(os.urandom(1500))
    sha = hashlib.sha256(mod).digest()
    url = f"ws://{master.ws[0]}:{master.ws[1]}/framework"
    async with open_websocket_url(url) as ws, open_coap_client() as coap:
        fc = WsFrameworkClient(ws, ScriptedFramework())
        await fc.send(fc.fw.subscribe())
        await fc.until_kind("subscribed")
        await fc.send(fc.fw.upload(mod))
        assert (await fc.until_kind("module_stored")).sha256 == sha
        agent = ScriptedAgent("small")
        ac = CoapAgentClient(coap, master.coap, agent)
        await ac.settle()
        got = b""
        num = 0
        first: tuple[bytes, bytes] | None = None
        while True:
            seq, option, ciphertext = protected_get(
                agent, [b"m", sha.hex().encode()], BlockValue(num, False, 4))   # 256 B
            first = first or (option, ciphertext)
            resp = await coap.post(master.coap, (), ciphertext, options=[(9, option)])
            assert resp.code == Code.CHANGED and mod[:64] not in resp.payload
            # The inner code, Block2 and block are inside.
            _, code, inner_options, chunk = unprotect_response(
                agent.oscore_context(), seq, dict(resp.options)[9], resp.payload)
            assert code == Code.CONTENT
            block = decode_block(dict(inner_options)[23])
            assert block is not None and block.num == num and block.szx == 4
            got += chunk
            if not block.more:
                break
            num += 1
        assert got == mod and num == len(mod) // 256
        # The first GET again: a replay (its Partial IV is used up), refused plain.
        assert first is not None
        again = await coap.post(master.coap, (), first[1], options=[(9, first[0])])
        assert again.code == Code.UNAUTHORIZED and 9 not in dict(again.options)
        # Unknown inner path: a protected 4.04. The agent goes on (its seq was fine).
        seq, option, ciphertext = protected_get(agent, [b"nope"], None)
        resp = await coap.post(master.coap, (), ciphertext, options=[(9, option)])
        assert open_protected(agent, seq, resp)[0] == Code.NOT_FOUND
        assert not (await ac.exchange()).HasField("error")


async def test_a_module_request_call_inside_oscore_comes_back_whole(
        master: MasterProcess) -> None:
    """The Linux agent's way: `AgentCall.module` on POST `a`, protected; the reply (a chunk of
    up to 64 KiB) goes out block-wise outside OSCORE (outer Block2), reassembled by the
    client before it is verified."""
    mod = wasm_module(os.urandom(5000))
    sha = hashlib.sha256(mod).digest()
    url = f"ws://{master.ws[0]}:{master.ws[1]}/framework"
    async with open_websocket_url(url) as ws, open_coap_client() as coap:
        fc = WsFrameworkClient(ws, ScriptedFramework())
        await fc.send(fc.fw.subscribe())
        await fc.until_kind("subscribed")
        await fc.send(fc.fw.upload(mod))
        await fc.until_kind("module_stored")
        agent = ScriptedAgent("linux")
        ac = CoapAgentClient(coap, master.coap, agent)
        await ac.settle()
        reply = await ac.send(agent._call(module=pb.ModuleRequest(sha256=sha)))
        assert ac.codes[-1] == Code.CHANGED
        assert reply.module.total == len(mod) and reply.module.data == mod
        assert not (await ac.exchange()).HasField("error")   # the seq went on in order
