"""The master's TLS (wss:// and https://): its certificate and key, checked at start.

`[tls] cert = "...", key = "..."` in the master's TOML (or `--tls-cert`/`--tls-key`) turn TLS on
for the WebSocket port and the HTTP port; `--dev` without them makes a private CA and a server
certificate under `<data dir>/tls/` (edgerm.devca) and uses those.

`check_server_files` refuses, as one `ConfigError` line saying what to do, every mistake an
operator can make with the files: a missing or unreadable file, something that is not a PEM
certificate or key, a certificate that has expired or is not valid yet, a key that does not
belong to the certificate. `server_context` then builds the `ssl.SSLContext` the WebSocket server
uses (hypercorn builds its own from the same two files).
"""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Iterable
from urllib.parse import urlsplit

from cryptography import x509

from edgerm.devca import DevCertificates, ensure_dev_certificates
from edgerm_master.config import ConfigError, MasterConfig, wildcard_host

__all__ = ["check_server_files", "server_context", "dev_certificates", "dev_hosts"]


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ConfigError(f"[tls] {what} = {path!r}: no such file; point it at the master's "
                          f"PEM {'certificate' if what == 'cert' else 'private key'} (or use "
                          "--dev for a generated one)") from None
    except OSError as e:
        raise ConfigError(f"[tls] {what} = {path!r}: {e.strerror or e}; the master's user "
                          "must be able to read it") from None


def check_server_files(cert: str, key: str,
                       now: datetime.datetime | None = None) -> x509.Certificate:
    """The master's certificate (the first of the chain in `cert`) if `cert` and `key` are
    usable; else `ConfigError` with what to do."""
    if not cert or not key:
        missing = "key" if cert else "cert"
        raise ConfigError(f"[tls] {missing} is not set: TLS needs both cert and key (PEM files)")
    data = _read(cert, "cert")
    _read(key, "key")
    try:
        certificate = x509.load_pem_x509_certificates(data)[0]
    except ValueError:
        raise ConfigError(f"[tls] cert = {cert!r} holds no PEM certificate (\"-----BEGIN "
                          "CERTIFICATE-----\"); give the certificate, then its chain") from None
    now = now or datetime.datetime.now(datetime.UTC)
    if certificate.not_valid_after_utc < now:
        raise ConfigError(f"[tls] cert = {cert!r} expired on "
                          f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; renew it "
                          "(under --dev, delete it and restart to get a new one)")
    if certificate.not_valid_before_utc > now:
        raise ConfigError(f"[tls] cert = {cert!r} is not valid before "
                          f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; check this "
                          "machine's clock")
    server_context(cert, key)
    return certificate


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """The WebSocket server's context; `ConfigError` when the key does not fit the
    certificate or either cannot be loaded."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # No TLS 1.3 session tickets: our clients keep one long connection and never resume, so
    # tickets would only cost two encryptions and a record per handshake.
    context.num_tickets = 0
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e.reason) or "KEY_VALUES_MISMATCH" in str(e):
            raise ConfigError(f"[tls] key = {key!r} is not the private key of cert = {cert!r}; "
                              "give the key the certificate was made for") from None
        raise ConfigError(f"[tls] key = {key!r}: not a usable PEM private key for {cert!r} "
                          f"({e.reason or e}); give it unencrypted, in PEM form") from None
    except OSError as e:
        raise ConfigError(f"[tls] cert/key: {e.strerror or e}") from None
    return context


def dev_hosts(cfg: MasterConfig) -> list[str]:
    """Host names and addresses the development certificate names besides the loopback ones:
    the bind address (unless it is every address) and the hosts of the advertised URLs."""
    hosts: list[str] = []
    if not wildcard_host(cfg.host):
        hosts.append(cfg.host)
    for url in cfg.advertise_urls.values():
        host = urlsplit(url).hostname
        if host:
            hosts.append(host)
    return hosts


def dev_certificates(cfg: MasterConfig, extra_hosts: Iterable[str] = ()) -> DevCertificates:
    """Make or reuse the development CA and certificate under `<data dir>/tls/` and point the
    config's `tls_cert`/`tls_key` at them."""
    made = ensure_dev_certificates(f"{cfg.data_dir}/tls", [*dev_hosts(cfg), *extra_hosts])
    cfg.tls_cert, cfg.tls_key = str(made.cert_file), str(made.key_file)
    return made
