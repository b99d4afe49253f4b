"""Issue 12 end to end with every part real: two `edgerm-master` processes on a three-member etcd
cluster (one leads), the Linux agent and the SDK `Framework`, each given both masters. The
leader is SIGKILLed while a WASM task runs and publishes: a standby takes over from etcd, the
framework fails over into its id, the agent keeps its identity and its task (no relaunch, its
outputs go on in order), the module uploaded to the old leader is served by the new one, and the
new leader can kill the task. (docs/ha.md, "What a failover looks like".)"""

from __future__ import annotations

import hashlib
from pathlib import Path

import trio

from edgerm.coap.codes import Code
from edgerm.framework import Framework
from edgerm.transport.coap import open_coap_client
from edgerm.wire import pb
from edgerm_agent.testing import AgentProcess
from edgerm_master.testing_etcd import EtcdCluster, etcd_cluster, unique_prefix
from edgerm_master.testing_ha import MasterSet

from .conftest import collect_outputs, failed_over, kill_and_wait, launch_sampler

__all__ = ["etcd_cluster"]  # the fixture, imported for this module

TOKEN = "framework-token"


async def test_sigkill_the_leader_under_a_real_agent_and_framework(
        tmp_path: Path, etcd_cluster: EtcdCluster, wasm_modules: dict[str, bytes]) -> None:
    ms = MasterSet(str(tmp_path / "masters"), etcd_cluster.client_urls, unique_prefix("e2e"),
                   n=2, lease_ttl_s=2.0).start()
    agent = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ms.supervise)
            first = await ms.leader()
            coap = [f"coap://{h}:{p}" for h, p in ms.coap]
            agent = AgentProcess(tmp_path / "agent", coap[1 - first], urls=[coap[first]]).start()
            masters = [f"ws://{h}:{p}" for h, p in ms.ws]
            async with Framework.connect(masters, name="ha", token=TOKEN,
                                         failover_timeout_s=60, connect_timeout_s=20) as fw:
                module = await fw.upload(wasm_modules["sampler"])
                with trio.fail_after(30):
                    await launch_sampler(fw, module)
                seqs: list[int] = []
                with trio.fail_after(30):
                    await collect_outputs(fw, seqs, 5)
                framework_id = fw.framework_id
                ms.kill(first)
                with trio.fail_after(30):
                    assert await failed_over(fw)
                assert fw.framework_id == framework_id
                # Whoever won: the standby, or the killed master restarted by its supervisor
                # (a new process: it recovered from etcd too).
                second = await ms.leader()
                assert fw.url == masters[second] + "/framework"
                with trio.fail_after(40):
                    await collect_outputs(fw, seqs, len(seqs) + 10)  # goes on, via the new leader
                assert seqs == sorted(set(seqs)), seqs  # in order, none twice
                # The module uploaded to the old leader, served by the new one from etcd.
                async with open_coap_client() as client:
                    resp = await client.get(ms.coap[second], ["m", module.sha256.hex()])
                assert resp.code == Code.CONTENT
                assert hashlib.sha256(resp.payload).digest() == module.sha256
                with trio.fail_after(30):
                    status = await kill_and_wait(fw)
                assert status.state == pb.KILLED, status
            nursery.cancel_scope.cancel()
        log = agent.log_path.read_text()
        assert log.count("task 1: RUNNING") == 1, log[-3000:]  # never relaunched
        assert log.count("(new)") == 1, log[-3000:]  # one identity: registered once as new
    finally:
        if agent is not None:
            agent.stop()
        ms.close()
