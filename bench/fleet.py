"""A fleet coming back after a power cut: one master process, a million simulated agents.

The master runs as its own process (`python -m edgerm_master`, SQLite FULL, heartbeat 60 s).
One or more load-generator processes (`--generators`, default 1: the machine has 2 cores, one
for the master and one for the generator) speak raw CoAP over UDP on loopback from
`--sockets` source sockets each, every socket on its own loopback address (127.0.g.k), as a
fleet of devices would, so the master's per-address quotas see many peers.

Phase 1, registration: every agent registers through the real path, at most
`--reg-window` registrations in flight per generator: a first Register signed with the agent
token's key and a fresh random nonce (CON POST `a`); the reply must be 2.04, its MAC is checked
with the secret derived from both nonces (`derive_secret`), and the agent keeps its id and
secret. The payload is a template encoded once by `edgerm.wire` with the nonce and MAC spliced
in per agent (checked once against `sign()`). A registration on CoAP is complete once confirmed
by the agent's first OSCORE request (docs/protocol.md: until then the master keeps it pending),
so each agent sends its first protected heartbeat as soon as it is registered, and the phase
counts an agent once that heartbeat is answered.

Phase 2, heartbeats: each agent sends an OSCORE-protected steady heartbeat (the plaintext
sealed with AES-CCM per agent, the datagram hand-encoded; checked once against
`edgerm.oscore`) every `--interval` seconds, open loop, the fleet spread evenly over the
interval (N / interval heartbeats per second), for `--hb-seconds`. Every reply's code must be
2.04; every `--verify-every`-th reply is decrypted and verified. Latency is from the
first send of a request to its reply; a CON request unanswered after ACK_TIMEOUT (2 s,
doubling) is retransmitted (counted) up to 4 times, then counted lost.

    python bench/fleet.py [--agents 1000000] [--generators 1] [--hb-seconds 60]
    python bench/fleet.py --agents 100000 --hb-seconds 20      # a smaller fleet
    python bench/fleet.py --agents 2000 --interval 2 --hb-seconds 3   # smoke test

Progress goes to stderr once a second; the results are JSON lines {"metric", "value", "unit",
"goal"} on stdout. Everything is bounded (`--reg-timeout`, the heartbeat phase, subprocess
timeouts) and the master, generators and temporary directory are cleaned up on every exit.
"""

from __future__ import annotations

import argparse
import array
import heapq
import hmac
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from cryptography.hazmat.primitives.ciphers.aead import AESCCM  # noqa: E402

from edgerm.oscore import (  # noqa: E402
    aad,
    agent_context,
    encode_plaintext,
    kid_of,
    piv_bytes,
    seal_request,
)
from edgerm.wire import decode, encode, pb, sign, token_key, verify  # noqa: E402
from edgerm.wire.mac import derive_secret  # noqa: E402
from edgerm_master.testing_io import MasterProcess, end_process  # noqa: E402

TOKEN = "agent-token"
ACK_TIMEOUT = 2.0
MAX_RETRANSMIT = 4
_SECRET_LABEL = b"edgerm secret"  # derive_secret's label (checked against it at start)


def emit(metric: str, value: float, unit: str, goal: str = "") -> None:
    print(json.dumps({"metric": metric, "value": round(value, 3), "unit": unit, "goal": goal}),
          flush=True)


def _uint(v: int) -> bytes:
    """A CBOR unsigned integer in shortest form."""
    if v < 24:
        return bytes((v,))
    if v < 0x100:
        return bytes((0x18, v))
    if v < 0x10000:
        return b"\x19" + v.to_bytes(2, "big")
    return b"\x1a" + v.to_bytes(4, "big")


# A steady heartbeat's plaintext: inner POST, Uri-Path "a" (no Content-Format), {5: {}}.
HEARTBEAT_PLAINTEXT = encode_plaintext(0x02, [(11, b"a")], b"\xa1\x05\xa0")

# What a generator keeps per agent for OSCORE: (kid, sender key, recipient key, nonce base);
# no context objects (a million of them would not fit).
AgentKeys = tuple[bytes, bytes, bytes, int]


def agent_keys(secret: bytes, agent_id: int) -> AgentKeys:
    ctx = agent_context(secret, agent_id)
    return kid_of(agent_id), ctx.sender_key, ctx.recipient_key, ctx.sender_base


def protected_heartbeat(mid: int, token: bytes, keys: AgentKeys, seq: int) -> bytes:
    """CON POST, TKL 4 | OSCORE option (flags|PIV|kid) | 0xFF ciphertext: a steady heartbeat."""
    kid, skey, _, base = keys
    piv = piv_bytes(seq)
    option = bytes((0x08 | len(piv),)) + piv + kid
    ct = AESCCM(skey, 8).encrypt((base ^ seq).to_bytes(13, "big"), HEARTBEAT_PLAINTEXT,
                                 aad(kid, piv))
    return (b"\x44\x02" + mid.to_bytes(2, "big") + token + bytes((0x90 | len(option),))
            + option + b"\xff" + ct)


def open_reply(keys: AgentKeys, seq: int, ciphertext: bytes) -> bytes:
    """The plaintext of the master's answer to heartbeat `seq` (it reuses the request's nonce);
    raises cryptography's InvalidTag if it does not verify."""
    kid, _, rkey, base = keys
    return AESCCM(rkey, 8).decrypt((base ^ seq).to_bytes(13, "big"), ciphertext,
                                   aad(kid, piv_bytes(seq)))


class RegisterTemplate:
    """First-registration payloads: one encoding with the nonce and MAC spliced in."""

    def __init__(self) -> None:
        self.key = token_key(TOKEN)
        nonce, mac = b"\xee" * 8, b"\xdd" * 8
        unsigned = encode(self._call(nonce))
        signed = encode(self._call(nonce, mac))
        i, j = unsigned.index(nonce), signed.index(nonce)
        k = signed.index(mac)
        assert unsigned.count(nonce) == signed.count(nonce) == signed.count(mac) == 1
        self.u = (unsigned[:i], unsigned[i + 8:])
        assert k < j  # the MAC (key 3) comes before the register map (key 4)
        self.s = (signed[:k], signed[k + 8:j], signed[j + 8:])

    @staticmethod
    def _call(nonce: bytes, mac: bytes = b"") -> pb.AgentCall:
        return pb.AgentCall(seq=1, mac=mac, register=pb.Register(
            name="fleet", protocol_version=1, nonce=nonce, executors=[pb.WASM],
            resources=pb.Resources(cpus=1, mem_mb=64)))

    def payload(self, nonce: bytes) -> bytes:
        u, s = self.u, self.s
        mac = hmac.digest(self.key, u[0] + nonce + u[1], "sha256")[:8]
        return s[0] + mac + s[1] + nonce + s[2]


def coap_post(mid: int, token: bytes, payload: bytes) -> bytes:
    # CON POST, TKL 4 | Uri-Path "a" (option 11) | Content-Format 60 (option 12) | payload
    return b"\x44\x02" + mid.to_bytes(2, "big") + token + b"\xb1a\x11\x3c\xff" + payload


def coap_parse(data: bytes) -> tuple[int, int, int, bytes, bytes]:
    """(type, code, message id, token, payload) of a CoAP message."""
    tkl = data[0] & 0x0F
    i = 4 + tkl
    n = len(data)
    while i < n and data[i] != 0xFF:
        b = data[i]
        i += 1
        delta, length = b >> 4, b & 0x0F
        i += (delta == 13) + 2 * (delta == 14)
        if length == 13:
            length = data[i] + 13
            i += 1
        elif length == 14:
            length = int.from_bytes(data[i:i + 2], "big") + 269
            i += 2
        i += length
    return ((data[0] >> 4) & 3, data[1], int.from_bytes(data[2:4], "big"), data[4:4 + tkl],
            data[i + 1:] if i < n else b"")


# --------------------------------------------------------------------------- load generator


class Generator:
    """One load-generator process: agents `first .. first + count - 1` of the fleet."""

    def __init__(self, g: int, host: str, port: int, first: int, count: int,
                 n_sockets: int, out_dir: str, block: bool = False) -> None:
        self.g, self.first, self.count, self.out_dir = g, first, count, out_dir
        self.block = block
        self.socks: list[socket.socket] = []
        self.poll = select.epoll()
        self.by_fd: dict[int, int] = {}
        for k in range(n_sockets):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            s.bind((f"127.{g + 1}.{k // 250}.{k % 250 + 2}", 0))
            s.connect((host, port))
            s.setblocking(False)
            self.by_fd[s.fileno()] = k
            self.poll.register(s.fileno(), select.EPOLLIN)
            self.socks.append(s)
        self.mids = [0] * n_sockets
        self.tok = g << 28
        # token -> [agent index, first send, last send, retransmissions (-1: acknowledged
        # empty, the response comes separately), socket index, datagram]
        self.inflight: dict[bytes, list[Any]] = {}
        self.retry: list[tuple[float, bytes]] = []  # heap of (due, token)
        self.retransmits = 0
        self.lost = 0
        self.bad_code = 0
        self.bad_mac = 0
        self.send_drops = 0
        self.rtts = array.array("f")
        self.codes: dict[int, int] = {}  # unexpected response codes seen, with their counts

    # --- transport

    def send(self, idx: int, payload: bytes, now: float) -> None:
        k = idx % len(self.socks)
        self.mids[k] = mid = (self.mids[k] + 1) & 0xFFFF
        self.tok = (self.tok + 1) & 0xFFFFFFFF
        token = self.tok.to_bytes(4, "big")
        data = coap_post(mid, token, payload)
        self.inflight[token] = [idx, now, now, 0, k, data]
        heapq.heappush(self.retry, (now + ACK_TIMEOUT, token))
        self._send(k, data)

    def _send(self, k: int, data: bytes) -> None:
        try:
            self.socks[k].send(data)
        except (BlockingIOError, ConnectionRefusedError):
            self.send_drops += 1  # retransmission recovers it

    def receive(self, timeout: float) -> list[tuple[list[Any], float, int, bytes]]:
        """Replies that arrived: (inflight entry, reply time, code, payload)."""
        out = []
        events = self.poll.poll(0)
        if not events and timeout > 0:
            if self.block:
                events = self.poll.poll(timeout)
            else:
                # Sleep, not block in epoll: a datagram sent to a socket someone waits on
                # makes the sender pay for waking the waiter (~10 µs per reply on this VM,
                # a loopback artefact that a reply to a device on the network does not have).
                time.sleep(min(timeout, 0.001))
                events = self.poll.poll(0)
        for fd, _ in events:
            sock = self.socks[self.by_fd[fd]]
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                except ConnectionRefusedError:
                    continue
                mtype, code, mid, token, payload = coap_parse(data)
                if mtype == 0:  # a separate CON response: acknowledge it
                    self._send(self.by_fd[fd], b"\x60\x00" + mid.to_bytes(2, "big"))
                if code == 0:  # an empty ACK: the answer comes separately; stop retransmitting
                    entry = self.inflight.get(token)
                    if entry is not None:
                        entry[3] = -1
                    continue
                entry = self.inflight.pop(token, None)
                if entry is not None:
                    out.append((entry, time.perf_counter(), code, payload))
        return out

    def retransmit(self, now: float) -> None:
        retry = self.retry
        while retry and retry[0][0] <= now:
            _, token = heapq.heappop(retry)
            entry = self.inflight.get(token)
            if entry is None:
                continue
            if entry[3] == -1:  # acknowledged empty: wait for the separate response
                entry[3] = -2
                heapq.heappush(retry, (now + ACK_TIMEOUT * 2 ** MAX_RETRANSMIT, token))
                continue
            if entry[3] >= MAX_RETRANSMIT or entry[3] == -2:
                del self.inflight[token]
                self.lost += 1
                continue
            entry[3] += 1
            entry[2] = now
            self.retransmits += 1
            heapq.heappush(retry, (now + ACK_TIMEOUT * (2 ** entry[3]), token))
            self._send(entry[4], entry[5])

    def report(self, phase: str, done: int, **kw: Any) -> None:
        print(json.dumps({"g": self.g, "phase": phase, "done": done, **kw}), flush=True)

    # --- phase 1

    def send_datagram(self, idx: int, build: Any, now: float, first: float) -> None:
        """Like `send`, the datagram built by `build(mid, token)`; its latency counts from
        `first`."""
        k = idx % len(self.socks)
        self.mids[k] = mid = (self.mids[k] + 1) & 0xFFFF
        self.tok = (self.tok + 1) & 0xFFFFFFFF
        token = self.tok.to_bytes(4, "big")
        data = build(mid, token)
        self.inflight[token] = [idx, first, now, 0, k, data]
        heapq.heappush(self.retry, (now + ACK_TIMEOUT, token))
        self._send(k, data)

    def register(self, window: int, deadline: float, secrets: list[AgentKeys | None],
                 ids: array.array[int]) -> float:
        tpl = RegisterTemplate()
        ref = tpl._call(b"\x01" * 8)
        assert tpl.payload(b"\x01" * 8) == sign(ref, tpl.key), "register template is stale"
        assert derive_secret(TOKEN, b"a" * 8, b"b" * 8) == hmac.digest(
            tpl.key, _SECRET_LABEL + b"a" * 8 + b"b" * 8, "sha256")[:16]
        option, ct = seal_request(agent_context(bytes(16), 5), 2, HEARTBEAT_PLAINTEXT)
        assert protected_heartbeat(1, b"\x00" * 4, agent_keys(bytes(16), 5), 2)[8:] == (
            bytes((0x90 | len(option),)) + option + b"\xff" + ct), "stale OSCORE encoder"
        confirming: dict[int, int] = {}   # agent index -> its id, until confirmed
        key = tpl.key
        nonces: dict[int, bytes] = {}
        nxt = 0
        done = 0
        clock = time.perf_counter
        start = last = clock()
        while done + self.lost + self.bad_code < self.count:
            now = clock()
            if now > deadline:
                break
            while len(self.inflight) < window and nxt < self.count:
                nonce = os.urandom(8)
                nonces[nxt] = nonce
                self.send(nxt, tpl.payload(nonce), now)
                nxt += 1
            for entry, t, code, payload in self.receive(0.05):
                idx = entry[0]
                if code != 0x44:
                    self.bad_code += 1
                    self.codes[code] = self.codes.get(code, 0) + 1
                    confirming.pop(idx, None)
                    continue
                if idx in confirming:   # the confirming heartbeat answered: registered
                    ids[idx] = confirming.pop(idx)
                    keys = secrets[idx]
                    assert keys is not None
                    try:
                        open_reply(keys, 2, payload)
                    except Exception:
                        self.bad_mac += 1
                        continue
                    self.rtts.append(t - entry[1])
                    done += 1
                    continue
                reply = decode(pb.AgentReply, payload)
                r = reply.registered
                secret = hmac.digest(key, _SECRET_LABEL + nonces.pop(idx) + r.nonce,
                                     "sha256")[:16]
                if r.agent_id <= 0 or not verify(reply, secret):
                    self.bad_mac += 1
                    continue
                keys = secrets[idx] = agent_keys(secret, r.agent_id)
                confirming[idx] = r.agent_id
                # (The latency counts from the registration's first send.)
                self.send_datagram(idx, lambda m, tk, k=keys: protected_heartbeat(m, tk, k, 2),
                                   t, entry[1])
            self.retransmit(clock())
            if clock() - last >= 1.0:
                last = clock()
                self.report("register", done, elapsed=last - start)
        elapsed = clock() - start
        self.report("register", done, elapsed=elapsed)
        return elapsed

    # --- phase 2

    def heartbeats(self, t0: float, interval: float, seconds: float, verify_every: int,
                   secrets: list[AgentKeys | None], ids: array.array[int]
                   ) -> tuple[int, float, float]:
        """Open loop: agent i heartbeats at t0 + i / count * interval + k * interval."""
        n = self.count
        seqs = array.array("I", [2]) * n   # seq 2 confirmed the registration
        live = [i for i in range(n) if ids[i]]
        if not live:
            return 0, 0.0, 0.0
        clock = time.perf_counter
        step = interval / len(live)
        end = t0 + seconds
        sent = answered = 0
        lag_max = 0.0
        last = clock()
        self.rtts = array.array("f")
        self.lost = self.retransmits = 0
        socks = self.socks
        ns = len(socks)
        inflight = self.inflight
        retry = self.retry
        mids = self.mids
        while True:
            now = clock()
            if now >= end and not inflight:
                break
            if now >= end + 4 * ACK_TIMEOUT * 2:  # bounded: what is still open is counted lost
                self.lost += len(inflight)
                inflight.clear()
                break
            # Everything due by now (the fleet's schedule, not a window).
            while sent * step + t0 <= now and t0 + sent * step < end:
                lag_max = max(lag_max, now - (t0 + sent * step))
                idx = live[sent % len(live)]
                seq = seqs[idx] = seqs[idx] + 1
                k = idx % ns
                mids[k] = mid = (mids[k] + 1) & 0xFFFF
                self.tok = tok = (self.tok + 1) & 0xFFFFFFFF
                token = tok.to_bytes(4, "big")
                keys = secrets[idx]
                assert keys is not None
                data = protected_heartbeat(mid, token, keys, seq)
                inflight[token] = [idx, now, now, 0, k, data]
                heapq.heappush(retry, (now + ACK_TIMEOUT, token))
                try:
                    socks[k].send(data)
                except (BlockingIOError, ConnectionRefusedError):
                    self.send_drops += 1
                sent += 1
            wait = max(0.0, min(0.05, t0 + sent * step - clock()))
            for entry, t, code, payload in self.receive(wait):
                self.rtts.append(t - entry[1])
                answered += 1
                if code != 0x44:
                    self.bad_code += 1
                    self.codes[code] = self.codes.get(code, 0) + 1
                elif answered % verify_every == 0:
                    idx = entry[0]
                    keys = secrets[idx]
                    assert keys is not None
                    try:
                        # (the answer to the newest heartbeat of that agent: one in flight)
                        plain = open_reply(keys, seqs[idx], payload)
                        if plain[0] != 0x44:
                            self.bad_mac += 1
                    except Exception:
                        self.bad_mac += 1
            self.retransmit(clock())
            if clock() - last >= 1.0:
                last = clock()
                self.report("heartbeat", answered, sent=sent, elapsed=last - t0)
        self.report("heartbeat", answered, sent=sent, elapsed=clock() - t0)
        return sent, clock() - t0, lag_max

    def run(self, reg_window: int, reg_timeout: float, interval: float, hb_seconds: float,
            verify_every: int) -> None:
        secrets: list[AgentKeys | None] = [None] * self.count
        ids = array.array("I", [0]) * self.count
        reg_elapsed = self.register(reg_window, time.perf_counter() + reg_timeout, secrets, ids)
        reg = {"registered": sum(1 for i in ids if i), "reg_elapsed": reg_elapsed,
               "reg_lost": self.lost, "reg_retransmits": self.retransmits,
               "reg_bad_code": self.bad_code, "reg_bad_mac": self.bad_mac}
        self.rtts.tofile(open(os.path.join(self.out_dir, f"reg{self.g}.f32"), "wb"))
        self.bad_code = self.bad_mac = 0
        print(json.dumps({"g": self.g, "phase": "registered", **reg}), flush=True)
        line = sys.stdin.readline()  # the parent's start time for everyone's heartbeats
        if not line:
            return
        t0 = float(line)
        sent, elapsed, lag = self.heartbeats(t0, interval, hb_seconds, verify_every,
                                             secrets, ids)
        self.rtts.tofile(open(os.path.join(self.out_dir, f"hb{self.g}.f32"), "wb"))
        print(json.dumps({"g": self.g, "phase": "done", **reg, "hb_sent": sent,
                          "hb_answered": len(self.rtts), "hb_elapsed": elapsed,
                          "hb_lost": self.lost, "hb_retransmits": self.retransmits,
                          "hb_bad_code": self.bad_code, "hb_bad_mac": self.bad_mac,
                          "hb_lag_max": lag, "send_drops": self.send_drops,
                          "codes": {f"{c >> 5}.{c & 31:02d}": n for c, n in self.codes.items()}}),
              flush=True)


# --------------------------------------------------------------------------- the parent


def proc_stat(pid: int) -> tuple[float, int, int]:
    """(CPU seconds, RSS bytes, peak RSS bytes) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return cpu, rss, hwm


def start_profile(path: str | None, phase: str, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy recording the master into `path` with `-phase` before its extension."""
    if not path:
        return None
    base, ext = os.path.splitext(path)
    return subprocess.Popen(["py-spy", "record", "-o", f"{base}-{phase}{ext}", "--pid", str(pid),
                             "--rate", "100", "--nonblocking", "--format",
                             "flamegraph" if ext == ".svg" else "raw"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profile(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is None:
        return
    end_process(spy, signal.SIGINT, timeout=30)  # on SIGINT py-spy writes its profile and exits


def pct(values: array.array[float], p: float) -> float:
    if not values:
        return float("nan")
    return sorted(values)[min(len(values) - 1, int(p * len(values)))] * 1000


def read_rtts(d: str, prefix: str, n: int) -> array.array[float]:
    out = array.array("f")
    for g in range(n):
        path = os.path.join(d, f"{prefix}{g}.f32")
        with open(path, "rb") as f:
            out.frombytes(f.read())
    return out


def run(args: argparse.Namespace) -> int:
    n_gen = args.generators
    with tempfile.TemporaryDirectory(prefix="edgerm-fleet-") as d:
        master = MasterProcess(os.path.join(d, "master"), heartbeat_ms=int(args.interval * 1000),
                               extra=["--log-level", "warning"])
        master.start()
        assert master.proc is not None
        mpid = master.proc.pid
        gens: list[subprocess.Popen[str]] = []
        spy: subprocess.Popen[bytes] | None = None
        try:
            spy = start_profile(args.profile, "register", mpid)
            per = -(-args.agents // n_gen)
            for g in range(n_gen):
                first = g * per
                count = min(per, args.agents - first)
                gens.append(subprocess.Popen(
                    [sys.executable, __file__, "--generator", str(g), master.coap[0],
                     str(master.coap[1]), str(first), str(count), d,
                     "--sockets", str(args.sockets), "--reg-window", str(args.reg_window),
                     "--reg-timeout", str(args.reg_timeout), "--interval", str(args.interval),
                     "--hb-seconds", str(args.hb_seconds),
                     "--verify-every", str(args.verify_every)]
                    + (["--block"] if args.block else []),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
            cpu0, rss0, _ = proc_stat(mpid)
            results = watch(gens, "registered", args.reg_timeout + 30, mpid, args.agents)
            cpu1, rss_reg, _ = proc_stat(mpid)
            stop_profile(spy)
            spy = start_profile(args.profile, "heartbeat", mpid)
            t0 = time.perf_counter() + 0.5
            for gen in gens:
                assert gen.stdin is not None
                gen.stdin.write(f"{t0}\n")
                gen.stdin.flush()
            peak = [0]
            done = watch(gens, "done", args.hb_seconds + 60, mpid, args.agents, peak)
            cpu2, rss_end, hwm = proc_stat(mpid)
        finally:
            for gen in gens:
                if gen.poll() is None:
                    gen.kill()
                gen.wait()
            stop_profile(spy)
            master.stop()
        reg_rtts = read_rtts(d, "reg", n_gen)
        hb_rtts = read_rtts(d, "hb", n_gen)
    total = {k: sum(r[k] for r in done) for k in done[0] if k not in ("g", "phase", "codes")}
    for r in done:
        if r["codes"] or r["hb_lost"] or r["reg_lost"] or r["send_drops"]:
            print(f"generator {r['g']}: unexpected codes {r['codes']}, lost {r['reg_lost']} +"
                  f" {r['hb_lost']}, send drops {r['send_drops']}", file=sys.stderr)
    reg_time = max(r["reg_elapsed"] for r in results)
    hb_time = max(r["hb_elapsed"] for r in done)
    registered = total["registered"]
    emit("agents", args.agents, "count")
    emit("registered", registered, "count", f"== {args.agents}")
    emit("registrations_per_s", registered / reg_time, "1/s", ">= 5000")
    emit("registration_time", reg_time, "s", f"<= {args.agents / 5000:g}")
    emit("registration_rtt_p50", pct(reg_rtts, 0.5), "ms")
    emit("registration_rtt_p99", pct(reg_rtts, 0.99), "ms")
    emit("registration_errors", total["reg_lost"] + total["reg_bad_code"] + total["reg_bad_mac"],
         "count", "0")
    emit("registration_retransmits", total["reg_retransmits"], "count")
    emit("master_cpu_per_registration", (cpu1 - cpu0) / max(1, registered) * 1e6, "us")
    emit("heartbeats_per_s", total["hb_answered"] / hb_time, "1/s",
         f">= {0.99 * registered / args.interval:.0f}")
    emit("heartbeat_rtt_p50", pct(hb_rtts, 0.5), "ms")
    emit("heartbeat_rtt_p99", pct(hb_rtts, 0.99), "ms", "<= 50")
    emit("heartbeat_errors", total["hb_lost"] + total["hb_bad_code"] + total["hb_bad_mac"],
         "count", "0")
    emit("heartbeat_retransmits", total["hb_retransmits"], "count")
    emit("generator_lag_max", max(r["hb_lag_max"] for r in done) * 1000, "ms")
    emit("master_cpu_share_heartbeats", (cpu2 - cpu1) / hb_time, "cores", "<= 1")
    emit("master_cpu_per_heartbeat", (cpu2 - cpu1) / max(1, total["hb_answered"]) * 1e6, "us")
    emit("master_rss_registered", rss_reg / 2**20, "MiB")
    emit("master_rss_peak", max(hwm, peak[0]) / 2**20, "MiB", "<= 1536")
    emit("master_rss_per_agent", (rss_end - rss0) / max(1, registered), "B")
    ok = (registered == args.agents and total["reg_bad_mac"] == 0 and total["hb_bad_mac"] == 0
          and total["reg_bad_code"] == 0 and total["hb_bad_code"] == 0)
    return 0 if ok else 1


def watch(gens: list[subprocess.Popen[str]], until: str, timeout: float, mpid: int,
          agents: int, peak: list[int] | None = None) -> list[dict[str, Any]]:
    """Read the generators' progress lines until each says `until`; show progress on stderr."""
    deadline = time.monotonic() + timeout
    latest: dict[int, dict[str, Any]] = {}
    final: dict[int, dict[str, Any]] = {}
    # Raw reads: a buffered readline() could hold lines that select() then does not see.
    fds = {g.stdout.fileno(): i for i, g in enumerate(gens) if g.stdout}
    pending = {fd: b"" for fd in fds}
    shown = time.monotonic()
    while len(final) < len(gens):
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"generators did not reach {until!r} in {timeout:.0f} s")
        ready, _, _ = select.select(list(fds), [], [], min(left, 1.0))
        for fd in ready:
            chunk = os.read(fd, 1 << 16)
            i = fds[fd]
            if not chunk:
                raise RuntimeError(f"generator {i} exited (code {gens[i].wait()})")
            *lines, pending[fd] = (pending[fd] + chunk).split(b"\n")
            for line in lines:
                ev = json.loads(line)
                if ev["phase"] == until:
                    final[i] = ev
                else:
                    latest[i] = ev
        if time.monotonic() - shown >= 1.0:
            shown = time.monotonic()
            _, rss, _ = proc_stat(mpid)
            if peak is not None:
                peak[0] = max(peak[0], rss)
            done = sum(e["done"] for e in latest.values())
            elapsed = max((e["elapsed"] for e in latest.values()), default=0.0)
            what = "registered" if until == "registered" else "heartbeats answered"
            print(f"{what} {done:,}{f'/{agents:,}' if until == 'registered' else ''}"
                  f" in {elapsed:.0f} s ({done / max(elapsed, 1e-9):,.0f}/s),"
                  f" master RSS {rss / 2**20:,.0f} MiB", file=sys.stderr, flush=True)
    if until == "registered":
        done = sum(e["registered"] for e in final.values())
        elapsed = max(e["reg_elapsed"] for e in final.values())
        print(f"registered {done:,}/{agents:,} in {elapsed:.1f} s"
              f" ({done / max(elapsed, 1e-9):,.0f}/s)", file=sys.stderr, flush=True)
    return [final[i] for i in range(len(gens))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=1_000_000)
    p.add_argument("--generators", type=int, default=1, help="load-generator processes")
    p.add_argument("--sockets", type=int, default=128, help="source sockets per generator")
    p.add_argument("--reg-window", type=int, default=512,
                   help="registrations in flight per generator")
    p.add_argument("--reg-timeout", type=float, default=600.0,
                   help="seconds the registration phase may take at most")
    p.add_argument("--interval", type=float, default=60.0, help="heartbeat interval, s")
    p.add_argument("--hb-seconds", type=float, default=60.0, help="heartbeat phase, s")
    p.add_argument("--verify-every", type=int, default=16,
                   help="verify the MAC of every n-th heartbeat reply")
    p.add_argument("--profile", help="py-spy record the master into this file, one per phase"
                   " (X-register.svg, X-heartbeat.svg for X.svg; collapsed stacks if not .svg)")
    p.add_argument("--block", action="store_true",
                   help="generators wait in epoll (the master then pays for waking them)")
    p.add_argument("--generator", nargs=6, help=argparse.SUPPRESS)
    args = p.parse_args()
    if not 1 <= args.sockets <= 1000 or not 1 <= args.generators <= 200:
        p.error("--sockets must be 1..1000 and --generators 1..200")
    if args.agents < args.generators or args.interval <= 0 or args.hb_seconds < 0:
        p.error("--agents must be >= --generators, --interval > 0, --hb-seconds >= 0")
    if args.profile and shutil.which("py-spy") is None:
        p.error("--profile needs py-spy on PATH (pip install py-spy)")
    if args.generator:
        g, host, port, first, count, out_dir = args.generator
        Generator(int(g), host, int(port), int(first), int(count), args.sockets,
                  out_dir, args.block).run(args.reg_window, args.reg_timeout, args.interval,
                               args.hb_seconds, max(1, args.verify_every))
        return
    sys.exit(run(args))


if __name__ == "__main__":
    main()
