"""The development CA (edgerm.devca): made once, reused while good, renewed when not."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

from cryptography import x509

from edgerm.devca import (
    RENEW_BEFORE,
    ensure_dev_certificates,
    make_ca,
    make_server_cert,
    write_cert,
    write_key,
)


def sans(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n.value) for n in names}


def test_made_once_with_loopback_and_the_configured_hosts(tmp_path: Path) -> None:
    made = ensure_dev_certificates(tmp_path / "tls", ["edge.example", "10.0.0.5"])
    assert sans(made.cert_file) == {"localhost", "127.0.0.1", "::1", "edge.example",
                                    "10.0.0.5"}
    for key in (made.key_file, tmp_path / "tls" / "ca.key"):
        assert key.stat().st_mode & 0o777 == 0o600
    # A client trusting the CA accepts the certificate (the chain and the key agree).
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(made.cert_file, made.key_file)
    client = ssl.create_default_context(cafile=str(made.ca_file))
    assert client.get_ca_certs()[0]["subject"] == ((("commonName",
                                                     "EdgeRM development CA"),),)
    ca = x509.load_pem_x509_certificate(made.ca_file.read_bytes())
    x509.load_pem_x509_certificate(made.cert_file.read_bytes()).verify_directly_issued_by(ca)


def test_reused_while_good(tmp_path: Path) -> None:
    first = ensure_dev_certificates(tmp_path, ["edge.example"])
    before = {p: p.read_bytes() for p in (first.ca_file, first.cert_file, first.key_file)}
    again = ensure_dev_certificates(tmp_path, ["edge.example"])
    assert again == first
    assert {p: p.read_bytes() for p in before} == before


def test_a_new_host_renews_the_server_certificate_but_keeps_the_ca(tmp_path: Path) -> None:
    first = ensure_dev_certificates(tmp_path)
    ca, cert = first.ca_file.read_bytes(), first.cert_file.read_bytes()
    ensure_dev_certificates(tmp_path, ["192.168.1.9"])
    assert first.ca_file.read_bytes() == ca          # clients holding ca.pem keep working
    assert first.cert_file.read_bytes() != cert
    assert "192.168.1.9" in sans(first.cert_file)


def test_an_expiring_or_broken_certificate_is_replaced(tmp_path: Path) -> None:
    made = ensure_dev_certificates(tmp_path)
    ca = x509.load_pem_x509_certificate(made.ca_file.read_bytes())
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    ca_key = load_pem_private_key((tmp_path / "ca.key").read_bytes(), None)
    now = datetime.datetime.now(datetime.UTC)
    soon, key = make_server_cert(ca, ca_key, ["localhost", "127.0.0.1", "::1"],  # type: ignore[arg-type]
                                 not_after=now + RENEW_BEFORE / 2)
    write_cert(made.cert_file, soon)
    write_key(made.key_file, key)
    ensure_dev_certificates(tmp_path)
    renewed = x509.load_pem_x509_certificate(made.cert_file.read_bytes())
    assert renewed.not_valid_after_utc > now + RENEW_BEFORE
    made.key_file.write_text("garbage")
    ensure_dev_certificates(tmp_path)
    assert b"PRIVATE KEY" in made.key_file.read_bytes()


def test_an_expired_ca_is_replaced_and_its_certificate_with_it(tmp_path: Path) -> None:
    now = datetime.datetime.now(datetime.UTC)
    old, old_key = make_ca(not_before=now - datetime.timedelta(days=20),
                           not_after=now - datetime.timedelta(days=1))
    write_cert(tmp_path / "ca.pem", old)
    write_key(tmp_path / "ca.key", old_key)
    made = ensure_dev_certificates(tmp_path)
    ca = x509.load_pem_x509_certificate(made.ca_file.read_bytes())
    assert ca.not_valid_after_utc > now
    x509.load_pem_x509_certificate(made.cert_file.read_bytes()).verify_directly_issued_by(ca)
