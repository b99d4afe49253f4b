"""A private CA and a server certificate for development masters (`edgerm-master --dev`, the
local cluster), made with the `cryptography` package's x509 builder.

`ensure_dev_certificates(directory, hosts)` returns the paths of `ca.pem` (what clients trust:
their `ca_file`), `server.pem` and `server.key` (the master's `[tls] cert` and `key`) in
`directory`, reusing the files already there while they are still good: the CA and the server
certificate valid for at least `RENEW_BEFORE` more, the server certificate signed by that CA,
matching its key, and naming every host asked for. Otherwise it makes new ones (a new CA only
when the CA itself is unusable, so clients holding `ca.pem` keep working).

Keys are ECDSA P-256 (fast to make and to handshake with); private keys are written mode 0600.
Subject alternative names: localhost, 127.0.0.1, ::1 and the hosts given (names or addresses).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DevCertificates", "ensure_dev_certificates", "make_ca", "make_server_cert",
           "write_pair", "DEFAULT_HOSTS"]

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 3650
SERVER_DAYS = 365
# Certificates this close to expiring are replaced at the next start.
RENEW_BEFORE = datetime.timedelta(days=7)


@dataclass(frozen=True)
class DevCertificates:
    ca_file: Path       # the CA certificate (PEM): clients' ca_file
    cert_file: Path     # the server certificate (PEM): the master's [tls] cert
    key_file: Path      # its private key (PEM, unencrypted, mode 0600): [tls] key


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return x509.DNSName(host)


def make_ca(common_name: str = "EdgeRM development CA", *,
            not_before: datetime.datetime | None = None,
            not_after: datetime.datetime | None = None
            ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = not_before or _now() - datetime.timedelta(hours=1)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(not_after or start + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_server_cert(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
                     hosts: Iterable[str], *, not_before: datetime.datetime | None = None,
                     not_after: datetime.datetime | None = None
                     ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A server certificate for `hosts` (names or IP addresses), signed by `ca`."""
    names = list(dict.fromkeys(hosts))
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - datetime.timedelta(hours=1)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                        names[0] if names else "edgerm")]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(not_after or start + datetime.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName([_san(h) for h in names]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """The key, unencrypted PEM, readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def write_pair(directory: str | os.PathLike[str], name: str, cert: x509.Certificate,
               key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    """`<name>.pem` and `<name>.key` in `directory`; their paths (tests make odd certificates
    with `make_ca`/`make_server_cert` and write them with this)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    write_cert(d / f"{name}.pem", cert)
    write_key(d / f"{name}.key", key)
    return d / f"{name}.pem", d / f"{name}.key"


def _load(cert_path: Path, key_path: Path
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The certificate and key if both load, match and stay valid long enough; else None."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        return None
    if cert.not_valid_after_utc - RENEW_BEFORE < _now() or cert.not_valid_before_utc > _now():
        return None
    return cert, key


def _covers(cert: x509.Certificate, ca: x509.Certificate, hosts: list[str]) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return all(_san(h) in san for h in hosts)


def ensure_dev_certificates(directory: str | os.PathLike[str],
                            hosts: Iterable[str] = ()) -> DevCertificates:
    """The development CA and server certificate in `directory` (made or renewed as needed) for
    localhost, 127.0.0.1, ::1 and `hosts`."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    wanted = list(dict.fromkeys([*DEFAULT_HOSTS, *(h.strip("[]") for h in hosts if h)]))
    paths = DevCertificates(d / "ca.pem", d / "server.pem", d / "server.key")
    ca_key_path = d / "ca.key"
    loaded_ca = _load(paths.ca_file, ca_key_path)
    if loaded_ca is None:
        ca, ca_key = make_ca()
        write_key(ca_key_path, ca_key)
        write_cert(paths.ca_file, ca)
    else:
        ca, ca_key = loaded_ca
    server = _load(paths.cert_file, paths.key_file)
    if server is None or not _covers(server[0], ca, wanted) or \
            server[0].not_valid_after_utc > ca.not_valid_after_utc:
        cert, key = make_server_cert(ca, ca_key, wanted)
        write_key(paths.key_file, key)
        write_cert(paths.cert_file, cert)
    return paths
