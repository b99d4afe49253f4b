"""The dashboard over https:// in a real headless Chromium: with the master's certificate
trusted (by its public key, `--ignore-certificate-errors-spki-list`, the one way to trust a
private certificate in a fresh headless profile) the page, the API and the live event stream
all work with no console error; an untrusting browser is stopped at its certificate warning
and the page's script never runs."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from selenium.webdriver.common.by import By

from edgerm.devca import ensure_dev_certificates
from edgerm_master.dashboard import add_dashboard_routes
from edgerm_master.http_api import add_api_routes, authenticator
from edgerm_master.http_server import HttpApp, HttpRequest, HttpResponse, json_response, serve_http
from edgerm_master.members import MasterRow, masters_json

from ..framework.conftest import OPERATOR_TOKEN
from .test_dashboard import CoreSource, chromium, enter_token, fleet, rows, severe
from .test_dashboard import wait as wait_for


def spki_hash(cert_file: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture
def certs(tmp_path: Path) -> Iterator[Any]:
    yield ensure_dev_certificates(tmp_path / "tls")


async def test_the_dashboard_over_https(certs: Any) -> None:
    source = CoreSource(fleet(3))
    app = HttpApp(authenticator(source))
    add_api_routes(app, source)
    add_dashboard_routes(app)

    async def one_master(request: HttpRequest) -> HttpResponse:
        r = json_response(masters_json([MasterRow("solo", "leader", {}, "solo")]))
        r.headers.append(("x-edgerm-role", "leader"))
        return r

    app.route("/api/v1/masters", one_master)
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(lambda task_status: serve_http(
            app, "127.0.0.1", 0, certfile=str(certs.cert_file), keyfile=str(certs.key_file),
            task_status=task_status))
        url = f"https://{host}:{port}/"

        def trusting() -> None:
            d = chromium(f"--ignore-certificate-errors-spki-list={spki_hash(certs.cert_file)}")
            try:
                d.get(url)
                enter_token(d, OPERATOR_TOKEN)
                wait_for(d, "the agents over https", lambda d: d.find_element(
                    By.ID, "range").text == "1–3 of 3")
                assert [r[1] for r in rows(d)] == ["edge-00000", "edge-00001", "edge-00002"]
                assert d.execute_script("return location.protocol") == "https:"
                assert severe(d) == []
            finally:
                d.quit()

        def untrusting() -> None:
            d = chromium()
            try:
                d.get(url)
                # Chromium's interstitial, not the page: no token field, no script of ours.
                assert d.find_elements(By.ID, "token") == []
                assert "ERR_CERT_AUTHORITY_INVALID" in d.page_source or \
                    "Privacy error" in d.title, d.title
            finally:
                d.quit()

        await trio.to_thread.run_sync(trusting)
        await trio.to_thread.run_sync(untrusting)
        nursery.cancel_scope.cancel()
