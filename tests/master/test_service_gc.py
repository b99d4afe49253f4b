"""The master moves long-lived objects (its agents) out of the garbage collector's sight as the
fleet grows, so a full collection does not pause it for a scan of every agent."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import trio

from edgerm.transport.coap import open_coap_client
from edgerm_master import service as service_module
from edgerm_master.config import MasterConfig
from edgerm_master.service import MasterService
from edgerm_master.testing import ScriptedAgent
from edgerm_master.testing_io import CoapAgentClient


async def test_heap_frozen_each_time_the_fleet_grew(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "_GC_FREEZE_AGENTS", 3)
    service = MasterService(MasterConfig(
        coap_port=0, ws_port=0, data_dir=str(tmp_path), heartbeat_ms=60_000,
        agent_tokens=["agent-token"]))
    gc.unfreeze()
    try:
        async with trio.open_nursery() as nursery:
            coap_addr, _ = await nursery.start(service.run)
            async with open_coap_client() as coap:
                agents = [ScriptedAgent(f"pi-{i}") for i in range(7)]
                for agent in agents[:2]:
                    await CoapAgentClient(coap, coap_addr, agent).settle()
                assert gc.get_freeze_count() == 0  # 2 agents: not yet
                await CoapAgentClient(coap, coap_addr, agents[2]).settle()
                assert gc.get_freeze_count() > 0 and service._gc_frozen_at == 3
                for agent in agents[3:5]:
                    await CoapAgentClient(coap, coap_addr, agent).settle()
                assert service._gc_frozen_at == 3
                for agent in agents[5:]:
                    await CoapAgentClient(coap, coap_addr, agent).settle()
                assert service._gc_frozen_at == 6 and gc.get_freeze_count() > 0
            nursery.cancel_scope.cancel()
    finally:
        gc.unfreeze()
