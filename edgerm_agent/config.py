"""The agent's configuration: a TOML file parsed into one frozen `AgentConfig`.

docs/agent.md lists every key. Every default lives here; every error names the key.
Example::

    name = "pi-kitchen"
    work_dir = "/var/lib/edgerm-agent"

    [master]
    url = "wss://master.example:5690/agent"   # or "coap://master.example:5683"
    ca_file = "/etc/edgerm/ca.pem"            # wss://: the CA of the master's certificate
                                              # (default: EDGERM_CA_FILE, else system trust)
    # several masters (one leads, docs/ha.md): urls = ["coap://m1:5683", "coap://m2:5683"]
    token = "the cluster agent token"

    [resources]
    cpus = 2            # caps on what is detected (omit to offer all)
    reserved_mem_mb = 256
    ports = ["31000-31999"]

    [attributes]
    zone = "kitchen"    # labels, offered as text attributes

    [[devices]]
    name = "temp"
    kind = "sensor"
    unit = "Cel"
    file = "/sys/class/thermal/thermal_zone0/temp"
    scale = 0.001

    [[devices]]
    name = "fan"
    kind = "actuator"   # exclusive: one task at a time may set it
    output = "pwm"      # "switch" (0|1, the default), "pwm" (0..1), "level" (min..max)
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgerm_agent.actuators import OUTPUTS, ActuatorSpec
from edgerm_agent.sensors import SensorSpec

__all__ = ["AgentConfig", "ConfigError", "DeviceConfig", "GatewayConfig", "load_config",
           "parse_config"]


class ConfigError(ValueError):
    """The configuration is wrong; the message names the key."""


@dataclass(frozen=True)
class DeviceConfig:
    name: str
    kind: str                      # "sensor", "actuator", "other"
    shares: int = 0                # 0: exclusive
    unit: str = ""
    path: str = ""                 # host device node passed to containers (kind "other")
    sensor: SensorSpec | None = None
    actuator: ActuatorSpec | None = None


@dataclass(frozen=True)
class GatewayConfig:
    """`[gateway]`: this agent also serves the constrained agents behind it (docs/gateway.md)."""
    host: str = "::"                    # the local side: devices use host:port as their master
    port: int = 5683
    uplink: tuple[str, ...] = ()        # coap://HOST:PORT of each master; () = [master]'s coap
    cache_mb: float = 16.0              # module cache bound
    queue_max: int = 10_000             # kept updates at most
    queue_path: Path | None = None      # the SQLite queue; None: <work_dir>/gateway/queue.sqlite
    window_ms: float = 2.0              # aggregation window of live calls
    batch_max: int = 32                 # calls in one uplink message (the master takes 64)
    reply_timeout_s: float = 20.0       # a device call waits this long for the master's answer
    uplink_timeout_s: float = 10.0      # one uplink exchange, CoAP retransmissions included


@dataclass(frozen=True)
class AgentConfig:
    name: str
    work_dir: Path
    master_url: str
    token: str
    # resources: caps (None = detected value) and reservations subtracted from them
    cpus: float | None = None
    mem_mb: float | None = None
    disk_mb: float | None = None
    reserved_cpus: float = 0.0
    reserved_mem_mb: float = 0.0
    reserved_disk_mb: float = 0.0
    ports: tuple[tuple[int, int], ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    devices: tuple[DeviceConfig, ...] = ()
    executors: tuple[str, ...] = ("docker", "wasm")
    docker_host: str | None = None      # None: DOCKER_HOST or the default socket
    docker_pull: bool = False           # pull images missing locally
    wasm_default_mem_mb: float = 16.0   # cap for WASM tasks that ask for no memory
    wasm_stack_kb: int = 64
    wasm_fetch_attempts: int = 3        # a launch tries to get its module this many times
    wasm_fetch_retry_s: float = 1.0     # first pause between attempts (doubles each time)
    # A call without an answer is given up after call_timeout_s and the next one, a new
    # exchange that the master counts as a sign of life, starts after the back-off. Together
    # (11.1 s at most) they must fit the master's UNREACHABLE window (60 s by default) several
    # times over on a lossy link: docs/agent.md, "Liveness on a lossy link".
    call_timeout_s: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    heartbeat_s: float = 5.0            # until the master sends its own interval (its default)
    max_payload: int = 0                # 0: 1024 over CoAP; WebSocket always takes 64 KiB
    # CoAP transmission on the agent's link (RFC 7252 §4.8). A call is cut at call_timeout_s
    # (3 transmissions with these); a module block gets the whole budget,
    # ack_timeout * 1.5 * (2^(max_retransmit+1) - 1) = 93 s.
    coap_ack_timeout_s: float = 2.0
    coap_max_retransmit: int = 4
    coap_block_size: int = 1024         # module downloads; 16..1024, a power of two
    # Every master the agent may use, `master_url` first ([master] url and/or urls): it
    # follows the leader among them (docs/ha.md). Empty: only master_url.
    master_urls: tuple[str, ...] = ()
    gateway: GatewayConfig | None = None   # [gateway]: relay for constrained agents
    # [master] ca_file: the PEM CA certificates a wss:// master's certificate must chain to;
    # None: EDGERM_CA_FILE, else the system's trust store (edgerm.tls).
    ca_file: str | None = None

    @property
    def masters(self) -> tuple[str, ...]:
        return self.master_urls or (self.master_url,)

    @property
    def transport(self) -> str:
        return "coap" if urlsplit(self.master_url).scheme == "coap" else "websocket"


# The keys each table may hold (docs/agent.md). Any other key is an error that names it: a typo
# ("[master] uri = ...") must not silently leave a default in place, nor be reported as the
# required key it was meant to be. `attributes` holds free labels and is not listed.
_KEYS: dict[str, frozenset[str]] = {
    "": frozenset({"name", "work_dir", "master", "resources", "attributes", "devices",
                   "executors", "docker", "wasm", "timing", "coap", "gateway"}),
    "master": frozenset({"url", "urls", "token", "max_payload", "ca_file"}),
    "resources": frozenset({"cpus", "mem_mb", "disk_mb", "reserved_cpus", "reserved_mem_mb",
                            "reserved_disk_mb", "ports"}),
    "devices": frozenset({"name", "kind", "shares", "unit", "path", "constant", "sine", "file",
                          "scale", "output", "min", "max"}),
    "sine": frozenset({"mean", "amplitude", "period_s"}),
    "executors": frozenset({"enabled"}),
    "docker": frozenset({"host", "pull"}),
    "wasm": frozenset({"default_mem_mb", "stack_kb", "fetch_attempts", "fetch_retry_s"}),
    "timing": frozenset({"call_timeout_s", "backoff_initial_s", "backoff_max_s", "heartbeat_s"}),
    "coap": frozenset({"ack_timeout_s", "max_retransmit", "block_size"}),
    "gateway": frozenset({"host", "port", "uplink", "cache_mb", "queue_max", "queue_path",
                          "window_ms", "batch_max", "reply_timeout_s", "uplink_timeout_s"}),
}


def _check_keys(raw: Any, table: str, where: str) -> None:
    """Refuse keys the table does not have, naming the key and the ones it has."""
    if not isinstance(raw, dict):
        return  # the table's own check says what it must be
    known = _KEYS[table]
    for key in raw:
        if key not in known:
            name = f"{where}.{key}" if where else key
            scope = f"[{where}]" if where else "the top level"
            raise ConfigError(f"unknown key {name!r} ({scope} takes "
                              f"{', '.join(sorted(known))}): fix the name (docs/agent.md)")


def _check_all_keys(raw: dict[str, Any]) -> None:
    _check_keys(raw, "", "")
    for table in ("master", "resources", "executors", "docker", "wasm", "timing", "coap",
                  "gateway"):
        _check_keys(raw.get(table), table, table)
    devices = raw.get("devices")
    if isinstance(devices, list):
        for i, d in enumerate(devices):
            _check_keys(d, "devices", f"devices[{i}]")
            if isinstance(d, dict):
                _check_keys(d.get("sine"), "sine", f"devices[{i}].sine")


def load_config(path: str | os.PathLike[str]) -> AgentConfig:
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML ({e}): fix the syntax") from None
    return parse_config(raw, base=Path(path).parent)


def _get(raw: dict[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    value = raw.get(key)
    if value is None:
        return None
    allowed = types if isinstance(types, tuple) else (types,)
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        names = " or ".join(t.__name__ for t in allowed)
        raise ConfigError(f"{where}{key}: expected {names}, got {type(value).__name__}")
    return value


def _number(raw: dict[str, Any], key: str, where: str, default: float | None) -> float | None:
    value = _get(raw, key, (int, float), where)
    if value is None:
        return default
    if value < 0:
        raise ConfigError(f"{where}{key}: must not be negative")
    return float(value)


def _ports(items: Any) -> tuple[tuple[int, int], ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ConfigError("resources.ports: expected a list like [\"31000-31999\"]")
    out = []
    for item in items:
        try:
            lo, _, hi = str(item).partition("-")
            begin, end = int(lo), int(hi or lo)
        except ValueError:
            raise ConfigError(f"resources.ports: bad range {item!r}") from None
        if not 0 < begin <= end <= 65535:
            raise ConfigError(f"resources.ports: bad range {item!r}")
        out.append((begin, end))
    return tuple(out)


def _actuator(raw: dict[str, Any], name: str, where: str, journal: Path) -> ActuatorSpec:
    """An actuator's range and driver (edgerm_agent/actuators.py). Every actuator is exclusive:
    two tasks setting one relay at once would fight over it."""
    if raw.get("shares"):
        raise ConfigError(f"{where}shares: an actuator takes one task at a time; remove shares")
    for key in ("constant", "sine"):
        if key in raw:
            raise ConfigError(f"{where}{key}: a sensor source; an actuator takes output, min, "
                              "max, file, scale")
    output = _get(raw, "output", str, where) or "switch"
    if output not in OUTPUTS:
        raise ConfigError(f"{where}output: one of {', '.join(OUTPUTS)}")
    lo = _get(raw, "min", (int, float), where)
    hi = _get(raw, "max", (int, float), where)
    if output != "level":
        if lo is not None or hi is not None:
            raise ConfigError(f"{where}min/max: only for output = \"level\" ({output!r} takes "
                              f"{'0 or 1' if output == 'switch' else '0 to 1'})")
        lo, hi = 0.0, 1.0
    elif lo is None or hi is None or not lo <= hi:
        raise ConfigError(f"{where}min, max: output = \"level\" needs both, min <= max")
    path = _get(raw, "file", str, where) or ""
    scale = _get(raw, "scale", (int, float), where)
    return ActuatorSpec(name, output, min=float(lo), max=float(hi), path=path,
                        scale=1.0 if scale is None else float(scale),
                        journal=str(journal / f"{name}.log"))


def _device(raw: Any, i: int, journal: Path) -> DeviceConfig:
    where = f"devices[{i}]."
    if not isinstance(raw, dict):
        raise ConfigError(f"devices[{i}]: expected a table")
    name = _get(raw, "name", str, where)
    if not name:
        raise ConfigError(f"{where}name: required")
    kind = _get(raw, "kind", str, where) or "sensor"
    if kind not in ("sensor", "actuator", "other"):
        raise ConfigError(f"{where}kind: one of sensor, actuator, other")
    shares = _get(raw, "shares", int, where) or 0
    sensor = actuator = None
    if kind != "actuator":
        for key in ("output", "min", "max"):
            if key in raw:
                raise ConfigError(f"{where}{key}: only an actuator takes it")
    if kind == "actuator":
        if "/" in name or name.startswith("."):
            raise ConfigError(f"{where}name: an actuator's name names its journal file; "
                              "no '/' and no leading '.'")
        actuator = _actuator(raw, name, where, journal)
    if kind == "sensor":
        sources = [k for k in ("constant", "sine", "file") if k in raw]
        if len(sources) != 1:
            raise ConfigError(f"{where}: a sensor needs exactly one of constant, sine, file")
        src = sources[0]
        if src == "constant":
            sensor = SensorSpec(name, "constant", value=float(_get(raw, "constant",
                                                                     (int, float), where)))
        elif src == "sine":
            s = raw["sine"]
            if not isinstance(s, dict):
                raise ConfigError(f"{where}sine: expected {{mean, amplitude, period_s}}")
            period = float(s.get("period_s", 60.0))
            if period <= 0:
                raise ConfigError(f"{where}sine.period_s: must be positive")
            sensor = SensorSpec(name, "sine", mean=float(s.get("mean", 0.0)),
                                amplitude=float(s.get("amplitude", 1.0)), period_s=period)
        else:
            sensor = SensorSpec(name, "file", path=str(raw["file"]),
                                scale=float(_get(raw, "scale", (int, float), where) or 1.0))
    return DeviceConfig(name=name, kind=kind, shares=shares,
                        unit=_get(raw, "unit", str, where) or "",
                        path=_get(raw, "path", str, where) or "", sensor=sensor,
                        actuator=actuator)


def _master_urls(master: dict[str, Any]) -> tuple[str, ...]:
    """[master] url and urls: every master, `url` first, each once, each ws, wss or coap."""
    url = _get(master, "url", str, "master.")
    listed = _get(master, "urls", list, "master.") or []
    urls: list[str] = [url] if url else []
    for i, u in enumerate(listed):
        if not isinstance(u, str) or not u:
            raise ConfigError(f"master.urls[{i}]: expected a URL string like "
                              "\"coap://HOST:PORT\"")
        if u not in urls:
            urls.append(u)
    if not urls:
        raise ConfigError("master.url: required (ws://HOST:PORT/agent or coap://HOST:PORT; "
                          "several masters: master.urls = [...])")
    for u in urls:
        scheme = urlsplit(u).scheme
        if scheme not in ("ws", "wss", "coap"):
            key = "master.url" if u == url else f"master.urls[{listed.index(u)}]"
            raise ConfigError(f"{key}: scheme {scheme!r} of {u!r} is not ws, wss or coap")
    return tuple(urls)


def _ca_file(master: dict[str, Any], base: Path | None) -> str | None:
    """[master] ca_file (relative to the configuration file), which must exist."""
    given = _get(master, "ca_file", str, "master.")
    if not given:
        return None
    path = Path(given)
    if base is not None and not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise ConfigError(f"master.ca_file: no such file {str(path)!r} (the PEM certificate of "
                          "the CA that signed the master's; omit it to use the system's trusted "
                          "CAs)")
    return str(path)


def parse_config(raw: dict[str, Any], base: Path | None = None) -> AgentConfig:
    import socket

    _check_all_keys(raw)
    master = raw.get("master") or {}
    if not isinstance(master, dict):
        raise ConfigError("master: expected a table")
    urls = _master_urls(master)
    url = urls[0]
    token = _get(master, "token", str, "master.") or ""
    work_dir = Path(_get(raw, "work_dir", str, "") or "edgerm-agent")
    if base is not None and not work_dir.is_absolute():
        work_dir = base / work_dir
    res = raw.get("resources") or {}
    w = "resources."
    labels = raw.get("attributes") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ConfigError("attributes: a table of text labels")
    devices_raw = raw.get("devices") or []
    if not isinstance(devices_raw, list):
        raise ConfigError("devices: expected an array of tables ([[devices]])")
    devices = tuple(_device(d, i, work_dir / "actuators") for i, d in enumerate(devices_raw))
    names = [d.name for d in devices]
    if len(set(names)) != len(names):
        raise ConfigError("devices: names must be unique")
    ex = raw.get("executors") or {}
    enabled = tuple(ex.get("enabled", ("docker", "wasm")))
    for e in enabled:
        if e not in ("docker", "wasm"):
            raise ConfigError(f"executors.enabled: unknown executor {e!r}")
    docker = raw.get("docker") or {}
    wasm = raw.get("wasm") or {}
    timing = raw.get("timing") or {}
    t = "timing."
    return AgentConfig(
        name=_get(raw, "name", str, "") or socket.gethostname(),
        work_dir=work_dir,
        master_url=url,
        master_urls=urls,
        token=token,
        cpus=_number(res, "cpus", w, None),
        mem_mb=_number(res, "mem_mb", w, None),
        disk_mb=_number(res, "disk_mb", w, None),
        reserved_cpus=_number(res, "reserved_cpus", w, 0.0) or 0.0,
        reserved_mem_mb=_number(res, "reserved_mem_mb", w, 0.0) or 0.0,
        reserved_disk_mb=_number(res, "reserved_disk_mb", w, 0.0) or 0.0,
        ports=_ports(res.get("ports")),
        labels=dict(labels),
        devices=devices,
        executors=enabled,
        docker_host=_get(docker, "host", str, "docker."),
        docker_pull=bool(_get(docker, "pull", bool, "docker.") or False),
        wasm_default_mem_mb=_number(wasm, "default_mem_mb", "wasm.", 16.0) or 16.0,
        wasm_stack_kb=int(_number(wasm, "stack_kb", "wasm.", 64) or 64),
        wasm_fetch_attempts=max(1, int(_number(wasm, "fetch_attempts", "wasm.", 3) or 3)),
        wasm_fetch_retry_s=float(_number(wasm, "fetch_retry_s", "wasm.", 1.0) or 0.0),
        call_timeout_s=_number(timing, "call_timeout_s", t, 10.0) or 10.0,
        backoff_initial_s=_number(timing, "backoff_initial_s", t, 1.0) or 1.0,
        backoff_max_s=_number(timing, "backoff_max_s", t, 60.0) or 60.0,
        heartbeat_s=_number(timing, "heartbeat_s", t, 5.0) or 5.0,
        max_payload=int(_number(master, "max_payload", "master.", 0) or 0),
        **_coap(raw.get("coap") or {}),
        gateway=_gateway(raw["gateway"], urls, base) if "gateway" in raw else None,
        ca_file=_ca_file(master, base),
    )


def _gateway(gw: Any, masters: tuple[str, ...], base: Path | None) -> GatewayConfig:
    if not isinstance(gw, dict):
        raise ConfigError("gateway: expected a table ([gateway])")
    g = "gateway."
    uplink_raw = _get(gw, "uplink", (str, list), g)
    listed = [uplink_raw] if isinstance(uplink_raw, str) else list(uplink_raw or [])
    if not listed:
        listed = [u for u in masters if urlsplit(u).scheme == "coap"]
        if not listed:
            raise ConfigError("gateway.uplink: required when no [master] url is coap:// "
                              "(the relay's uplink is CoAP: uplink = \"coap://MASTER:5683\")")
    for u in listed:
        parts = urlsplit(u) if isinstance(u, str) else None
        if parts is None or parts.scheme != "coap" or not parts.hostname:
            raise ConfigError(f"gateway.uplink: {u!r} is not a coap://HOST:PORT URL")
    port = _get(gw, "port", int, g)
    if port is not None and not 0 <= port <= 65535:
        raise ConfigError("gateway.port: 0..65535 (0 picks a free one)")
    batch_max = _get(gw, "batch_max", int, g)
    if batch_max is not None and not 1 <= batch_max <= 64:
        raise ConfigError("gateway.batch_max: 1..64 (the master takes at most 64 calls)")
    queue_max = _get(gw, "queue_max", int, g)
    if queue_max is not None and queue_max < 1:
        raise ConfigError("gateway.queue_max: at least 1")
    queue_path = _get(gw, "queue_path", str, g)
    path = Path(queue_path) if queue_path else None
    if path is not None and base is not None and not path.is_absolute():
        path = base / path
    d = GatewayConfig()
    return GatewayConfig(
        host=_get(gw, "host", str, g) or d.host,
        port=d.port if port is None else port,
        uplink=tuple(listed),
        cache_mb=_number(gw, "cache_mb", g, d.cache_mb) or 0.0,
        queue_max=d.queue_max if queue_max is None else queue_max,
        queue_path=path,
        window_ms=_number(gw, "window_ms", g, d.window_ms) or 0.0,
        batch_max=d.batch_max if batch_max is None else batch_max,
        reply_timeout_s=_number(gw, "reply_timeout_s", g, d.reply_timeout_s) or 1.0,
        uplink_timeout_s=_number(gw, "uplink_timeout_s", g, d.uplink_timeout_s) or 1.0,
    )


def _coap(coap: dict[str, Any]) -> dict[str, Any]:
    c = "coap."
    ack = _number(coap, "ack_timeout_s", c, 2.0)
    retransmit = _number(coap, "max_retransmit", c, 4)
    block = _number(coap, "block_size", c, 1024)
    if ack is None or ack <= 0:
        raise ConfigError("coap.ack_timeout_s: must be above 0 (RFC 7252 default 2)")
    if retransmit is None or not 0 <= retransmit <= 10 or retransmit != int(retransmit):
        raise ConfigError("coap.max_retransmit: a whole number from 0 to 10 (default 4)")
    if block not in (16, 32, 64, 128, 256, 512, 1024):
        raise ConfigError("coap.block_size: one of 16, 32, 64, 128, 256, 512, 1024")
    return {"coap_ack_timeout_s": float(ack), "coap_max_retransmit": int(retransmit),
            "coap_block_size": int(block)}
