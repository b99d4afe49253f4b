"""End to end: an unauthenticated CoAP flood must not lock the master's agents out (issue 10.2).

The master runs as its own process (`python -m edgerm_master`) on loopback UDP with a short
unreachable time (4 missed heartbeats of 500 ms). Two agents each run a task and heartbeat
over CoAP while a second process floods the master with 200,000 confirmable requests from 10
source ports: half to unknown paths (answered 4.04), half POST `a` with garbage (answered 4.00
by the master core). Before the fix those filled the one dedup table of 100,000 entries, after
which every new request — heartbeats included — was answered 5.03 for EXCHANGE_LIFETIME and
both agents went UNREACHABLE; their framework was told.

The flooder is closed-loop (a window of requests in flight per port, topped up as answers
arrive): it keeps the master saturated without overflowing the kernel's socket buffer, which
would drop heartbeats on the way in and measure the kernel instead of the master.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import trio
from trio_websocket import open_websocket_url

from edgerm.coap.codes import CON, Code
from edgerm.coap.message import decode_message_untrusted, encode_message
from edgerm.transport.coap import CoapRequestError, open_coap_client
from edgerm.wire import decode, encode, pb
from edgerm_master.testing import ScriptedAgent, ScriptedFramework, task_info
from edgerm_master.testing_io import CoapAgentClient, MasterProcess, WsFrameworkClient

TS = pb.TaskState
DATAGRAMS = 200_000
PORTS = 10
WINDOW = 16
HEARTBEAT_MS = 500
MISSED = 4  # UNREACHABLE after 2 s of silence

# Plain Python, no CoAP library: raw CON requests with distinct message ids per port (20,000
# per port, so no id repeats and every request is new to the dedup table).
FLOODER = r"""
import json, random, select, socket, sys, time
host, port, total, nports, window = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:6])
rng = random.Random(10)
socks = []
for _ in range(nports):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind(("127.0.0.1", 0))
    s.connect((host, port))
    s.setblocking(False)
    socks.append(s)
by_fd = {s.fileno(): i for i, s in enumerate(socks)}
mids = [rng.randrange(65536) for _ in socks]
credit = [window] * nports
codes = {}
poller = select.poll()
for s in socks:
    poller.register(s, select.POLLIN)

def datagram(i, n):
    mid = mids[i] = (mids[i] + 1) & 0xFFFF
    head = bytes((0x42, 0, mid >> 8, mid & 0xFF)) + (n & 0xFFFF).to_bytes(2, "big")
    if n % 2:  # GET /x<k>: no such resource
        path = b"x%d" % (n % 997)
        return head[:1] + b"\x01" + head[2:] + bytes((0xB0 | len(path),)) + path
    # POST /a, Content-Format 60, garbage that is no AgentCall
    return head[:1] + b"\x02" + head[2:] + b"\xb1a\x11\x3c\xff" + rng.randbytes(24)

sent = received = 0
start = time.monotonic()
while sent < total:
    for i, s in enumerate(socks):
        while credit[i] > 0 and sent < total:
            try:
                s.send(datagram(i, sent))
            except BlockingIOError:
                break
            credit[i] -= 1
            sent += 1
    events = poller.poll(300)
    if not events:
        credit = [window] * nports  # answers lost (or never coming): top up the window
        continue
    for fd, _ in events:
        i = by_fd[fd]
        while True:
            try:
                data = socks[i].recv(2048)
            except BlockingIOError:
                break
            received += 1
            if len(data) >= 2:
                codes[data[1]] = codes.get(data[1], 0) + 1
            credit[i] = min(window, credit[i] + 1)
print(json.dumps({"sent": sent, "received": received, "seconds": time.monotonic() - start,
                  "codes": {str(k): v for k, v in codes.items()}}), flush=True)
"""


def ws_url(m: MasterProcess, path: str) -> str:
    return f"ws://{m.ws[0]}:{m.ws[1]}{path}"


async def test_flood_from_ten_ports_locks_no_agent_out(tmp_path: Any) -> None:
    master = MasterProcess(str(tmp_path / "data"), heartbeat_ms=HEARTBEAT_MS,
                           extra=["--unreachable-after-missed", str(MISSED),
                                  "--allocation-interval-s", "0.2"])
    with master, trio.fail_after(55):  # the flood itself takes ~20-30 s on 2 busy cores
        async with open_coap_client() as coap, \
                open_websocket_url(ws_url(master, "/framework")) as ws:
            # --- two agents, each running one task of a subscribed framework
            agents = [CoapAgentClient(coap, master.coap, ScriptedAgent(f"pi-{i}"))
                      for i in range(2)]
            for ac in agents:
                await ac.settle()
            fc = WsFrameworkClient(ws, ScriptedFramework())
            await fc.send(fc.fw.subscribe())
            await fc.until_kind("subscribed")
            for n, ac in enumerate(agents):
                offer = await until_offer_on(fc, ac.agent.agent_id)
                await fc.send(fc.fw.accept([offer.offer_id], [task_info(f"t{n}")]))
                await fc.until_kind("accepted")
            for ac in agents:
                await ac.settle()
            running = 0
            while running < 2:
                up = await fc.until_kind("update")
                await fc.send(fc.fw.acknowledge(up))
                running += up.state == TS.RUNNING
            assert sorted(ac.agent.running() for ac in agents) == [[1], [1]]

            # --- the flood, while the agents heartbeat and we watch the master's view
            updates: list[pb.TaskStatus] = []
            views: list[dict[str, str]] = []
            answers: list[list[int]] = [[] for _ in agents]
            flood: dict[str, Any] = {}

            async def heartbeat(ac: CoapAgentClient, codes: list[int]) -> None:
                while True:
                    protected = ac.agent.protect(ac.agent.next_call())
                    assert protected is not None
                    seq, option, ciphertext = protected
                    try:
                        resp = await coap.post(master.coap, (), ciphertext,
                                               options=[(9, option)], token_length=2, timeout=5)
                    except CoapRequestError:
                        codes.append(0)
                    else:
                        if any(n == 9 for n, _ in resp.options):
                            _, code, reply = ac.agent.unprotect(seq, dict(resp.options)[9],
                                                                resp.payload)
                            codes.append(code)
                            ac.agent.handle_reply(reply)
                        else:
                            codes.append(resp.code)
                    await trio.sleep(HEARTBEAT_MS / 1000)

            async def watch_framework() -> None:
                while True:
                    ev = await fc.receive()
                    if ev.WhichOneof("event") == "update":
                        updates.append(ev.update)
                        await fc.send(fc.fw.acknowledge(ev.update))

            async def watch_state() -> None:
                while True:
                    async with open_websocket_url(ws_url(master, "/state")) as sws:
                        await sws.send_message(encode(pb.StateRequest(token="operator-token")))
                        state = decode(pb.ClusterState, await sws.get_message())
                    views.append({a.name: a.state for a in state.agents})
                    await trio.sleep(0.25)

            async def run_flood() -> None:
                proc = await trio.run_process(
                    [sys.executable, "-c", FLOODER, master.coap[0], str(master.coap[1]),
                     str(DATAGRAMS), str(PORTS), str(WINDOW)],
                    capture_stdout=True, check=True)
                flood.update(json.loads(proc.stdout))

            async with trio.open_nursery() as nursery:
                for ac, codes in zip(agents, answers, strict=True):
                    nursery.start_soon(heartbeat, ac, codes)
                nursery.start_soon(watch_framework)
                nursery.start_soon(watch_state)
                await run_flood()
                # Past the unreachable time once more, so a lockout at the flood's end shows.
                await trio.sleep(HEARTBEAT_MS * MISSED / 1000 + 0.5)
                nursery.cancel_scope.cancel()

    print("flood:", flood, "agents:", [len(c) for c in answers])
    # The flood reached the master and was answered (it was not lost in the kernel).
    assert flood["sent"] == DATAGRAMS
    assert flood["received"] >= 0.9 * DATAGRAMS, flood
    # Nobody was locked out: no agent was ever seen UNREACHABLE, no task was reported so.
    locked = [v for v in views if set(v.values()) != {"active"}]
    assert views and not locked, f"{len(locked)} of {len(views)} views: {locked[:2]}"
    told = [(u.task_id, TS.Name(u.state)) for u in updates if u.state == TS.UNREACHABLE]
    assert not told, told
    # And the agents' calls were served all along: no 5.03, no timeout.
    for codes in answers:
        assert len(codes) >= 4 and set(codes) == {Code.CHANGED}, codes


async def until_offer_on(fc: WsFrameworkClient, agent_id: int) -> pb.Offer:
    with trio.fail_after(10):
        while True:
            for offer in fc.fw.offers.values():
                if offer.agent_id == agent_id:
                    return offer
            await fc.until_kind("offers")


async def test_retransmitted_call_that_failed_after_authentication_gets_the_same_answer(
        tmp_path: Any) -> None:
    """An authenticated call answered with an error has still moved the agent's seq: its
    retransmission (the answer was lost) must get that answer from the dedup cache, not be
    processed again (which would say "stale seq", 4.01, and make the agent re-register)."""
    master = MasterProcess(str(tmp_path / "data"))
    with master, trio.fail_after(30):
        async with open_coap_client() as coap:
            ac = CoapAgentClient(coap, master.coap, ScriptedAgent("pi"))
            await ac.settle()
        protected = ac.agent.protect(ac.agent._call(module=pb.ModuleRequest(
            sha256=b"\x01" * 32)))
        assert protected is not None
        seq, option, ciphertext = protected
        datagram = encode_message(CON, Code.POST, 4242, b"\x07\x07", [(9, option)],
                                  ciphertext)
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with sock:
            await sock.bind(("127.0.0.1", 0))
            answers = []
            for _ in range(2):  # the first answer counts as lost: the agent sends it again
                await sock.sendto(datagram, master.coap)
                answers.append(decode_message_untrusted(await sock.recv(2048)))
        assert [m.code for m in answers] == [Code.CHANGED, Code.CHANGED]   # (outer codes)
        assert answers[0].payload == answers[1].payload
        _, code, reply = ac.agent.unprotect(seq, answers[1].opt(9) or b"", answers[1].payload)
        assert code == Code.NOT_FOUND
        assert ac.agent.handle_reply(reply).error.code == pb.NOT_FOUND
