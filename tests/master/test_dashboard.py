"""The web dashboard in a real headless browser (Debian's chromium through chromedriver and
Selenium 4): against a real master and two real Linux agents it shows the agents, a task that
`edgerm run` launches appears and reaches FINISHED without a reload, a wrong token shows a clear
message, the token survives a reload (sessionStorage), and the page logs no console errors; with
10,000 agents it pages and filters. Screenshots go to the artefacts directory (docs/testing.md).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from edgerm.wire import pb, sign, token_key
from edgerm_master.config import MasterConfig
from edgerm_master.core import Master
from edgerm_master.dashboard import add_dashboard_routes
from edgerm_master.http_api import Changes, add_api_routes, authenticator
from edgerm_master.http_server import HttpApp, HttpRequest, HttpResponse, json_response, serve_http
from edgerm_master.members import MasterRow, masters_json
from edgerm_master.state import MasterState
from edgerm_master.testing_etcd import EtcdCluster, etcd_cluster, unique_prefix
from edgerm_master.testing_ha import MasterSet

from ..framework.conftest import OPERATOR_TOKEN, WASM_DIR

__all__ = ["etcd_cluster"]  # the fixture, imported for the two-master test

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def artefacts_dir() -> Path:
    """Where screenshots go: $EDGERM_TEST_ARTEFACTS, else test-artefacts/ in the repository
    (git-ignored)."""
    path = Path(os.environ.get("EDGERM_TEST_ARTEFACTS") or ROOT / "test-artefacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def chromium(*extra: str) -> Any:
    """A headless Chromium under chromedriver, its console log kept; `extra` switches."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            pytest.fail(f"{path} missing: apt-get install chromium chromium-driver "
                        "(scripts/test.sh installs them)")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                "--disable-dev-shm-usage", *extra):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: Any, what: str, check: Callable[[Any], Any], timeout: float = 30.0) -> Any:
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(check)
    except Exception:
        shot = artefacts_dir() / "dashboard-failure.png"
        driver.save_screenshot(str(shot))
        raise AssertionError(f"dashboard: {what} not seen within {timeout:g} s (screenshot "
                             f"{shot}); page text:\n{driver.find_element(By.TAG_NAME, 'body').text}"
                             ) from None


def severe(driver: Any) -> list[dict[str, Any]]:
    """The console's errors since the last call (reading the log empties it)."""
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def enter_token(driver: Any, token: str) -> None:
    field_ = driver.find_element(By.ID, "token")
    field_.clear()
    field_.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#auth-form button").click()


def rows(driver: Any) -> list[list[str]]:
    """The table's cells as text, read in one script (the page replaces its rows as snapshots
    arrive: element by element, a row could go stale half read)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#table tbody tr'), "
        "tr => Array.from(tr.cells, td => td.innerText.trim()))")


def test_dashboard_against_a_real_cluster(real_cluster, wasm_modules, browser) -> None:
    host, port = real_cluster.master.http
    url = f"http://{host}:{port}/"
    driver = browser
    driver.get(url)
    # A wrong token: a clear message, the form stays, nothing else is shown.
    wait(driver, "the token form", lambda d: d.find_element(By.ID, "token").is_displayed())
    enter_token(driver, "not-the-token")
    message = wait(driver, "the wrong-token message",
                   lambda d: d.find_element(By.ID, "auth-message").text)
    assert "refused this operator token" in message and "wrong operator token" in message
    assert not driver.find_element(By.ID, "main").is_displayed()
    # The browser reports the refused request itself (a 401 is a failed resource load); that
    # is the only error so far.
    errors = severe(driver)
    assert all("401" in e["message"] and "/api/v1/" in e["message"] for e in errors), errors

    enter_token(driver, OPERATOR_TOKEN)
    wait(driver, "both agents", lambda d: {r[1] for r in rows(d) if len(r) > 1}
         >= {real_cluster.agent_name, real_cluster.second_agent})
    by_name = {r[1]: r for r in rows(driver)}
    first = by_name[real_cluster.agent_name]
    assert first[3] == "active" and first[4] == "websocket" and first[2].startswith("Linux")
    assert "temp [Cel]" in first[8] and "humidity [%RH]" in first[8]   # sensors
    assert "ago" in first[5]                                            # last seen
    assert "/" in first[6] and "/" in first[7]                          # used / free
    assert driver.execute_script("return sessionStorage.getItem('edgerm.operatorToken')") \
        == OPERATOR_TOKEN
    driver.save_screenshot(str(artefacts_dir() / "dashboard-agents.png"))

    # A task launched by `edgerm run`, watched on the Tasks tab without reloading the page.
    driver.execute_script("window.__sameDocument = 'yes'")
    driver.find_element(By.CSS_SELECTOR, "#tabs button[data-view=tasks]").click()
    driver.find_element(By.ID, "filter").send_keys("dash-")
    wait(driver, "the empty, filtered task list",
         lambda d: rows(d) == [["nothing matches the filter"]])
    run = subprocess.Popen(
        [sys.executable, "-m", "edgerm_cli", "run", "--wasm",
         str(WASM_DIR / "build" / "sampler.wasm"), "--device", "temp", "--arg", "temp",
         "--arg", "6", "--arg", "300", "--task-id", "dash-1", "-q"],
        env=real_cluster.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        seen: list[str] = []

        def task_state(d: Any) -> str | None:
            state = d.execute_script(
                "const c = document.querySelector('#table tbody td[data-task-state]');"
                "return c ? c.innerText : null")
            if state and (not seen or seen[-1] != state):
                seen.append(state)
            return state if state == "FINISHED" else None

        wait(driver, "task dash-1 FINISHED", task_state, 60)
        out, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, err.decode()
    assert len(out.split()) == 6
    assert "RUNNING" in seen and seen[-1] == "FINISHED", seen
    assert driver.execute_script("return window.__sameDocument") == "yes"  # no reload
    # Its history and its last outputs (the sampler's readings, shown as numbers).
    driver.find_element(By.CSS_SELECTOR, "#table tbody tr[data-task-id='dash-1']").click()
    wait(driver, "the task's details",
         lambda d: d.find_element(By.ID, "detail").is_displayed()
         and "FINISHED" in d.find_element(By.ID, "detail-body").text)
    detail = driver.find_element(By.ID, "detail-body").text
    for state in ("STAGING", "STARTING", "RUNNING", "FINISHED"):
        assert state in detail, detail
    outputs = driver.find_elements(By.CSS_SELECTOR, "#outputs tr td:last-child")
    assert len(outputs) == 5, detail          # the last five of six
    assert all(15 < float(o.text) < 30 for o in outputs), [o.text for o in outputs]
    driver.save_screenshot(str(artefacts_dir() / "dashboard-task.png"))

    # The token is kept for the tab: a reload connects without asking.
    driver.refresh()
    wait(driver, "the agents after a reload", lambda d: d.find_element(By.ID, "main")
         .is_displayed() and len(rows(d)) == 2 and len(rows(d)[0]) > 1)
    assert not driver.find_element(By.ID, "auth").is_displayed()
    assert severe(driver) == []


# ---------------------------------------------------------------------------------------------
# 10,000 agents: the dashboard served in-process over a master core holding them


@dataclass
class CoreSource:
    """A master core as the HTTP API's state source, without the rest of the service."""

    core: Master
    changes: Changes = field(default_factory=Changes)

    @property
    def state(self) -> MasterState:
        return self.core.state

    def clock(self) -> float:
        return time.time()


def fleet(n: int) -> Master:
    m = Master(MasterConfig(agent_tokens=["a"], operator_tokens=[OPERATOR_TOKEN]),
               random_bytes=random.Random(0).randbytes)
    key = token_key("a")
    for i in range(n):
        call = pb.AgentCall(seq=1, register=pb.Register(
            name=f"edge-{i:05d}", protocol_version=1, nonce=i.to_bytes(8, "big"),
            resources=pb.Resources(cpus=1, mem_mb=64, devices=[
                pb.Device(name="temp", kind=pb.SENSOR, shares=1, unit="Cel"),
                pb.Device(name="relay", kind=pb.ACTUATOR, shares=1)]),
            attributes=[pb.Attribute(name="zone", text=f"z{i % 10}")], executors=[pb.WASM]))
        assert m.agent_call(sign(call, key), time.time()).error == 0
    return m


async def test_ten_thousand_agents_are_paged_and_filtered(browser) -> None:
    source = CoreSource(fleet(10_000))
    app = HttpApp(authenticator(source))
    add_api_routes(app, source)
    add_dashboard_routes(app)

    async def one_master(request: HttpRequest) -> HttpResponse:  # what a lone master answers
        r = json_response(masters_json([MasterRow("solo", "leader", {}, "solo")]))
        r.headers.append(("x-edgerm-role", "leader"))
        return r

    app.route("/api/v1/masters", one_master)
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(serve_http, app, "127.0.0.1", 0)

        def drive() -> None:
            d = browser
            d.get(f"http://{host}:{port}/")
            enter_token(d, OPERATOR_TOKEN)
            wait(d, "the first page", lambda d: d.find_element(By.ID, "range").text
                 == "1–50 of 10000")
            assert len(rows(d)) == 50 and rows(d)[0][1] == "edge-00000"
            assert rows(d)[0][9] == "relay"        # actuators
            d.find_element(By.ID, "next").click()
            wait(d, "the second page", lambda d: d.find_element(By.ID, "range").text
                 == "51–100 of 10000" and rows(d)[0][1] == "edge-00050")
            d.find_element(By.ID, "filter").send_keys("edge-09999")
            wait(d, "the filtered agent", lambda d: [r[1] for r in rows(d)] == ["edge-09999"])
            assert d.find_element(By.ID, "range").text == "1–1 of 1"
            assert "10000 agents" in d.find_element(By.ID, "summary").text
            d.save_screenshot(str(artefacts_dir() / "dashboard-10000-agents.png"))
            assert severe(d) == []

        await trio.to_thread.run_sync(drive)
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------------------------------
# Two masters on a real etcd cluster: the standby's banner links to the leader


def test_a_standby_shows_a_banner_linking_to_the_leader(browser, tmp_path: Path,
                                                      etcd_cluster: EtcdCluster) -> None:
    ms = MasterSet(str(tmp_path / "set"), etcd_cluster.client_urls, unique_prefix("dash"), n=2)
    try:
        ms.start()
        lead = trio.run(ms.leader)
        http = [m.http for m in ms.masters]
        assert http[0] is not None and http[1] is not None
        lh, lp = http[lead]
        d = browser
        sh, sp = http[1 - lead]
        d.get(f"http://{sh}:{sp}/")
        enter_token(d, "operator-token")
        # The standby learns the leader from the election's watch; the page asks again.
        link = wait(d, "the standby banner's link to the leader", lambda d: d.find_elements(
            By.ID, "leader-link"))[0]
        assert link.get_attribute("href") == f"http://{lh}:{lp}/"
        banner = d.find_element(By.ID, "standby").text
        assert "This master is a standby; the leader is " + f"m{lead}" in banner
        assert not d.find_element(By.ID, "main").is_displayed()  # no stale cluster view
        roles = {r[0]: r[1] for r in d.execute_script(
            "return Array.from(document.querySelectorAll('#masters tbody tr'), "
            "tr => Array.from(tr.cells, td => td.innerText.trim()))")}
        assert roles == {f"m{lead}": "leader", f"m{1 - lead}": "standby"}
        d.save_screenshot(str(artefacts_dir() / "dashboard-standby.png"))
        assert severe(d) == []
        link.click()   # the leader's dashboard (same token asked again: another origin)
        enter_token(d, "operator-token")
        wait(d, "the leader's live view", lambda d: d.find_element(By.ID, "main").is_displayed()
             and d.find_element(By.ID, "conn").text == "live")
        assert not d.find_element(By.ID, "standby").is_displayed()
        assert d.find_element(By.ID, "masters-panel").is_displayed()
        assert severe(d) == []
    finally:
        ms.close()
