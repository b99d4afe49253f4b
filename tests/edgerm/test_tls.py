"""edgerm.tls without a network: which CA a client trusts, its cached contexts, and which
failures it explains (tests/transport/test_websocket_tls.py has every refusal over real TLS)."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest

from edgerm.devca import ensure_dev_certificates
from edgerm.tls import CA_FILE_ENV, TlsError, ca_file_setting, client_context, explain_failure


def test_the_setting_then_the_environment_then_system_trust(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CA_FILE_ENV, raising=False)
    assert ca_file_setting(None) is None and ca_file_setting("") is None
    monkeypatch.setenv(CA_FILE_ENV, "/env/ca.pem")
    assert ca_file_setting(None) == "/env/ca.pem"
    assert ca_file_setting("/mine.pem") == "/mine.pem"


def test_a_ca_file_is_all_that_is_trusted_and_its_context_is_cached(tmp_path: Path) -> None:
    ca = ensure_dev_certificates(tmp_path / "a").ca_file
    context = client_context(str(ca))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "EdgeRM development CA"),),)]      # not the system's store as well
    assert client_context(str(ca)) is context
    # A replaced file (a new CA) gets a new context.
    other = ensure_dev_certificates(tmp_path / "b").ca_file
    os.replace(other, ca)
    assert client_context(str(ca)) is not context


def test_unusable_ca_files(tmp_path: Path) -> None:
    with pytest.raises(TlsError, match=r"^TLS: CA file .*none.pem: no such file"):
        client_context(str(tmp_path / "none.pem"))
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(TlsError, match=r"holds no PEM CA certificate .*; give the CA's"):
        client_context(str(tmp_path / "junk.pem"))


def test_only_tls_failures_are_explained() -> None:
    assert explain_failure(ConnectionRefusedError(111, "refused"), "wss://h:1/a", None) is None
    wrapped = OSError("handshake")
    wrapped.__cause__ = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    wrapped.__cause__.reason = "WRONG_VERSION_NUMBER"
    assert explain_failure(ExceptionGroup("g", [wrapped]), "wss://h:1/a", None) == (
        "TLS: the master at wss://h:1 does not speak TLS (it serves plain connections): use "
        "ws://h:1 or give the master a [tls] certificate")
