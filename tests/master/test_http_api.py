"""The master's JSON API (/api/v1) against a real master process and two real Linux agents:
the operator token (right, wrong, none), bad parameters, filters and paging, the same JSON as
`edgerm ... --json`, a task's history and outputs, and the event stream."""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
import threading
from typing import Any

import pytest
import trio

from edgerm.framework import OffersEvent
from edgerm.state_json import listing_json
from edgerm.wire import decode, encode, pb, sign, token_key
from edgerm_master.config import MasterConfig
from edgerm_master.core import Master
from edgerm_master.http_api import (
    COALESCE_S,
    REFRESH_S,
    Changes,
    Query,
    SearchText,
    _event_stream,
    page,
    parse_query,
    summary,
    task_detail,
)
from edgerm_master.http_server import HttpError, HttpRequest
from edgerm_master.state import JOURNAL_OUTPUTS, JOURNAL_STATES, journal_of
from edgerm_master.testing import ScriptedAgent, ScriptedFramework, launch, number_of
from edgerm_master.view import state_view

from ..framework.conftest import OPERATOR_TOKEN, WASM_DIR
from .http_client import events, get, get_json

TS = pb.TaskState
PATHS = ["/api/v1/state", "/api/v1/agents", "/api/v1/frameworks", "/api/v1/tasks",
         "/api/v1/offers", "/api/v1/tasks/some-task", "/api/v1/events"]


def http(cluster: Any) -> tuple[str, int]:
    assert cluster.master.http is not None, "the master's ready line has no http address"
    return cluster.master.http


async def edgerm(cluster: Any, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process([sys.executable, "-m", "edgerm_cli", *args],
                                  env=cluster.env(), capture_stdout=True, capture_stderr=True,
                                  check=False)


@pytest.mark.parametrize("path", PATHS)
def test_no_token_and_a_wrong_token_are_401_with_a_json_reason(real_cluster, path) -> None:
    for token, words in ((None, "no operator token"), ("wrong-token", "wrong operator token"),
                         ("", "no operator token")):
        status, headers, body = get(http(real_cluster), path, token)
        assert status == 401, (token, body)
        assert headers["content-type"] == "application/json"
        assert headers["www-authenticate"].startswith("Bearer")
        answer = json.loads(body)
        assert answer["error"] == "unauthenticated"
        assert words in answer["message"] and "Authorization: Bearer" in answer["message"]
    # A scheme other than Bearer is no token either.
    status, _, _ = get(http(real_cluster), path,
                       headers={"Authorization": f"Basic {OPERATOR_TOKEN}"})
    assert status == 401


@pytest.mark.parametrize("path", [p for p in PATHS if p not in ("/api/v1/tasks/some-task",
                                                                  "/api/v1/events")])
def test_the_right_token_gets_json(real_cluster, path) -> None:
    status, body = get_json(http(real_cluster), path, OPERATOR_TOKEN)
    assert status == 200, body
    if path == "/api/v1/state":
        assert set(body) == {"agents", "frameworks", "tasks", "offers", "now", "version"}
        assert {a["name"] for a in body["agents"]} == {real_cluster.agent_name,
                                                        real_cluster.second_agent}
    else:
        listing = path.rsplit("/", 1)[1]
        assert set(body) == {listing, "total", "offset", "limit", "next_offset", "now"}
        assert body["total"] == len(body[listing]) and body["offset"] == 0


def test_an_unknown_task_is_404_and_the_event_stream_answers(real_cluster) -> None:
    status, body = get_json(http(real_cluster), "/api/v1/tasks/no-such-task", OPERATOR_TOKEN)
    assert status == 404 and "no task 'no-such-task'" in body["message"]
    stream = events(http(real_cluster), "/api/v1/events?view=agents", OPERATOR_TOKEN)
    first = next(stream)
    stream.close()
    assert first["summary"]["agents_total"] == 2
    assert first["page"]["total"] == 2 and len(first["page"]["agents"]) == 2


@pytest.mark.parametrize("query, words", [
    ("/api/v1/agents?limit=0", "limit=0 is out of range; use 1..10000"),
    ("/api/v1/agents?limit=10001", "limit=10001 is out of range"),
    ("/api/v1/agents?limit=ten", "limit='ten' is not an integer"),
    ("/api/v1/tasks?offset=-1", "offset=-1 is out of range"),
    ("/api/v1/tasks?offset=", "offset='' is not an integer"),
    ("/api/v1/offers?page=2", "unknown parameter 'page'; /offers takes agent, limit, offset, q"),
    ("/api/v1/agents?framework=x", "unknown parameter 'framework'"),
    ("/api/v1/tasks?state=SLEEPING", "state='SLEEPING' is not a task state; use one of"),
    ("/api/v1/agents?state=asleep", "state='asleep' is not an agent state; use one of active"),
    ("/api/v1/tasks?agent=one", "agent='one' is not an integer"),
    ("/api/v1/state?limit=5", "/api/v1/state takes no parameters"),
    ("/api/v1/events?view=nodes", "view='nodes': use one of agents, frameworks, tasks, offers"),
    ("/api/v1/events?view=tasks&limit=0", "limit=0 is out of range"),
])
def test_bad_parameters_are_400_with_the_reason(real_cluster, query, words) -> None:
    status, body = get_json(http(real_cluster), query, OPERATOR_TOKEN)
    assert status == 400, body
    assert body["error"] == "bad_request" and words in body["message"], body


def test_unknown_paths_and_methods_are_json_errors(real_cluster) -> None:
    status, body = get_json(http(real_cluster), "/api/v2/agents", OPERATOR_TOKEN)
    assert status == 404 and "/api/v1/agents" in body["message"]
    status, headers, raw = get(http(real_cluster), "/api/v1/agents", OPERATOR_TOKEN, "POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert "read-only" in json.loads(raw)["message"]
    status, headers, raw = get(http(real_cluster), "/api/v1/agents", OPERATOR_TOKEN, "HEAD")
    assert status == 200 and raw == b"" and int(headers["content-length"]) > 0


def _without_moving_parts(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items without the fields that change between two reads (agents' last_seen as they
    heartbeat, offers' expires_in_s as time passes); they must be there, as numbers."""
    out = []
    for item in items:
        item = dict(item)
        for key in ("last_seen", "expires_in_s"):
            if key in item:
                assert isinstance(item.pop(key), float | int)
        out.append(item)
    return out


async def test_every_list_is_the_json_of_edgerm(real_cluster, wasm_modules) -> None:
    done = await edgerm(real_cluster, "run", "--wasm", str(WASM_DIR / "build" / "hello.wasm"),
                        "--arg", "api", "--task-id", "api-hello")
    assert done.returncode == 0, done.stderr.decode()
    # A framework holding offers, so frameworks and offers are not empty either.
    async with real_cluster.connect(name="api-holder") as fw:
        with trio.fail_after(20):
            async for ev in fw.events():
                if isinstance(ev, OffersEvent) and len(ev.offers) == 2:
                    break
        for listing in ("agents", "frameworks", "tasks", "offers"):
            cli = await edgerm(real_cluster, listing, "--json")
            assert cli.returncode == 0, cli.stderr.decode()
            from_cli = json.loads(cli.stdout)
            status, body = await trio.to_thread.run_sync(
                get_json, http(real_cluster), f"/api/v1/{listing}", OPERATOR_TOKEN)
            assert status == 200
            assert from_cli, f"edgerm {listing} --json is empty: the comparison proves nothing"
            assert _without_moving_parts(body[listing]) == _without_moving_parts(from_cli)
            status, whole = await trio.to_thread.run_sync(
                get_json, http(real_cluster), "/api/v1/state", OPERATOR_TOKEN)
            assert _without_moving_parts(whole[listing]) == _without_moving_parts(from_cli)
        # The task edgerm run launched (its framework is gone: torn down) is still listed.
        task = [t for t in json.loads((await edgerm(real_cluster, "tasks", "--json")).stdout)
                if t["task_id"] == "api-hello"]
        assert task and task[0]["state"] == "FINISHED"
        await fw.teardown()


async def test_filters_and_paging(real_cluster, wasm_modules) -> None:
    for n in range(3):
        done = await edgerm(real_cluster, "run", "--wasm",
                            str(WASM_DIR / "build" / ("fail.wasm" if n == 2 else "hello.wasm")),
                            "--task-id", f"page-{n}", "--agent", real_cluster.second_agent)
        assert done.returncode == (1 if n == 2 else 0), done.stderr.decode()
    address = http(real_cluster)

    def ask(path: str) -> dict[str, Any]:
        status, body = get_json(address, path, OPERATOR_TOKEN)
        assert status == 200, body
        return body

    mine = await trio.to_thread.run_sync(ask, "/api/v1/tasks?q=page-&limit=10000")
    assert {t["task_id"] for t in mine["tasks"]} == {"page-0", "page-1", "page-2"}
    first = await trio.to_thread.run_sync(ask, "/api/v1/tasks?q=page-&limit=2")
    assert len(first["tasks"]) == 2 and first["total"] == 3 and first["next_offset"] == 2
    rest = await trio.to_thread.run_sync(ask, "/api/v1/tasks?q=page-&limit=2&offset=2")
    assert len(rest["tasks"]) == 1 and rest["next_offset"] is None
    assert [t["task_id"] for t in first["tasks"] + rest["tasks"]] == [
        t["task_id"] for t in mine["tasks"]]
    failed = await trio.to_thread.run_sync(ask, "/api/v1/tasks?q=page-&state=failed")
    assert [t["task_id"] for t in failed["tasks"]] == ["page-2"]
    # The same filter by its wire name, TASK_ prefix or not.
    assert (await trio.to_thread.run_sync(ask, "/api/v1/tasks?q=page-&state=TASK_FAILED")
            )["total"] == 1
    agents = (await trio.to_thread.run_sync(ask, "/api/v1/agents"))["agents"]
    second = next(a["agent_id"] for a in agents if a["name"] == real_cluster.second_agent)
    on_second = await trio.to_thread.run_sync(ask, f"/api/v1/tasks?agent={second}&q=page-")
    assert on_second["total"] == 3
    framework = mine["tasks"][0]["framework_id"]
    by_fw = await trio.to_thread.run_sync(ask, f"/api/v1/tasks?framework={framework}")
    assert [t["task_id"] for t in by_fw["tasks"]] == ["page-0"]
    only = await trio.to_thread.run_sync(
        ask, f"/api/v1/agents?q={real_cluster.second_agent}&state=active")
    assert [a["name"] for a in only["agents"]] == [real_cluster.second_agent]
    none = await trio.to_thread.run_sync(ask, "/api/v1/agents?state=lost")
    assert none["agents"] == [] and none["total"] == 0


async def test_a_task_has_its_state_history_and_last_outputs(real_cluster, wasm_modules) -> None:
    done = await edgerm(real_cluster, "run", "--wasm", str(WASM_DIR / "build" / "sampler.wasm"),
                        "--device", "temp", "--arg", "temp", "--arg", "7", "-q",
                        "--task-id", "api-sampler")
    assert done.returncode == 0, done.stderr.decode()
    status, body = await trio.to_thread.run_sync(
        get_json, http(real_cluster), "/api/v1/tasks/api-sampler", OPERATOR_TOKEN)
    assert status == 200, body
    assert body["task"]["task_id"] == "api-sampler" and body["task"]["state"] == "FINISHED"
    states = [h["state"] for h in body["history"]]
    assert states == ["STAGING", "STARTING", "RUNNING", "FINISHED"], body["history"]
    times = [h["time"] for h in body["history"]]
    assert times == sorted(times)
    # Seven readings published; the last five are kept, in order.
    assert body["outputs_total"] == 7
    assert [o["seq"] for o in body["outputs"]] == [3, 4, 5, 6, 7]
    assert all(o["size"] == 8 and 15 < float(o["shown"]) < 30 for o in body["outputs"])


async def test_the_event_stream_pushes_a_new_task(real_cluster, wasm_modules) -> None:
    received: list[dict[str, Any]] = []
    stop = threading.Event()
    seen = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def listen() -> None:
        stream = events(http(real_cluster), "/api/v1/events?view=tasks&q=pushed-", OPERATOR_TOKEN)
        try:
            for snapshot in stream:
                received.append(snapshot)
                states = [t["state"] for t in snapshot["page"]["tasks"]]
                if states == ["FINISHED"] or stop.is_set():
                    trio.from_thread.run_sync(seen.set, trio_token=token)
                    return
        finally:
            stream.close()

    async with trio.open_nursery() as nursery:
        # (Abandoned if the test fails: the client's socket timeout ends the thread.)
        nursery.start_soon(lambda: trio.to_thread.run_sync(listen, abandon_on_cancel=True))
        with trio.fail_after(30):
            while not received:
                await trio.sleep(0.05)
            assert received[0]["page"]["tasks"] == []
            done = await edgerm(real_cluster, "run", "--wasm",
                                str(WASM_DIR / "build" / "sampler.wasm"), "--device", "temp",
                                "--arg", "temp", "--arg", "4", "--arg", "300", "-q",
                                "--task-id", "pushed-1")
            assert done.returncode == 0, done.stderr.decode()
            await seen.wait()
        stop.set()
    # Pushed as it went, not only at the end: it was seen running before it finished.
    states = [s["page"]["tasks"][0]["state"] for s in received if s["page"]["tasks"]]
    assert "RUNNING" in states and states[-1] == "FINISHED", states


# ---------------------------------------------------------------------------------------------
# Parameters without a server


def _request(query: dict[str, list[str]]) -> HttpRequest:
    return HttpRequest("GET", "/api/v1/tasks", query, {}, "test:1")


def test_parse_query_defaults_and_normalises() -> None:
    q = parse_query(_request({}), "tasks")
    assert q == Query("tasks", 100, 0, "", "", "", None)
    q = parse_query(_request({"state": ["running"], "q": ["  Web "], "agent": ["7"],
                              "limit": ["5"], "offset": ["10"]}), "tasks")
    assert (q.state, q.q, q.agent, q.limit, q.offset) == ("RUNNING", "web", 7, 5, 10)
    with pytest.raises(HttpError) as e:
        parse_query(_request({"agent": ["0"]}), "tasks")
    assert e.value.status == 400 and "agent=0 is out of range" in e.value.message


def _master_with_agents(n: int) -> Master:
    m = Master(MasterConfig(agent_tokens=["a"]), random_bytes=random.Random(0).randbytes)
    for i in range(n):
        call = pb.AgentCall(seq=1, register=pb.Register(
            name=f"edge-{i:05d}", protocol_version=1, nonce=i.to_bytes(8, "big"),
            resources=pb.Resources(cpus=1, mem_mb=64), executors=[pb.WASM],
            attributes=[pb.Attribute(name="zone", text=f"z{i % 3}")]))
        assert m.agent_call(sign(call, token_key("a")), 1.0).error == 0
    return m


def test_a_page_past_the_end_is_empty_not_an_error() -> None:
    st = _master_with_agents(3).state
    body = page(st, Query("agents", limit=2, offset=10), 2.0, SearchText())
    assert body["agents"] == [] and body["total"] == 3 and body["next_offset"] is None
    body = page(st, Query("agents", limit=2, offset=0, q="edge-00002"), 2.0, SearchText())
    assert [a["name"] for a in body["agents"]] == ["edge-00002"] and body["total"] == 1
    body = page(st, Query("agents", limit=5, q="zone=z1"), 2.0, SearchText())
    assert [a["name"] for a in body["agents"]] == ["edge-00001"]


def test_a_page_is_the_same_items_as_the_whole_view() -> None:
    st = _master_with_agents(25).state
    whole = listing_json(state_view(st, 2.0), "agents")
    texts = SearchText()
    paged = []
    for offset in range(0, 25, 10):
        paged += page(st, Query("agents", limit=10, offset=offset), 2.0, texts)["agents"]
    assert paged == whole
    # The filter box's cache follows a re-registration (new bytes, new text).
    assert page(st, Query("agents", q="edge-00007"), 2.0, texts)["total"] == 1
    agent = st.agents[8]
    reg = decode(pb.Register, agent.info)
    reg.name = "renamed"
    agent.info = encode(reg)
    assert page(st, Query("agents", q="edge-00007"), 2.0, texts)["total"] == 0
    assert page(st, Query("agents", q="renamed"), 2.0, texts)["total"] == 1


# ---------------------------------------------------------------------------------------------
# The task journal and removed frameworks, in the sans-IO core


def test_task_detail_keeps_the_last_states_and_outputs(cluster) -> None:
    a = cluster.add_agent(ScriptedAgent())
    f = cluster.subscribe(ScriptedFramework())
    launch(cluster, f, a, "t1")
    n = number_of(cluster, f, "t1")
    for i in range(JOURNAL_OUTPUTS + 1):
        a.publish(n, f"reading {i}".encode(), "temp")
    # An f64 reading whose bytes happen to be printable UTF-8 (the dashboard once showed one
    # as text in CI): shown as the number, as the CLI prints it.
    noisy = struct.pack("<d", 21.47003669365782)
    assert noisy == b").#STx5@"
    a.publish(n, noisy, "temp")
    a.publish(n, b"\xff\x00", "raw")
    a.finish(n, exit_code=0)
    cluster.settle(a)
    cluster.ack_all(f)
    st = cluster.master.state
    d = task_detail(st, "t1", "", cluster.now)
    assert d["task"]["state"] == "FINISHED" and d["task"]["framework_id"] == f.framework_id
    assert [h["state"] for h in d["history"]] == ["STAGING", "STARTING", "RUNNING", "FINISHED"]
    assert d["outputs_total"] == JOURNAL_OUTPUTS + 3
    outs = d["outputs"]
    assert len(outs) == JOURNAL_OUTPUTS
    assert outs[-1] == {"time": outs[-1]["time"], "seq": JOURNAL_OUTPUTS + 3, "topic": "raw",
                        "size": 2, "base64": "/wA=", "shown": "ff00"}
    assert outs[-2]["shown"] == "21.47" and outs[-2]["text"] == ").#STx5@"
    assert outs[-3]["text"] == outs[-3]["shown"] == f"reading {JOURNAL_OUTPUTS}"
    # Only the last JOURNAL_STATES state changes are kept.
    task = cluster.master.frameworks[f.framework_id].completed["t1"]
    for i in range(JOURNAL_STATES + 3):
        journal_of(task).add_state(float(i), TS.RUNNING, 0, "")
    assert len(task_detail(st, "t1", "", cluster.now)["history"]) == JOURNAL_STATES
    with pytest.raises(HttpError) as e:
        task_detail(st, "t2", "", cluster.now)
    assert e.value.status == 404


def test_removed_frameworks_keep_their_tasks_in_view_up_to_the_limit(new_cluster) -> None:
    c = new_cluster(completed_frameworks_kept=2)
    a = c.add_agent(ScriptedAgent())
    for i in range(3):
        f = c.subscribe(ScriptedFramework(name=f"run-{i}"))
        launch(c, f, a, f"t{i}", cpus=0.1)
        a.finish(number_of(c, f, f"t{i}"))
        c.settle(a)
        c.ack_all(f)
        c.call(f, f.teardown())
        c.flush()
        assert f.framework_id not in c.master.frameworks
    st = c.master.state
    shown = [t.task_id for t in state_view(st, c.now).tasks]
    assert shown == ["t1", "t2"]            # the oldest removed framework is forgotten
    assert [f.name for f in state_view(st, c.now).frameworks] == []
    assert task_detail(st, "t2", "", c.now)["task"]["state"] == "FINISHED"
    assert summary(st)["tasks"] == {"FINISHED": 2}


# ---------------------------------------------------------------------------------------------
# The event stream: pushed on change, coalesced, a comment line when nothing changed


async def test_the_event_stream_coalesces_and_skips_what_did_not_change(autojump_clock) -> None:
    changes = Changes()
    shown = {"n": 0}
    built: list[float] = []

    def snapshot() -> dict[str, Any]:
        built.append(trio.current_time())
        return {"page": dict(shown), "now": trio.current_time()}

    async def prepare() -> None:
        pass

    out: list[tuple[float, bytes]] = []
    async with trio.open_nursery() as nursery:

        async def read() -> None:
            async for chunk in _event_stream(changes, snapshot, trio.current_time, prepare):
                out.append((trio.current_time(), chunk))

        nursery.start_soon(read)
        await trio.sleep(0.1)
        assert len(out) == 1 and out[0][1].startswith(b"event: snapshot\ndata: ")
        # A burst of ten changes within the coalescing window: one more snapshot, not ten.
        for _ in range(10):
            shown["n"] += 1
            changes.bump()
            await trio.sleep(0.01)
        await trio.sleep(COALESCE_S + 0.1)
        snapshots = [c for _, c in out if c.startswith(b"event: snapshot")]
        assert len(snapshots) == 2 and b'"n":10' in snapshots[-1]
        assert out[1][0] - out[0][0] >= COALESCE_S
        # A change that changes nothing shown: a comment, no snapshot.
        changes.bump()
        await trio.sleep(COALESCE_S + 0.1)
        assert out[-1][1] == b": no change\n\n"
        # Nothing at all for a while: a comment line after REFRESH_S, no more.
        count = len(out)
        await trio.sleep(REFRESH_S + COALESCE_S + 0.1)
        assert len(out) == count + 1 and out[-1][1] == b": no change\n\n"
        nursery.cancel_scope.cancel()
