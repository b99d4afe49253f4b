"""A real etcd cluster for tests and benchmarks: `EtcdCluster` runs three `etcd` members (Debian's
`etcd-server`, /usr/bin/etcd) on free loopback ports with data directories of their own.

    with EtcdCluster() as cluster:         # started, a leader elected
        client = EtcdClient(cluster.client_urls)
        cluster.kill(0); cluster.start(0)  # SIGKILL a member, start it again on its data

`etcd_cluster` (a pytest fixture, module scope: a cluster takes ~2 s to form) yields one;
tests keep apart by key prefix (`unique_prefix()`).

Resource handling: each member preallocates a 64 MB WAL, so the data directories live in one
temporary directory that `close()` removes after stopping every member, on failure too.
Ports are picked free at start; a member that cannot bind one (taken meanwhile) makes the
whole cluster start again on new ports, up to three times.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from edgerm_master.etcd_client import EtcdClient, cmp_create_revision, op_put
from edgerm_master.store_api import Fence
from edgerm_master.testing_io import end_process

__all__ = ["EtcdCluster", "etcd_cluster", "unique_prefix", "take_lead", "ETCD_BINARY",
           "TlsFiles", "make_tls_files"]

ETCD_BINARY = os.environ.get("EDGERM_ETCD", shutil.which("etcd") or "/usr/bin/etcd")
_prefixes = itertools.count(1)


def unique_prefix(name: str = "t") -> str:
    """A key prefix no other test of this process uses."""
    return f"/edgerm-test/{os.getpid()}-{name}-{next(_prefixes)}/"


async def take_lead(client: EtcdClient, prefix: str) -> Fence:
    """Become the leader of `prefix` by hand, without an election (election.py has its own
    tests): a new election key, as a new master's term, whose Fence deposes the previous."""
    key = (prefix + "leader").encode()
    await client.delete(key)
    result = await client.txn([cmp_create_revision(key, 0)], [op_put(key, b"test")])
    if not result.succeeded:
        raise RuntimeError(f"take_lead: {key!r} was taken meanwhile")
    return Fence(key, result.revision)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a throwaway CA, a server certificate for 127.0.0.1 and a client one."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def make_tls_files(directory: str) -> TlsFiles:
    """Make a CA and certificates signed by it in `directory` (with the openssl command; ECDSA
    P-256, valid one day)."""
    def run(*args: str, stdin: str | None = None) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True,
                       input=stdin, text=True)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=edgerm-test-ca")
    # etcd's own gateway calls its gRPC port with the server certificate as a client one, so
    # that one needs both usages.
    for name, usage in (("server", "serverAuth,clientAuth"), ("client", "clientAuth")):
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=edgerm-test-{name}")
        ext = os.path.join(directory, f"{name}.ext")
        with open(ext, "w") as f:
            f.write(f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", ext)
    d = directory
    return TlsFiles(os.path.join(d, "ca.pem"), os.path.join(d, "server.pem"),
                    os.path.join(d, "server.key"), os.path.join(d, "client.pem"),
                    os.path.join(d, "client.key"))


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class EtcdCluster:
    """Three (or `size`) etcd members on loopback. `start_all()` waits for a leader."""

    def __init__(self, size: int = 3, *, heartbeat_ms: int = 50, election_ms: int = 500,
                 tls: TlsFiles | None = None) -> None:
        """`tls`: serve clients on https:// only, requiring a client certificate signed by
        `tls.ca` (peers stay on plain http on loopback)."""
        self.size = size
        self.tls = tls
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.root = tempfile.mkdtemp(prefix="edgerm-etcd-")
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size
        self.client_ports: list[int] = []
        self.peer_ports: list[int] = []
        self._token = f"edgerm-{os.getpid()}-{time.monotonic_ns()}"

    @property
    def client_urls(self) -> list[str]:
        scheme = "https" if self.tls else "http"
        return [f"{scheme}://127.0.0.1:{p}" for p in self.client_ports]

    def _args(self, i: int, state: str) -> list[str]:
        peers = ",".join(f"e{j}=http://127.0.0.1:{p}" for j, p in enumerate(self.peer_ports))
        client = self.client_urls[i]
        peer = f"http://127.0.0.1:{self.peer_ports[i]}"
        tls = []
        if self.tls:
            tls = ["--cert-file", self.tls.server_cert, "--key-file", self.tls.server_key,
                   "--trusted-ca-file", self.tls.ca, "--client-cert-auth"]
        return [ETCD_BINARY, *tls, "--name", f"e{i}",
                "--data-dir", os.path.join(self.root, f"e{i}"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", peers, "--initial-cluster-state", state,
                "--initial-cluster-token", self._token,
                "--heartbeat-interval", str(self.heartbeat_ms),
                "--election-timeout", str(self.election_ms),
                "--log-level", "error", "--logger", "zap"]

    def start_all(self, timeout: float = 30.0) -> None:
        for attempt in range(3):
            ports = _free_ports(2 * self.size)
            self.client_ports, self.peer_ports = ports[:self.size], ports[self.size:]
            for i in range(self.size):
                self._spawn(i, "new")
            try:
                self.wait_healthy(timeout)
                return
            except RuntimeError:
                self.stop_all()
                for i in range(self.size):
                    shutil.rmtree(os.path.join(self.root, f"e{i}"), ignore_errors=True)
                if attempt == 2:
                    raise

    def _spawn(self, i: int, state: str) -> None:
        log = open(os.path.join(self.root, f"e{i}.log"), "ab")
        try:
            self.procs[i] = subprocess.Popen(self._args(i, state), stdout=log, stderr=log,
                                             stdin=subprocess.DEVNULL)
        finally:
            log.close()

    def member_status(self, i: int) -> dict[str, Any] | None:
        """A member's /v3/maintenance/status, or None if it does not answer."""
        req = urllib.request.Request(f"{self.client_urls[i]}/v3/maintenance/status", b"{}",
                                     {"Content-Type": "application/json"})
        context = None
        if self.tls:
            context = ssl.create_default_context(cafile=self.tls.ca)
            context.load_cert_chain(self.tls.client_cert, self.tls.client_key)
        try:
            with urllib.request.urlopen(req, timeout=1.0, context=context) as r:
                return dict(json.loads(r.read()))
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every running member answers and one of them leads; RuntimeError after
        `timeout` (with the members' log tails)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [i for i, p in enumerate(self.procs) if p is not None and p.poll() is None]
            if len(running) < sum(p is not None for p in self.procs):
                break  # a member died (a port taken meanwhile)
            statuses = [self.member_status(i) for i in running]
            if statuses and all(s is not None and s.get("leader", "0") != "0"
                                for s in statuses):
                return
            time.sleep(0.1)
        raise RuntimeError("etcd cluster did not become healthy: " + self.log_tail())

    def log_tail(self) -> str:
        tails = []
        for i in range(self.size):
            try:
                with open(os.path.join(self.root, f"e{i}.log"), "rb") as f:
                    tails.append(f"e{i}: " + f.read()[-500:].decode(errors="replace"))
            except OSError:
                pass
        return " | ".join(tails)

    def kill(self, i: int) -> None:
        """SIGKILL member `i` (its data stays; `start(i)` brings it back)."""
        proc = self.procs[i]
        if proc is not None:
            end_process(proc, signal.SIGKILL)
            self.procs[i] = None

    def pause(self, i: int) -> None:
        """SIGSTOP member `i`: it holds its connections and answers nothing (a hung host)."""
        proc = self.procs[i]
        if proc is not None:
            proc.send_signal(signal.SIGSTOP)

    def resume(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None:
            proc.send_signal(signal.SIGCONT)

    def stop(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None:
            end_process(proc, signal.SIGTERM)
            self.procs[i] = None

    def start(self, i: int) -> None:
        """Start member `i` again on its data directory and ports (it rejoins)."""
        if self.procs[i] is None:
            self._spawn(i, "existing")

    def stop_all(self) -> None:
        for i in range(self.size):
            self.stop(i)

    def close(self) -> None:
        try:
            for i in range(self.size):
                self.resume(i)
                self.kill(i)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        try:
            self.start_all()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="module")
def etcd_cluster() -> Iterator[EtcdCluster]:
    """A healthy three-member cluster for a test module. A test that kills members must start
    them again (`start(i)` then `wait_healthy()`), also on failure (try/finally)."""
    if not os.path.exists(ETCD_BINARY):
        pytest.fail(f"etcd not found at {ETCD_BINARY}: install Debian's etcd-server "
                    "(scripts/test.sh does) or set EDGERM_ETCD")
    with EtcdCluster() as cluster:
        yield cluster
