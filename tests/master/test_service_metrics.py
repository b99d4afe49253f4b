"""What the master's Trio shell measures (real CoAP on loopback, in this process): every agent
call timed by transport, commits and allocation rounds timed, CoAP dedup hits counted; and a
commit that fails is logged once (`store_error`) before it stops the master."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from edgerm.transport.coap import open_coap_client
from edgerm_master.config import MasterConfig
from edgerm_master.service import MasterService
from edgerm_master.testing import ScriptedAgent
from edgerm_master.testing_io import CoapAgentClient


def config(tmp_path: Path, **kw: object) -> MasterConfig:
    return MasterConfig(coap_port=0, ws_port=0, http_listen="off", data_dir=str(tmp_path),
                        heartbeat_ms=60_000, agent_tokens=["agent-token"],
                        framework_tokens=["framework-token"],
                        operator_tokens=["operator-token"], **kw)  # type: ignore[arg-type]


def samples(service: MasterService) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = service.metrics_text()
    assert text is not None
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text.decode()) for s in f.samples}


async def test_calls_commits_rounds_and_duplicates_are_measured(tmp_path: Path) -> None:
    service = MasterService(config(tmp_path, allocation_interval_s=0.05))
    async with trio.open_nursery() as nursery:
        coap_addr, _ = await nursery.start(service.run)
        async with open_coap_client() as coap:
            agent = ScriptedAgent("pi")
            client = CoapAgentClient(coap, coap_addr, agent)
            await client.exchange()                  # the registration: queued, committed
            for _ in range(7):
                await client.exchange()              # steady heartbeats: inline
            await trio.sleep(0.2)                    # a few allocation rounds
            # A retransmitted CON (same message id): answered again from the dedup cache.
            datagram = (bytes((0x42, 0x02, 0x12, 0x34, 0xAB, 0xCD)) + b"\xb1a\x11\x3c\xff"
                        + ScriptedAgent("dup").register_call())
            with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as udp:
                answers = []
                for _ in range(2):
                    await udp.sendto(datagram, coap_addr)
                    with trio.fail_after(5):
                        answers.append(await udp.recv(2048))
            assert answers[0] == answers[1]
            m = samples(service)
        nursery.cancel_scope.cancel()
    coap_ = (("transport", "coap"),)
    assert m[("edgerm_agent_calls_total", coap_)] == 9  # the duplicate reached the core once
    assert m[("edgerm_coap_duplicates_total", ())] == 1
    assert m[("edgerm_agent_heartbeats_total", coap_)] == 7
    assert m[("edgerm_agent_call_duration_seconds_count", coap_)] == 9
    assert m[("edgerm_agent_call_duration_seconds_bucket", (("le", "+Inf"), *coap_))] == 9
    assert 0 < m[("edgerm_agent_call_duration_seconds_sum", coap_)] < 9
    assert m[("edgerm_store_commit_duration_seconds_count", ())] >= 1
    assert m[("edgerm_allocation_round_duration_seconds_count", ())] >= 2
    assert m[("edgerm_coap_received_total", ())] >= 8
    # ("dup" registered on CoAP but never confirmed it with an OSCORE request: pending, not
    # an agent yet.)
    assert m[("edgerm_agents", (("kind", "unknown"), ("state", "active")))] == 1


async def test_a_failing_commit_is_logged_once_then_stops_the_master(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edgerm.master")
    service = MasterService(config(tmp_path))
    failure = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            assert service.store is not None

            def broken(records: object) -> None:
                raise sqlite3.OperationalError("disk I/O error")

            service.store.apply = broken  # type: ignore[method-assign]
            agent = ScriptedAgent("pi")
            service.core.agent_call(agent.register_call(), service.clock(), "coap", "x:1")
            service._after_core()
            await trio.sleep(5)  # the flusher fails at once; this is only the deadline
    except BaseException as e:  # the nursery hands the commit's failure over in a group
        failure = e
    assert failure is not None, "the master went on after a failed commit"
    errors = [r for r in caplog.records if getattr(r, "event", None) == "store_error"]
    assert len(errors) == 1
    [err] = errors
    assert err.name == "edgerm.master.store" and err.levelno == logging.ERROR
    assert err.operation == "committing 1 record"  # type: ignore[attr-defined]
    assert "disk I/O error" in err.error  # type: ignore[attr-defined]
