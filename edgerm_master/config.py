"""The master's settings: every default and limit (`MasterConfig`, Mesos's constants.hpp +
flags.hpp), and how the operator sets them: a TOML file (`--config`), then command-line flags on
top. Times are seconds (float) unless the name ends in `_ms`.

TOML keys are the field names of `MasterConfig` (see docs/master.md); tokens are lists
(`agent_tokens = ["..."]`), role weights a table (`[role_weights] prod = 2.0`), framework
principals a table of tokens (`[frameworks.principals] analytics = "..."`). Unknown keys are
an error, so a typo does not silently leave a default in place. `--dev` generates any missing
token and prints them as one JSON line (`{"event": "dev-tokens", ...}`) before the ready line,
and without `[tls]` makes a development CA and certificate (edgerm_master/tls.py). The `[tls]`
files are checked in `parse_args`, so a mistake in them stops the master before it binds.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import sys
import tomllib
from dataclasses import dataclass, field
from typing import Any

from edgerm.logformat import LOG_FORMATS, LOG_LEVELS
from edgerm_master.principals import (
    DEFAULT_PRINCIPAL,
    frameworks_table,
    merge_tokens,
    parse_principals,
    shared_token,
)

__all__ = ["MasterConfig", "AGENT_SILENT_CALL_S", "parse_args", "load_config", "ConfigError",
           "principal_tokens", "reload_config", "RELOADABLE", "liveness_problem",
           "http_address", "parse_http_listen", "advertised_urls",
           "wildcard_host", "ADVERTISE_SCHEMES"]

# The longest an agent with its default settings goes without starting a new call when the
# one in flight gets no answer (docs/agent.md, "Liveness on a lossy link"): the Linux agent
# gives a call up after `timing.call_timeout_s` (10 s), the MicroPython and C agents after
# their CoAP exchange's retransmissions, ACK_TIMEOUT 1 s x 1.5 x (2^(MAX_RETRANSMIT 2 + 1) - 1)
# = 10.5 s; then each waits 1 s before the next call. The master counts only a new call as a
# sign of life: a retransmission is answered from the CoAP layer's cache without reaching it.
AGENT_SILENT_CALL_S = 10.5 + 1.0


@dataclass
class MasterConfig:
    # --- network (shell only)
    host: str = "127.0.0.1"
    coap_port: int = 5683
    ws_port: int = 5690
    data_dir: str = "./edgerm-data"
    log_level: str = "info"
    # Log lines as "text" or "json" (one event a line either way: edgerm.logformat).
    log_format: str = "text"
    # Prometheus metrics (metrics.py): off, the shell times nothing and /metrics answers 404.
    metrics: bool = True
    # WebSocket connections: the first message (Subscribe, Register, ...) must come this soon
    # after connecting (on /agent one heartbeat interval with jitter later still), or the
    # connection is closed; at most this many open in all and from one address (0: no limit).
    ws_first_message_s: float = 10.0
    ws_max_connections: int = 1000
    ws_max_connections_per_source: int = 200
    # The HTTP server (JSON API under /api/v1, the dashboard at /), TOML `[http] listen`:
    # "HOST:PORT"; "" (default): the WebSocket's host, its port + 1 (5691), or any free port
    # when the WebSocket port is 0; "off": no HTTP server.
    http_listen: str = ""
    # TLS on the WebSocket and HTTP ports (wss://, https://), TOML `[tls] cert`, `key`: PEM
    # files of the certificate (then its chain) and its unencrypted private key; "" (default):
    # plain ws:// and http://, or under --dev a generated development CA and certificate
    # (edgerm_master/tls.py, docs/operations.md "TLS").
    tls_cert: str = ""
    tls_key: str = ""

    # --- authentication: constant-time compared; empty lists refuse everyone; not in repr()
    agent_tokens: list[str] = field(default_factory=list, repr=False)
    # Framework principals (TOML `[frameworks.principals] name = "token"` or a list of tokens,
    # `--framework-principal NAME=TOKEN`): a framework is bound to the principal whose token
    # created it (edgerm_master/principals.py). Reloaded on SIGHUP, like the other tokens.
    framework_principals: dict[str, list[str]] = field(default_factory=dict, repr=False)
    # Deprecated in the TOML: these tokens are principal "default" (`--framework-token` is
    # that principal's shorthand, not deprecated).
    framework_tokens: list[str] = field(default_factory=list, repr=False)
    operator_tokens: list[str] = field(default_factory=list, repr=False)

    # --- agents
    heartbeat_ms: int = 5000
    # Heartbeats are spread by up to this fraction of the interval so that a fleet that booted
    # together does not heartbeat in lock step.
    jitter_fraction: float = 0.1
    # Silence of this many heartbeat intervals makes an agent UNREACHABLE (Mesos: 5 pings of
    # 15 s). The window (60 s by default) must exceed an agent's interval plus what it may
    # spend on calls that get no answer, several times over on a lossy link: docs/agent.md,
    # "Liveness on a lossy link", has the arithmetic; `config.liveness_problem` checks it.
    unreachable_after_missed: int = 12
    # An UNREACHABLE agent that stays away this long is LOST and so are its tasks.
    lost_after_s: float = 600.0
    # An unacknowledged command goes out again in a reply only this long after it last did,
    # so the replies to a burst of status updates do not each repeat every launch.
    command_resend_s: float = 1.0
    # Payload budget for commands in one reply when the agent did not say (CoAP without Block2).
    default_max_payload: int = 1024

    # --- frameworks and offers
    offer_timeout_s: float = 30.0
    refuse_default_s: float = 5.0
    # How long an idle cluster waits between allocation rounds; changes trigger one sooner.
    allocation_interval_s: float = 1.0
    failover_default_s: float = 60.0
    failover_max_s: float = 7 * 24 * 3600.0
    framework_heartbeat_s: float = 15.0
    # An unacknowledged status update is re-sent this often.
    status_retry_s: float = 10.0
    # Per-role weights for DRF; roles not listed weigh 1.
    role_weights: dict[str, float] = field(default_factory=dict)
    # Terminal, acknowledged tasks the master remembers per framework (for views and reconcile).
    completed_tasks_kept: int = 1000
    # Frameworks removed (torn down, failed over too late) whose tasks the operator's view still
    # lists, newest kept (Mesos's completed frameworks); memory only.
    completed_frameworks_kept: int = 50
    # Undelivered TaskOutput kept per task; older ones are dropped and counted.
    outputs_kept: int = 256

    # --- modules (issue 5.3)
    module_max_bytes: int = 1024 * 1024
    modules_total_bytes: int = 64 * 1024 * 1024
    # An uploaded module no task refers to is kept this long before it is removed.
    module_grace_s: float = 3600.0

    # --- message size limits (bytes of one decoded message)
    agent_message_max: int = 64 * 1024
    framework_message_max: int = 2 * 1024 * 1024 + 4096
    max_tasks_per_accept: int = 1000
    max_message_text: int = 4096

    # --- store
    # "FULL": every commit survives a power cut; "NORMAL": survives a process crash (kill -9).
    sqlite_synchronous: str = "FULL"
    # TOML `[store]` table (`backend = "etcd"`, `endpoints = [...]`, ...; docs/ha.md): "sqlite"
    # is the embedded store of a single master; "etcd" an etcd v3 cluster (3.4+, JSON gateway)
    # that several masters share, one of them leading.
    store_backend: str = "sqlite"
    store_endpoints: list[str] = field(default_factory=list)   # etcd client URLs
    # Every key of this cluster's state starts with this (several clusters may share an etcd).
    store_prefix: str = "/edgerm/"
    # The leader's lease: a leader that stops renewing it (dead, stopped, cut off) is replaced
    # this long after its last renewal (Kubernetes' default lease is 15 s).
    store_lease_ttl_s: float = 5.0
    # How long one etcd request may take before the next endpoint is tried.
    store_timeout_s: float = 5.0
    # TLS to etcd (https:// endpoints): trust anchors, and a client certificate and its key.
    store_ca_file: str = ""
    store_cert_file: str = ""
    store_key_file: str = ""

    # --- high availability (docs/ha.md; TOML table [master]: name, urls)
    # This master's name among the masters sharing one etcd store (the members registry and
    # the election key name it); "" takes "<host>:<coap port>" once the ports are bound.
    name: str = ""
    # The URLs clients use to reach this master, per transport ("coap", "ws"): a standby names
    # the leader's to every client it refuses. Empty entries are derived from the bound
    # addresses, which only works when the master binds the address clients use (not 0.0.0.0).
    advertise_urls: dict[str, str] = field(default_factory=dict)

    # What loading the TOML found worth a warning (a deprecated key); logged at start and on
    # each reload. Not a TOML key.
    notices: list[str] = field(default_factory=list, metadata={"toml": False})

    @property
    def heartbeat_s(self) -> float:
        return self.heartbeat_ms / 1000.0

    @property
    def unreachable_after_s(self) -> float:
        return self.heartbeat_s * self.unreachable_after_missed

    @property
    def jitter_ms(self) -> int:
        return int(self.heartbeat_ms * self.jitter_fraction)


class ConfigError(ValueError):
    #: The master's exit code for it: 2, a configuration mistake; 1, the machine (a data dir
    #: it cannot write).
    exit_code = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgerm-master",
        description="EdgeRM master: offers agents' resources to frameworks (CoAP + WebSocket).")
    p.add_argument("--config", help="TOML file with MasterConfig keys")
    p.add_argument("--data-dir", help="directory for the SQLite store and modules")
    p.add_argument("--host", help="bind address for CoAP and WebSocket (default 127.0.0.1)")
    p.add_argument("--coap-port", type=int, help="CoAP/UDP port (default 5683; 0: any)")
    p.add_argument("--ws-port", type=int, help="WebSocket port (default 5690; 0: any)")
    p.add_argument("--agent-token", action="append", help="agent token (repeatable)")
    p.add_argument("--framework-token", action="append",
                   help="a token of framework principal \"default\" (repeatable)")
    p.add_argument("--framework-principal", action="append", metavar="NAME=TOKEN",
                   help="a token of framework principal NAME (repeatable)")
    p.add_argument("--operator-token", action="append", help="operator token (repeatable)")
    p.add_argument("--heartbeat-ms", type=int, help="agent heartbeat interval")
    p.add_argument("--unreachable-after-missed", type=int,
                   help="heartbeat intervals of silence before an agent is UNREACHABLE "
                   "(default 12)")
    p.add_argument("--lost-after-s", type=float,
                   help="seconds UNREACHABLE before an agent's tasks are LOST (default 600)")
    p.add_argument("--offer-timeout-s", type=float, help="offer lifetime (default 30)")
    p.add_argument("--failover-timeout-s", type=float,
                   help="default framework failover timeout (default 60)")
    p.add_argument("--allocation-interval-s", type=float, help="allocation period (default 1)")
    p.add_argument("--ws-first-message-s", type=float,
                   help="WebSocket: close a connection silent this long after opening (default 10)")
    p.add_argument("--ws-max-connections", type=int,
                   help="WebSocket: open connections in all (default 1000; 0: no limit)")
    p.add_argument("--ws-max-connections-per-source", type=int,
                   help="WebSocket: open connections from one address (default 200; 0: no limit)")
    p.add_argument("--http-listen", metavar="HOST:PORT",
                   help="HTTP API and dashboard (default: --host, WebSocket port + 1; "
                   "port 0: any; off: none)")
    p.add_argument("--tls-cert", metavar="PEM",
                   help="serve wss:// and https:// with this certificate (then its chain)")
    p.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    p.add_argument("--sqlite-synchronous", choices=["FULL", "NORMAL", "EXTRA"])
    p.add_argument("--store-backend", choices=["sqlite", "etcd"],
                   help="where the state lives (default sqlite; etcd: several masters)")
    p.add_argument("--store-endpoint", action="append",
                   help="etcd client URL (repeatable or comma-separated)")
    p.add_argument("--store-prefix", help="etcd key prefix of this cluster (default /edgerm/)")
    p.add_argument("--store-lease-ttl-s", type=float,
                   help="leader lease in seconds: failover time after a leader dies (default 5)")
    p.add_argument("--store-timeout-s", type=float,
                   help="etcd request timeout before the next endpoint (default 5)")
    p.add_argument("--store-ca-file", help="etcd TLS: CA certificates (PEM)")
    p.add_argument("--store-cert-file", help="etcd TLS: client certificate (PEM)")
    p.add_argument("--store-key-file", help="etcd TLS: client certificate's key (PEM)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["text", "json"],
                   help="log lines as text or one JSON object a line (default text)")
    p.add_argument("--no-metrics", dest="metrics", action="store_const", const=False,
                   help="no Prometheus metrics: nothing timed on the hot path, no /metrics")
    p.add_argument("--name", help="this master's name among several sharing one etcd store "
                   "(default <host>:<coap port>)")
    p.add_argument("--advertise-url", action="append", metavar="KIND=URL",
                   help="the URL clients use for this master on transport KIND (coap, ws), e.g. "
                   "coap=coap://10.0.0.5:5683 (repeatable; default: the bound address)")
    p.add_argument("--dev", action="store_true",
                   help="development mode: generate missing tokens and print them; without "
                   "--tls-cert, serve TLS with a generated CA (<data dir>/tls/ca.pem)")
    return p


_FLAG_TO_FIELD = {
    "data_dir": "data_dir", "host": "host", "coap_port": "coap_port", "ws_port": "ws_port",
    "agent_token": "agent_tokens", "framework_token": "framework_tokens",
    "operator_token": "operator_tokens", "heartbeat_ms": "heartbeat_ms",
    "unreachable_after_missed": "unreachable_after_missed", "lost_after_s": "lost_after_s",
    "offer_timeout_s": "offer_timeout_s", "failover_timeout_s": "failover_default_s",
    "allocation_interval_s": "allocation_interval_s",
    "ws_first_message_s": "ws_first_message_s", "ws_max_connections": "ws_max_connections",
    "ws_max_connections_per_source": "ws_max_connections_per_source",
    "sqlite_synchronous": "sqlite_synchronous", "log_level": "log_level",
    "log_format": "log_format", "metrics": "metrics",
    "http_listen": "http_listen", "name": "name",
    "tls_cert": "tls_cert", "tls_key": "tls_key",
    "store_backend": "store_backend", "store_endpoint": "store_endpoints",
    "store_prefix": "store_prefix", "store_lease_ttl_s": "store_lease_ttl_s",
    "store_timeout_s": "store_timeout_s", "store_ca_file": "store_ca_file",
    "store_cert_file": "store_cert_file", "store_key_file": "store_key_file",
}

# TOML tables whose keys are fields with a prefix: `[http] listen = ...` is `http_listen`.
_SECTIONS = {"http": "http_", "tls": "tls_"}
# Transports a master can advertise a URL for, with the URL schemes clients accept for each.
ADVERTISE_SCHEMES = {"coap": ("coap://",), "ws": ("ws://", "wss://"),
                     "http": ("http://", "https://")}
# The keys of the TOML table [master] and the MasterConfig fields they set.
_MASTER_TABLE = {"name": "name", "urls": "advertise_urls"}
# What a SIGHUP reloads (edgerm_master/reload.py); every other setting needs a restart.
RELOADABLE = ("framework_principals", "framework_tokens", "agent_tokens", "operator_tokens")


def load_config(toml_text: str | None = None, overrides: dict[str, Any] | None = None,
                source: str = "config") -> MasterConfig:
    """`source` names the TOML text in errors ("config /etc/edgerm/master.toml")."""
    cfg = MasterConfig()
    fields = {f.name: f for f in dataclasses.fields(MasterConfig)
              if f.metadata.get("toml", True)}
    values: dict[str, Any] = {}
    if toml_text:
        try:
            values.update(tomllib.loads(toml_text))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{source}: not valid TOML ({e}): fix the syntax") from None
    try:
        frameworks_table(values)
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None
    if "framework_tokens" in values:
        cfg.notices.append(
            f"{source}: framework_tokens is deprecated: its tokens are framework principal "
            f"\"{DEFAULT_PRINCIPAL}\"; write [frameworks.principals] {DEFAULT_PRINCIPAL} = "
            "[...] instead (docs/master.md, \"Framework principals\")")
    for section, prefix in _SECTIONS.items():
        table = values.pop(section, None)
        if table is None:
            continue
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table ([{section}] on its own "
                              "line, then its keys)")
        for key, value in table.items():
            if prefix + key not in fields:
                raise ConfigError(f"{source}: unknown key {key!r} in [{section}] "
                                  "(docs/master.md lists the keys)")
            values[prefix + key] = value
    table = values.pop("master", None)
    if table is not None:
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [master] must be a table (name, urls)")
        for key, value in table.items():
            if key not in _MASTER_TABLE:
                raise ConfigError(f"{source}: unknown key {key!r} in [master] (name, urls)")
            values[_MASTER_TABLE[key]] = value
    table = values.pop("store", None)
    if table is not None:
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: store must be a table ([store] backend = ...)")
        for key, value in table.items():
            if f"store_{key}" not in fields:
                raise ConfigError(f"{source}: unknown key {key!r} in [store] (docs/ha.md lists "
                                  "the keys)")
            values[f"store_{key}"] = value
    values.update(overrides or {})
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{source}: unknown key {key!r} (docs/master.md lists the keys)")
        default = getattr(cfg, key)
        if isinstance(default, list):
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{source}: {key} must be a list of strings")
        elif key == "framework_principals":
            try:
                value = parse_principals(value)
            except ValueError as e:
                raise ConfigError(f"{source}: {e}") from None
        elif isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {key} must be a table")
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{source}: {key} must be true or false")
        elif isinstance(default, int):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{source}: {key} must be an integer")
        elif isinstance(default, float):
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(f"{source}: {key} must be a number")
            value = float(value)
        elif isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{source}: {key} must be a string")
        setattr(cfg, key, value)
    if cfg.heartbeat_ms <= 0:
        raise ConfigError("heartbeat_ms must be > 0")
    if cfg.unreachable_after_missed < 1:
        raise ConfigError("unreachable_after_missed must be >= 1")
    if not 0 <= cfg.jitter_fraction < 1:
        raise ConfigError("jitter_fraction must be >= 0 and < 1")
    if cfg.unreachable_after_s <= cfg.heartbeat_s * (1 + cfg.jitter_fraction):
        raise ConfigError(
            f"unreachable_after_missed = {cfg.unreachable_after_missed}: a window of "
            f"{cfg.unreachable_after_s:g} s is not longer than one heartbeat interval plus its "
            f"jitter ({cfg.heartbeat_s * (1 + cfg.jitter_fraction):g} s), so every agent would "
            "be marked UNREACHABLE between two heartbeats; use 2 or more (default 12)")
    for key in ("lost_after_s", "offer_timeout_s", "allocation_interval_s",
                "ws_first_message_s"):
        if not getattr(cfg, key) > 0:
            raise ConfigError(f"{key} must be > 0")
    if cfg.http_listen not in ("", "off"):
        try:
            parse_http_listen(cfg.http_listen)
        except ValueError as e:
            raise ConfigError(f"http listen: {e}; use HOST:PORT, or \"off\"") from None
    for key in ("ws_max_connections", "ws_max_connections_per_source"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{key} must be >= 0 (0: no limit)")
    if cfg.log_level not in LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, not "
                          f"{cfg.log_level!r}")
    if cfg.log_format not in LOG_FORMATS:
        raise ConfigError(f"log_format must be one of {', '.join(LOG_FORMATS)}, not "
                          f"{cfg.log_format!r}")
    _check_advertised(cfg, source)
    shared = shared_token(principal_tokens(cfg))
    if shared:
        raise ConfigError(f"{source}: framework principals {shared[0]} and {shared[1]} share a "
                          "token: give each principal its own tokens")
    _check_store(cfg)
    if cfg.store_backend == "etcd" and wildcard_host(cfg.host):
        missing = sorted({"coap", "ws"} - set(cfg.advertise_urls))
        if missing:
            raise ConfigError(
                f"{source}: host = {cfg.host!r} binds every address, so a standby could not "
                f"tell clients which one reaches this master: set [master] urls for "
                f"{', '.join(missing)} (or --advertise-url KIND=URL)")
    return cfg


def principal_tokens(cfg: MasterConfig) -> dict[str, list[str]]:
    """Every framework principal with its tokens: `framework_principals`, with the
    `framework_tokens` (and `--framework-token`) added to principal "default"."""
    return merge_tokens(cfg.framework_principals, cfg.framework_tokens)


def parse_http_listen(listen: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port); ValueError with what is wrong."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{listen!r} is not HOST:PORT (e.g. 127.0.0.1:5691)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"{listen!r}: port {port!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"{listen!r}: port {number} is not in 0..65535")
    return host, number


def http_address(cfg: MasterConfig) -> tuple[str, int] | None:
    """Where the HTTP server listens, or None ("off"): `http_listen`, else the WebSocket's host
    and port + 1 (any free port when the WebSocket port is 0: tests, several masters)."""
    if cfg.http_listen == "off":
        return None
    if cfg.http_listen:
        return parse_http_listen(cfg.http_listen)
    return cfg.host, (cfg.ws_port + 1 if 0 < cfg.ws_port < 65535 else 0)



def _check_advertised(cfg: MasterConfig, source: str) -> None:
    if cfg.name and (len(cfg.name) > 64 or not cfg.name.isprintable() or "/" in cfg.name):
        raise ConfigError(f"{source}: [master] name {cfg.name!r} must be 1-64 printable "
                          "characters without '/' (it is part of an etcd key)")
    for kind, url in cfg.advertise_urls.items():
        schemes = ADVERTISE_SCHEMES.get(kind)
        if schemes is None:
            raise ConfigError(f"{source}: [master] urls: unknown transport {kind!r} (use "
                              f"{', '.join(sorted(ADVERTISE_SCHEMES))})")
        if not isinstance(url, str) or not url.startswith(schemes) or \
                len(url) <= len(url.split("://")[0]) + 3:
            raise ConfigError(f"{source}: [master] urls.{kind} = {url!r} must be a URL starting "
                              f"with {' or '.join(schemes)} and naming a host clients can reach")


def advertised_urls(cfg: MasterConfig, coap: tuple[str, int], ws: tuple[str, int],
                    http: tuple[str, int] | None = None) -> dict[str, str]:
    """The URLs this master advertises per transport: the configured ones, the others made of
    the bound addresses (an IPv6 host in brackets). "http" (the API and the dashboard) only
    when HTTP is served (`http`: its bound address) and, bound to every address, only when
    configured: a wildcard host is no URL. With TLS the derived ones are wss:// and https://."""
    def hostport(addr: tuple[str, int]) -> str:
        host = addr[0]
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    s = "s" if cfg.tls_cert else ""
    urls = {"coap": f"coap://{hostport(coap)}", "ws": f"ws{s}://{hostport(ws)}"}
    if http is not None and not wildcard_host(http[0]):
        urls["http"] = f"http{s}://{hostport(http)}"
    urls.update(cfg.advertise_urls)
    return urls


def wildcard_host(host: str) -> bool:
    """True when `host` binds every address (clients cannot use it as a URL)."""
    return host in ("", "0.0.0.0", "::", "[::]")


def _check_store(cfg: MasterConfig) -> None:
    """The `[store]` settings, each problem with what to write instead."""
    if cfg.store_backend not in ("sqlite", "etcd"):
        raise ConfigError(f"[store] backend = {cfg.store_backend!r}: use \"sqlite\" (one master) "
                          "or \"etcd\" (several masters sharing an etcd cluster)")
    # "a,b" from a flag or a TOML string: a list of URLs.
    cfg.store_endpoints = [u.strip() for e in cfg.store_endpoints for u in e.split(",")
                           if u.strip()]
    if cfg.store_backend != "etcd":
        return
    if not cfg.store_endpoints:
        raise ConfigError("[store] backend = \"etcd\" needs endpoints = [\"http://HOST:2379\", "
                          "...] (or --store-endpoint): the etcd members' client URLs")
    for url in cfg.store_endpoints:
        if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
            raise ConfigError(f"[store] endpoint {url!r} is not an http:// or https:// URL "
                              "(etcd's client URL, e.g. http://10.0.0.1:2379)")
    if not cfg.store_prefix.startswith("/") or not cfg.store_prefix.endswith("/"):
        raise ConfigError(f"[store] prefix = {cfg.store_prefix!r}: it must start and end with "
                          "\"/\" (e.g. \"/edgerm/\")")
    if not cfg.store_lease_ttl_s >= 1:
        raise ConfigError(f"[store] lease_ttl_s = {cfg.store_lease_ttl_s:g}: etcd leases are "
                          "whole seconds, at least 1 (2 to 15 is usual)")
    if not cfg.store_timeout_s > 0:
        raise ConfigError("[store] timeout_s must be > 0")
    if cfg.store_key_file and not cfg.store_cert_file:
        raise ConfigError("[store] key_file is set without cert_file: give the client "
                          "certificate too")
    for key in ("store_ca_file", "store_cert_file", "store_key_file"):
        path = getattr(cfg, key)
        if path and not os.path.isfile(path):
            raise ConfigError(f"[store] {key[6:]} = {path!r}: no such file")
    from edgerm_master.etcd_store import MODULE_MAX_BYTES
    if cfg.module_max_bytes > MODULE_MAX_BYTES:
        raise ConfigError(f"module_max_bytes = {cfg.module_max_bytes}: the etcd store holds "
                          f"modules up to {MODULE_MAX_BYTES} bytes; lower module_max_bytes")


def _window_needed(heartbeat_s: float, jitter_fraction: float) -> float:
    return heartbeat_s * (1 + jitter_fraction) + AGENT_SILENT_CALL_S


def least_unreachable_after_missed(heartbeat_s: float, jitter_fraction: float) -> int:
    """The fewest missed heartbeats whose window passes `liveness_problem`'s rule."""
    return int(_window_needed(heartbeat_s, jitter_fraction) // heartbeat_s) + 1


def liveness_problem(cfg: MasterConfig) -> str | None:
    """Why agents with their default timing could be marked UNREACHABLE on a lossy link that
    loses nothing but a few datagrams, or None. The rule (docs/agent.md, "Liveness on a lossy
    link"): the UNREACHABLE window, heartbeat_ms x unreachable_after_missed, must be longer
    than an interval with its jitter plus what an agent spends on a call that gets no answer
    before it starts a new one -- several times longer, for a lossy link."""
    window = cfg.unreachable_after_s
    missed = least_unreachable_after_missed(cfg.heartbeat_s, cfg.jitter_fraction)
    if window > _window_needed(cfg.heartbeat_s, cfg.jitter_fraction):
        return None
    return (f"agents go UNREACHABLE after {window:g} s of silence (heartbeat_ms "
            f"{cfg.heartbeat_ms} x unreachable_after_missed {cfg.unreachable_after_missed}), "
            f"not longer than one interval with its jitter plus the {AGENT_SILENT_CALL_S:g} s an "
            "agent with default CoAP timing may spend on one call that gets no answer: a single "
            "lost datagram can make an agent UNREACHABLE. Use unreachable_after_missed >= "
            f"{missed} (more on a lossy link: docs/agent.md, \"Liveness on a lossy link\"), or "
            "shorter timing on the agents")


def parse_args(argv: list[str] | None = None) -> tuple[MasterConfig, dict[str, str]]:
    """Flags (and the TOML file they name) -> (config, what --dev generated: tokens, and
    "ca_file" when it made the TLS certificates). The TLS files are checked here, so a
    mistake in them stops the master before it binds anything."""
    args = _parser().parse_args(argv)
    text = None
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ConfigError(f"config {args.config}: {e.strerror or e}") from None
    overrides = {}
    for flag, key in _FLAG_TO_FIELD.items():
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = value
    if args.advertise_url:
        urls: dict[str, str] = {}
        for item in args.advertise_url:
            kind, sep, url = item.partition("=")
            if not sep:
                raise ConfigError(f"--advertise-url {item!r}: use KIND=URL, e.g. "
                                  "coap=coap://10.0.0.5:5683")
            urls[kind.strip()] = url.strip()
        overrides["advertise_urls"] = urls
    if args.framework_principal:
        overrides["framework_principals"] = _principal_flags(args.framework_principal)
    cfg = load_config(text, overrides, f"config {args.config}" if args.config else "config")
    generated: dict[str, str] = {}
    if args.dev:
        for key in ("agent_tokens", "framework_tokens", "operator_tokens"):
            if not _tokens_of(cfg, key):
                token = secrets.token_urlsafe(16)
                setattr(cfg, key, [token])
                generated[key[:-1]] = token
    from edgerm_master.tls import check_server_files, dev_certificates
    if args.dev and not cfg.tls_cert and not cfg.tls_key:
        try:
            generated["ca_file"] = str(dev_certificates(cfg).ca_file)
        except OSError as e:
            problem = ConfigError(f"data dir {cfg.data_dir}: {e.strerror or e} (writing the "
                                  "development TLS certificates); --data-dir must be a writable "
                                  "directory with free space")
            problem.exit_code = 1
            raise problem from None
    if cfg.tls_cert or cfg.tls_key:
        check_server_files(cfg.tls_cert, cfg.tls_key)
    return cfg, generated


def _principal_flags(items: list[str]) -> dict[str, list[str]]:
    """`--framework-principal NAME=TOKEN`s -> principals. Like every flag, they take the place
    of the file's setting (its principals)."""
    principals: dict[str, list[str]] = {}
    for item in items:
        name, sep, token = item.partition("=")
        if not sep:
            # No echo: what was given may be a token.
            raise ConfigError("--framework-principal needs NAME=TOKEN (a principal's name, "
                              "'=', one of its tokens)")
        principals.setdefault(name.strip(), []).append(token)
    return principals


def _tokens_of(cfg: MasterConfig, key: str) -> Any:
    """The tokens of kind `key` ("framework_tokens": of every principal)."""
    return principal_tokens(cfg) if key == "framework_tokens" else getattr(cfg, key)


def reload_config(argv: list[str] | None, generated: dict[str, str]) -> MasterConfig:
    """The config `parse_args(argv)` gave, read again (the TOML file may have changed) for a
    reload (reload.py); the tokens --dev generated then stand in again for what is still
    missing (none is generated anew). ConfigError if the file is unreadable or wrong."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg, _ = parse_args([a for a in argv if a != "--dev"])
    for kind, token in generated.items():
        if kind != "ca_file" and not _tokens_of(cfg, kind + "s"):
            setattr(cfg, kind + "s", [token])
    if "ca_file" in generated and not cfg.tls_cert and not cfg.tls_key:
        # The development certificates --dev made at the start (reused, not made anew), so a
        # reload does not see the TLS files as a change that needs a restart.
        from edgerm_master.tls import dev_certificates
        dev_certificates(cfg)
    return cfg
