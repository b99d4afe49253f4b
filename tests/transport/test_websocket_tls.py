"""wss:// with real TLS on loopback (edgerm.transport.websocket + edgerm.tls): a client verifies
the server and refuses a wrong certificate with one line saying what is wrong and what to set;
the server keeps serving other clients after each refused handshake."""

from __future__ import annotations

import datetime
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from edgerm.devca import make_ca, make_server_cert, write_cert, write_pair
from edgerm.tls import CA_FILE_ENV, TlsError, speaks_tls
from edgerm.transport.websocket import (
    WebSocketConfig,
    WsConnection,
    connect_websocket,
    run_with_reconnect,
    serve_websocket,
)

# Connecting gives up after this; every failure below must come well before it.
CONNECT_TIMEOUT_S = 20.0


@dataclass
class Pki:
    ca_file: Path          # the CA that signed `cert`
    other_ca_file: Path    # a CA that signed nothing here
    cert: Path             # for localhost, 127.0.0.1, ::1
    key: Path
    expired: Path          # signed by `ca_file`, for 127.0.0.1, expired yesterday
    expired_key: Path
    elsewhere: Path        # signed by `ca_file`, only for other.example
    elsewhere_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = make_ca()
    other, _ = make_ca("another CA")
    write_cert(d / "ca.pem", ca)
    write_cert(d / "other-ca.pem", other)
    cert, key = write_pair(d, "server", *make_server_cert(
        ca, ca_key, ["localhost", "127.0.0.1", "::1"]))
    now = datetime.datetime.now(datetime.UTC)
    expired, expired_key = write_pair(d, "expired", *make_server_cert(
        ca, ca_key, ["127.0.0.1"], not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1)))
    elsewhere, elsewhere_key = write_pair(d, "elsewhere", *make_server_cert(
        ca, ca_key, ["other.example"]))
    return Pki(d / "ca.pem", d / "other-ca.pem", cert, key, expired, expired_key, elsewhere,
               elsewhere_key)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def echo(conn: WsConnection) -> None:
    while True:
        await conn.send(await conn.receive())


@asynccontextmanager
async def server(context: ssl.SSLContext | None) -> AsyncIterator[int]:
    """An echo server on /e (wss:// with `context`, else ws://); yields its port."""
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(lambda task_status: serve_websocket(
            {"/e": echo}, "127.0.0.1", 0, ssl_context=context, task_status=task_status))
        try:
            yield port
        finally:
            nursery.cancel_scope.cancel()


CONFIG = WebSocketConfig(connect_timeout=CONNECT_TIMEOUT_S, ping_interval=None)


async def roundtrip(url: str, ca_file: Path | str | None) -> bytes:
    async with connect_websocket(url, config=CONFIG,
                                 ca_file=None if ca_file is None else str(ca_file)) as conn:
        await conn.send(b"ping")
        return await conn.receive()


async def refused(url: str, ca_file: Path | None) -> str:
    """The one line of the TlsError connecting to `url` raises (well before the timeout)."""
    started = trio.current_time()
    with pytest.raises(TlsError) as caught:
        await roundtrip(url, ca_file)
    assert trio.current_time() - started < CONNECT_TIMEOUT_S / 2
    message = str(caught.value)
    assert "\n" not in message and message.startswith("TLS: "), message
    return message


async def test_a_client_with_the_right_ca_talks_over_tls(pki: Pki) -> None:
    async with server(server_context(pki.cert, pki.key)) as port:
        assert await roundtrip(f"wss://127.0.0.1:{port}/e", pki.ca_file) == b"ping"
        assert await roundtrip(f"wss://localhost:{port}/e", pki.ca_file) == b"ping"


async def test_the_ca_file_from_the_environment(pki: Pki,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CA_FILE_ENV, str(pki.ca_file))
    async with server(server_context(pki.cert, pki.key)) as port:
        assert await roundtrip(f"wss://127.0.0.1:{port}/e", None) == b"ping"


async def test_a_wrong_ca_then_system_trust_are_refused_and_the_server_serves_on(
        pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CA_FILE_ENV, raising=False)
    async with server(server_context(pki.cert, pki.key)) as port:
        url = f"wss://127.0.0.1:{port}/e"
        assert await refused(url, pki.other_ca_file) == (
            f"TLS: the master at wss://127.0.0.1:{port} presented a certificate not signed by "
            f"{pki.other_ca_file} (set ca_file / --ca-file / EDGERM_CA_FILE to the CA that "
            "signed it)")
        assert "not signed by the system's trusted CAs" in await refused(url, None)
        assert await roundtrip(url, pki.ca_file) == b"ping"


async def test_an_expired_certificate_is_refused(pki: Pki) -> None:
    async with server(server_context(pki.expired, pki.expired_key)) as port:
        message = await refused(f"wss://127.0.0.1:{port}/e", pki.ca_file)
        assert message.startswith(f"TLS: the master at wss://127.0.0.1:{port} presented an "
                                  "expired certificate"), message


async def test_a_certificate_for_another_host_is_refused(pki: Pki) -> None:
    async with server(server_context(pki.elsewhere, pki.elsewhere_key)) as port:
        message = await refused(f"wss://127.0.0.1:{port}/e", pki.ca_file)
        assert message.startswith(f"TLS: the master at wss://127.0.0.1:{port} presented a "
                                  "certificate not valid for 127.0.0.1"), message
        message = await refused(f"wss://localhost:{port}/e", pki.ca_file)
        assert "not valid for localhost" in message


async def test_plain_ws_to_a_tls_server_says_use_wss(pki: Pki) -> None:
    async with server(server_context(pki.cert, pki.key)) as port:
        assert await speaks_tls("127.0.0.1", port)
        assert await refused(f"ws://127.0.0.1:{port}/e", None) == (
            f"TLS: the master at ws://127.0.0.1:{port} serves TLS: use wss://127.0.0.1:{port} "
            "(and ca_file / --ca-file for its CA)")
        assert await roundtrip(f"wss://127.0.0.1:{port}/e", pki.ca_file) == b"ping"


async def _logged(caplog: pytest.LogCaptureFixture, count: int) -> list[str]:
    """The server's handshake warnings, once there are `count` (it logs when its side of the
    handshake ends, which can be after the client's)."""
    with trio.fail_after(10):
        while True:
            lines = [r.getMessage() for r in caplog.records
                     if "TLS handshake from" in r.getMessage()]
            if len(lines) >= count:
                return lines
            await trio.sleep(0.02)


async def test_the_server_tells_its_operator_why_a_handshake_failed(
        pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edgerm.transport.websocket")
    async with server(server_context(pki.cert, pki.key)) as port:
        url = f"wss://127.0.0.1:{port}/e"
        await refused(url, pki.other_ca_file)
        [line] = await _logged(caplog, 1)
        assert line.startswith("websocket: TLS handshake from 127.0.0.1:"), line
        assert "the client does not trust this server's certificate (give the client the CA " \
            "file that signed it" in line and "(1 failed handshakes so far" in line
        # The same reason again within the minute: counted, not logged again.
        await refused(url, pki.other_ca_file)
        await refused(f"ws://127.0.0.1:{port}/e", None)
        lines = await _logged(caplog, 2)
        assert len(lines) == 2 and "a plain ws:// or http:// client (it must use wss://" \
            in lines[1], lines
        assert await roundtrip(url, pki.ca_file) == b"ping"
    async with server(server_context(pki.expired, pki.expired_key)) as port:
        await refused(f"wss://127.0.0.1:{port}/e", pki.ca_file)
        lines = await _logged(caplog, 3)
        assert "finds this server's certificate expired or not yet valid (renew [tls] cert" \
            in lines[2], lines
    # A plain client's probe (does it speak TLS?) and a bare connect are no failures to tell.
    caplog.clear()
    async with server(server_context(pki.cert, pki.key)) as port:
        assert await speaks_tls("127.0.0.1", port)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.aclose()
        assert await roundtrip(f"wss://127.0.0.1:{port}/e", pki.ca_file) == b"ping"
    assert not [r for r in caplog.records if "TLS handshake from" in r.getMessage()]


async def test_wss_to_a_plain_server_says_it_does_not_speak_tls(pki: Pki) -> None:
    async with server(None) as port:
        assert not await speaks_tls("127.0.0.1", port)
        assert await refused(f"wss://127.0.0.1:{port}/e", pki.ca_file) == (
            f"TLS: the master at wss://127.0.0.1:{port} does not speak TLS (it serves plain "
            f"connections): use ws://127.0.0.1:{port} or give the master a [tls] certificate")
        assert await roundtrip(f"ws://127.0.0.1:{port}/e", None) == b"ping"


async def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TlsError, match=r"^TLS: CA file .*nope\.pem: no such file \(set "):
        await roundtrip("wss://127.0.0.1:1/e", tmp_path / "nope.pem")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(TlsError, match="holds no PEM CA certificate"):
        await roundtrip("wss://127.0.0.1:1/e", tmp_path / "junk.pem")


async def test_run_with_reconnect_retries_a_refused_certificate(pki: Pki) -> None:
    """An agent keeps trying (the operator may fix the certificate), saying why each time."""
    errors: list[BaseException] = []
    async with server(server_context(pki.cert, pki.key)) as port:
        with pytest.raises(TlsError):
            await run_with_reconnect(
                f"wss://127.0.0.1:{port}/e", echo, config=CONFIG, max_attempts=3,
                ca_file=str(pki.other_ca_file),
                on_retry=lambda attempt, delay, exc: errors.append(exc))
    assert len(errors) == 2 and all(isinstance(e, TlsError) for e in errors)
