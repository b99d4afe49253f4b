"""TLS for the clients of the master (wss:// and https://): which certificates a client trusts,
and a one-line explanation of why it refused the master's.

Every client (the Linux agent's WebSocket link, the framework SDK, `edgerm run` and the
listings) verifies the master it connects to: with the CA file it is given (`ca_file` in its
configuration, `--ca-file`, or `EDGERM_CA_FILE`), else with the system's trust store. Hostname
checking is always on; a master reached by IP address needs that address in its certificate's
subjectAltName (the development certificates carry 127.0.0.1 and ::1).

Error handling: a TLS failure becomes `TlsError` (a `ConnectionError`, so clients that reconnect
keep doing so: the operator may fix the certificate) whose message is one line naming the URL,
what was wrong and which setting to change. `explain_failure` does the naming; it also tells a
`ws://` client that the master speaks TLS (by sending it a TLS hello on a second connection)
and a `wss://` client that the master does not.
"""

from __future__ import annotations

import os
import ssl
from urllib.parse import urlsplit

import trio

__all__ = ["TlsError", "CA_FILE_ENV", "ca_file_setting", "client_context", "explain_failure",
           "explain_server_failure", "speaks_tls", "is_tls_url"]

# The environment variable every client reads when its configuration names no CA file.
CA_FILE_ENV = "EDGERM_CA_FILE"

# OpenSSL's X509_V_ERR_* codes (x509_vfy.h) that we name in words.
_NOT_YET_VALID, _EXPIRED = 9, 10
_SELF_SIGNED_LEAF, _SELF_SIGNED_IN_CHAIN, _NO_ISSUER, _NO_ISSUER_LEAF = 18, 19, 20, 21
_HOSTNAME_MISMATCH, _IP_MISMATCH = 62, 64


class TlsError(ConnectionError):
    """The TLS connection to the master failed; the message says why and what to set."""


def is_tls_url(url: str) -> bool:
    return urlsplit(url).scheme in ("wss", "https")


def ca_file_setting(ca_file: str | None) -> str | None:
    """The CA file a client uses: its own setting, else `EDGERM_CA_FILE`, else None (system
    trust)."""
    return ca_file or os.environ.get(CA_FILE_ENV) or None


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A context verifying the server against `ca_file` (PEM, one or more CA certificates) or,
    when None and `EDGERM_CA_FILE` is unset, the system's trust store. Raises `TlsError` when
    the file cannot be used.

    Contexts are cached per file (and its size and modification time): loading the system's
    trust store takes tens of milliseconds, longer than the handshake it serves."""
    ca_file = ca_file_setting(ca_file)
    key: tuple[str, int, int] | None = None
    if ca_file:
        try:
            st = os.stat(ca_file)
        except FileNotFoundError:
            raise TlsError(f"TLS: CA file {ca_file}: no such file (set ca_file / --ca-file / "
                           f"{CA_FILE_ENV} to the PEM file of the CA that signed the master's "
                           "certificate)") from None
        except OSError as e:
            raise TlsError(f"TLS: CA file {ca_file}: {e.strerror or e}") from None
        key = (ca_file, st.st_mtime_ns, st.st_size)
    cached = _contexts.get(key)
    if cached is not None:
        return cached
    try:
        # With a CA file only that file is trusted (not the system's store as well).
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise TlsError(f"TLS: CA file {ca_file} holds no PEM CA certificate ({_reason(e)}); "
                       "give the CA's certificate in PEM form") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if len(_contexts) >= 16:
        _contexts.clear()
    _contexts[key] = context
    return context


# (CA file, mtime, size) or None (system trust) -> the client context made for it.
_contexts: dict[tuple[str, int, int] | None, ssl.SSLContext] = {}


def _reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError) and e.reason:
        return str(e.reason).replace("_", " ").lower()
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _find_ssl_error(exc: BaseException | None) -> ssl.SSLError | None:
    """The ssl.SSLError behind `exc` (its causes, contexts and exception groups)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ssl.SSLError):
            return e
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        todo.extend((e.__cause__, e.__context__))
    return None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def explain_failure(exc: BaseException, url: str, ca_file: str | None) -> str | None:
    """One line saying why the TLS connection to `url` failed, or None when `exc` is no TLS
    failure (then the caller reports it as it would any connection failure)."""
    error = _find_ssl_error(exc)
    if error is None:
        return None
    where = f"the master at {_origin(url)}"
    trust = ca_file_setting(ca_file)
    trusted = trust or "the system's trusted CAs"
    fix_ca = f"set ca_file / --ca-file / {CA_FILE_ENV} to the CA that signed it"
    if isinstance(error, ssl.SSLCertVerificationError):
        code = error.verify_code
        if code in (_SELF_SIGNED_LEAF, _SELF_SIGNED_IN_CHAIN, _NO_ISSUER, _NO_ISSUER_LEAF):
            return (f"TLS: {where} presented a certificate not signed by {trusted} ({fix_ca})")
        if code == _EXPIRED:
            return (f"TLS: {where} presented an expired certificate (the master's operator must "
                    "renew it; a development certificate is renewed by restarting the master)")
        if code == _NOT_YET_VALID:
            return (f"TLS: {where} presented a certificate that is not valid yet (check this "
                    "machine's clock and the master's)")
        if code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
            host = urlsplit(url).hostname
            return (f"TLS: {where} presented a certificate not valid for {host} (connect with a "
                    "name or address the certificate lists in its subjectAltName, or give the "
                    "master a certificate for this one)")
        return (f"TLS: {where} presented a certificate that does not verify "
                f"({error.verify_message}; trusted: {trusted})")
    reason = (error.reason or "").upper()
    if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG",
                  "UNKNOWN_PROTOCOL", "HTTP_REQUEST"):
        plain = url.replace("wss://", "ws://", 1).replace("https://", "http://", 1)
        return (f"TLS: {where} does not speak TLS (it serves plain connections): use "
                f"{_origin(plain)} or give the master a [tls] certificate")
    return f"TLS: the connection to {where} failed ({_reason(error)})"


def explain_server_failure(exc: BaseException) -> str | None:
    """What a failed TLS handshake on the server side means for its operator, in words, or
    None when there is nothing to tell (the peer left mid-handshake, as a plain client's probe
    whether this server speaks TLS does)."""
    error = _find_ssl_error(exc)
    if error is None or isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return None
    reason = (error.reason or "").upper()
    if reason in ("TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE",
                  "SSLV3_ALERT_CERTIFICATE_UNKNOWN"):
        return ("the client does not trust this server's certificate (give the client the CA "
                f"file that signed it: ca_file / --ca-file / {CA_FILE_ENV}; or check the "
                "name or address it connects with is in the certificate)")
    if reason == "SSLV3_ALERT_CERTIFICATE_EXPIRED":
        return ("the client finds this server's certificate expired or not yet valid (renew "
                "[tls] cert; a development certificate is renewed by restarting the master)")
    if reason == "HTTP_REQUEST":
        return "a plain ws:// or http:// client (it must use wss:// or https://)"
    if reason in ("WRONG_VERSION_NUMBER", "UNSUPPORTED_PROTOCOL", "NO_SHARED_CIPHER",
                  "VERSION_TOO_LOW", "TLSV1_ALERT_PROTOCOL_VERSION"):
        return f"no TLS version or cipher in common with the client ({_reason(error)})"
    return f"TLS handshake failed ({_reason(error)})"


async def speaks_tls(host: str, port: int, timeout: float = 3.0) -> bool:
    """True when the server at host:port answers a TLS ClientHello with a TLS handshake record:
    a `ws://` client whose handshake failed learns that it should have used `wss://`."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    tls = context.wrap_bio(incoming, outgoing, server_side=False)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    with trio.move_on_after(timeout):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            return False
        async with stream:
            try:
                await stream.send_all(hello)
                answer = await stream.receive_some(5)
            except (OSError, trio.BrokenResourceError):
                return False
            # A TLS record: content type 22 (handshake) or 21 (alert), version 3.x.
            return len(answer) >= 2 and answer[0] in (21, 22) and answer[1] == 3
    return False
