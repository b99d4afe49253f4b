"""The POSIX build of the C agent behind a gateway (in this process, with its own agent, whose
OSCORE context protects the uplink) in front of a real master: it registers through the gateway
(plain, the one mac-signed call), gets its WASM module and reports the task's readings to a
framework, all OSCORE-protected end to end through the gateway, which keeps no reading."""

from __future__ import annotations

import struct
from pathlib import Path

import trio
from trio_websocket import open_websocket_url

from edgerm.wire import pb
from edgerm_agent.config import parse_config
from edgerm_agent.gateway_shell import Gateway
from edgerm_agent.shell import Agent
from edgerm_master.testing_io import MasterProcess

from .test_posix_agent import (
    NAME,
    TOKEN,
    PosixAgent,
    _launch,
    _spec,
    _subscribed,
    _until,
    _upload,
    _wasm,
)


async def test_posix_agent_behind_a_gateway(posix_agent: Path, tmp_path: Path) -> None:
    master = MasterProcess(str(tmp_path / "master"), agent_token=TOKEN, heartbeat_ms=300)
    await trio.to_thread.run_sync(master.start)
    agent: PosixAgent | None = None
    try:
        async with trio.open_nursery() as nursery, \
                open_websocket_url(f"ws://{master.ws[0]}:{master.ws[1]}/framework") as ws:
            config = parse_config({
                "name": "gw", "work_dir": str(tmp_path / "gw"),
                "master": {"url": "coap://{}:{}".format(*master.coap), "token": TOKEN},
                "resources": {"cpus": 0.01, "mem_mb": 1}, "executors": {"enabled": []},
                "gateway": {"host": "127.0.0.1", "port": 0}})
            gw_agent = Agent(config)
            gw = Gateway(config, gw_agent)
            addr = await nursery.start(gw.run)
            await nursery.start(gw_agent.run)
            agent = PosixAgent(posix_agent, (addr[0], addr[1]), tmp_path)
            agent.start()
            c = await _subscribed(ws)
            fw = c.fw
            await _until(c, lambda: any(o.agent_name == NAME for o in fw.offers.values()))

            sampler = _wasm("sampler")
            sha = await _upload(c, sampler)
            await _launch(c, "s1", _spec(sampler, sha, "temp", "3", devices=("temp",)))
            await _until(c, lambda: pb.FINISHED in fw.states("s1"))
            readings = [struct.unpack("<d", o.data)[0] for o in fw.outputs if o.task_id == "s1"]
            assert readings == [21.5, 21.5, 21.5]
            assert gw.core is not None and gw.core.stats["calls"] > 0
            assert gw.stats["modules_fetched"] == 0   # protected: relayed, not cached
            nursery.cancel_scope.cancel()
    finally:
        if agent is not None:
            agent.stop()
        await trio.to_thread.run_sync(master.stop)
