"""A NAT'd edge network built from Linux network namespaces, for the system tests.

Three namespaces joined by two veth pairs (names carry a prefix with the test run's pid, so
parallel runs never clash):

    core (10.77.0.1/24) ── veth ── router (10.77.0.254 | 10.78.0.1) ── veth ── edge (10.78.0.2/24)

- `core` holds the master and the frameworks; it has no route to 10.78.0.0/24 at all.
- `router` forwards and masquerades everything leaving towards `core`, and (as a home router
  does) forwards from `core` into `edge` only packets of connections the edge opened
  (conntrack ESTABLISHED/RELATED). Impairments live in its own `impair` chain, jumped to first
  from FORWARD, and in `tbf` qdiscs on both of its interfaces.
- `edge` holds the agents; its default route goes through the router.

Processes run inside with `ip netns exec NS …` (`Topology.argv`). Python code of the test
process itself reaches into a namespace with `entered(ns)` (setns(2) on the calling thread
only, undone on exit) — sockets keep the namespace they were created in, and children forked
inside inherit it — or with `NetnsSockets`, a Trio socket factory that makes every Trio socket
of the current run in one namespace (the framework SDK then lives in `core`).

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), `ip` (iproute2), `iptables` and `tc`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import trio

CORE_IP = "10.77.0.1"
ROUTER_CORE_IP = "10.77.0.254"
ROUTER_EDGE_IP = "10.78.0.1"
EDGE_IP = "10.78.0.2"
EDGE_NET = "10.78.0.0/24"

PREFIX = "edgerm-sys"
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsUnavailable(RuntimeError):
    """Namespaces (or the tools to build them) are not available here."""


def _run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(ns: str) -> Iterator[None]:
    """Run the calling thread in network namespace `ns` for the block (other threads are not
    affected). Sockets created and processes forked inside stay in `ns`."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


class NetnsSockets(trio.abc.SocketFactory):
    """A Trio socket factory: every `trio.socket.socket()` of the run is made in `ns`
    (`trio.socket.set_custom_socket_factory(NetnsSockets(ns))`)."""

    def __init__(self, ns: str) -> None:
        self.ns = ns

    def socket(self, family: socket.AddressFamily | int = socket.AF_INET,
               type: socket.SocketKind | int = socket.SOCK_STREAM,
               proto: int = 0) -> trio.socket.SocketType:
        with entered(self.ns):
            sock = socket.socket(family, type, proto)
        return trio.socket.from_stdlib_socket(sock)


def check_privileges() -> None:
    """Raise `NetnsUnavailable` saying what is missing when namespaces cannot be built here."""
    missing = [t for t in ("ip", "iptables", "tc") if shutil.which(t) is None]
    if missing:
        raise NetnsUnavailable(
            f"the system tests need {', '.join(missing)} on PATH "
            f"(Debian: apt-get install iproute2 iptables)")
    probe = f"{PREFIX}-{os.getpid()}-probe"
    proc = _run(["ip", "netns", "add", probe], check=False)
    if proc.returncode != 0:
        raise NetnsUnavailable(
            "the system tests build network namespaces and must run as root (CAP_NET_ADMIN and "
            f"CAP_SYS_ADMIN); `ip netns add` failed: {proc.stderr.strip()} (uid {os.getuid()})")
    _run(["ip", "netns", "del", probe], check=False)


def remove_stale() -> list[str]:
    """Delete namespaces of earlier runs whose process is gone (a SIGKILLed pytest cannot
    clean up after itself). Only names with this module's prefix are touched."""
    listed = _run(["ip", "netns", "list"], check=False).stdout
    removed = []
    for line in listed.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(rf"{PREFIX}-(\d+)-\w+", name)
        if m is None or os.path.exists(f"/proc/{m.group(1)}"):
            continue
        _kill_inside(name)
        _run(["ip", "netns", "del", name], check=False)
        removed.append(name)
    return removed


def _kill_inside(ns: str) -> None:
    """SIGKILL the processes still in `ns` (ours: only our tests start processes there)."""
    pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


@dataclass
class Topology:
    """The three namespaces and the router's knobs. `build()` then `destroy()` (always)."""

    tag: str

    def __post_init__(self) -> None:
        base = f"{PREFIX}-{self.tag}"
        self.core, self.router, self.edge = f"{base}-core", f"{base}-router", f"{base}-edge"
        short = f"es{self.tag}"[:11]          # interface names: at most 15 characters
        self.core_if, self.router_core_if = f"{short}c", f"{short}rc"
        self.router_edge_if, self.edge_if = f"{short}re", f"{short}e"
        self.built: list[str] = []

    # -- building

    def argv(self, ns: str, *cmd: str) -> list[str]:
        """The command line running `cmd` inside namespace `ns`."""
        return ["ip", "netns", "exec", ns, *cmd]

    def sh(self, ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(self.argv(ns, *cmd), check=check)

    def build(self) -> Topology:
        for ns in (self.core, self.router, self.edge):
            _run(["ip", "netns", "add", ns])
            self.built.append(ns)
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        # Each veth pair is created inside a namespace of ours, never in the caller's.
        _run(["ip", "-n", self.router, "link", "add", self.router_core_if, "type", "veth",
              "peer", "name", self.core_if, "netns", self.core])
        _run(["ip", "-n", self.router, "link", "add", self.router_edge_if, "type", "veth",
              "peer", "name", self.edge_if, "netns", self.edge])
        for ns, dev, addr in ((self.core, self.core_if, f"{CORE_IP}/24"),
                              (self.router, self.router_core_if, f"{ROUTER_CORE_IP}/24"),
                              (self.router, self.router_edge_if, f"{ROUTER_EDGE_IP}/24"),
                              (self.edge, self.edge_if, f"{EDGE_IP}/24")):
            _run(["ip", "-n", ns, "addr", "add", addr, "dev", dev])
            _run(["ip", "-n", ns, "link", "set", dev, "up"])
        _run(["ip", "-n", self.edge, "route", "add", "default", "via", ROUTER_EDGE_IP])
        r = self.router
        self.sh(r, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        self.sh(r, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", self.router_core_if,
                "-j", "MASQUERADE")
        self.sh(r, "iptables", "-N", "impair")
        self.sh(r, "iptables", "-A", "FORWARD", "-j", "impair")
        self.sh(r, "iptables", "-A", "FORWARD", "-i", self.router_core_if, "-o",
                self.router_edge_if, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                "-j", "ACCEPT")
        self.sh(r, "iptables", "-A", "FORWARD", "-i", self.router_core_if, "-o",
                self.router_edge_if, "-j", "DROP")
        return self

    def destroy(self) -> None:
        """Kill what still runs inside and delete the namespaces (their veths go with them)."""
        for ns in reversed(self.built):
            _kill_inside(ns)
            _run(["ip", "netns", "del", ns], check=False)
        self.built.clear()

    # -- impairments on the router

    def impair(self, loss: float = 0.0, rate_kbit: int = 0) -> None:
        """Random loss (each forwarded packet, both directions) and a token bucket on both
        router interfaces."""
        self.clear()
        if loss:
            self.sh(self.router, "iptables", "-A", "impair", "-m", "statistic", "--mode",
                    "random", "--probability", str(loss), "-j", "DROP")
        if rate_kbit:
            for dev in (self.router_core_if, self.router_edge_if):
                self.sh(self.router, "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
                        "rate", f"{rate_kbit}kbit", "burst", "1600", "latency", "500ms")

    def cut_off_edge(self) -> None:
        """Drop every packet coming from the edge."""
        self.sh(self.router, "iptables", "-A", "impair", "-i", self.router_edge_if, "-j", "DROP")

    def clear(self) -> None:
        """No loss, no rate limit, nothing cut off."""
        self.sh(self.router, "iptables", "-F", "impair")
        for dev in (self.router_core_if, self.router_edge_if):
            self.sh(self.router, "tc", "qdisc", "del", "dev", dev, "root", check=False)

    # -- observations

    def forward_drops(self) -> int:
        """Packets the impair chain dropped so far (proof that the impairment was active)."""
        out = self.sh(self.router, "iptables", "-L", "impair", "-v", "-n", "-x").stdout
        return sum(int(line.split()[0]) for line in out.splitlines()[2:] if line.strip())

    def masqueraded(self) -> int:
        """Connections the router's MASQUERADE rule has translated (its packet counter counts
        the first packet of each)."""
        out = self.sh(self.router, "iptables", "-t", "nat", "-L", "POSTROUTING", "-v", "-n",
                      "-x").stdout
        return sum(int(line.split()[0]) for line in out.splitlines()[2:]
                   if "MASQUERADE" in line)

    def udp_ports(self, ns: str, pid: int) -> list[int]:
        """UDP ports bound by process `pid` inside `ns`."""
        out = self.sh(ns, "ss", "-H", "-u", "-a", "-n", "-p").stdout
        ports = []
        for line in out.splitlines():
            if f"pid={pid}," in line:
                local = line.split()[3]
                ports.append(int(local.rsplit(":", 1)[1]))
        return ports
