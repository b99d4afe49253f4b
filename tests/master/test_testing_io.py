"""The test helpers that do I/O (`edgerm_master.testing_io`): the UDP relay's faults on real
loopback sockets, and a master process that restarts on the ports it had."""

from __future__ import annotations

from pathlib import Path

import trio

from edgerm.transport.coap import open_coap_client
from edgerm_master.testing import ScriptedAgent
from edgerm_master.testing_io import CoapAgentClient, MasterProcess, UdpRelay


async def _ask(agent: trio.socket.SocketType, data: bytes, timeout: float = 2.0) -> bytes | None:
    await agent.send(data)
    with trio.move_on_after(timeout):
        return await agent.recv(2048)  # type: ignore[no-any-return]
    return None


async def test_relay_forwards_cuts_off_drops_down_and_injects() -> None:
    master = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await master.bind(("127.0.0.1", 0))
    heard: list[bytes] = []

    async def listening_master() -> None:
        while True:
            data, addr = await master.recvfrom(2048)
            heard.append(data)
            await master.sendto(b"echo:" + data, addr)

    relay = UdpRelay(master.getsockname())
    port = await relay.bind()
    agent = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await agent.connect(("127.0.0.1", port))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(listening_master)
        nursery.start_soon(relay.run)

        assert await _ask(agent, b"one") == b"echo:one"

        relay.forwarding = False  # cut off: nothing either way
        assert await _ask(agent, b"two", timeout=0.3) is None
        assert heard == [b"one"]

        relay.forwarding = True
        relay.drop_down = True  # calls arrive, answers never do
        assert await _ask(agent, b"three", timeout=0.3) is None
        with trio.fail_after(2):
            while heard[-1:] != [b"three"]:
                await trio.sleep(0.01)

        await relay.inject(b"spoofed")  # from the master's side of the relay
        with trio.fail_after(2):
            assert await agent.recv(2048) == b"spoofed"
        nursery.cancel_scope.cancel()
    for s in (agent, master, relay.front, relay.back):
        s.close()


async def test_master_process_restarts_on_the_same_ports_and_answers_agents(
        tmp_path: Path) -> None:
    master = MasterProcess(str(tmp_path / "m"), heartbeat_ms=200).start()
    try:
        coap, ws = master.coap, master.ws
        assert coap[1] and ws[1]
        master.restart()  # SIGKILL, as a crash, then the same data dir and ports
        assert (master.coap, master.ws) == (coap, ws)
        async with open_coap_client() as client:
            agent = ScriptedAgent("relay-test")
            driver = CoapAgentClient(client, master.coap, agent)
            with trio.fail_after(15):
                await driver.settle()
        assert agent.agent_id and not agent.errors
    finally:
        assert master.stop() is not None
