"""aiocoap's OSCORE peers (aiocoap_peer.py in its own process) for the interop tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PEER = Path(__file__).resolve().parent / "aiocoap_peer.py"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def run_aiocoap_client(port: int, ctxdir: Path, secret: bytes, sender: bytes, seq: int,
                       payloads: list[bytes], path: str = "a",
                       content_formats: list[int | None] | None = None) -> list[dict[str, Any]]:
    """aiocoap's OSCORE client (Sender ID `sender`, Recipient ID empty) POSTs each payload to
    127.0.0.1:`port`/`path` from sequence number `seq` on, with the inner Content-Format of
    `content_formats` (default none: EdgeRM's protected form); one result dict per request:
    {"code", "payload"} (inner, after aiocoap's unprotect) or {"error"}."""
    cfs = content_formats or [None] * len(payloads)
    reqs = json.dumps([{"path": path, "payload": p.hex(), "cf": cf}
                       for p, cf in zip(payloads, cfs, strict=True)])
    proc = subprocess.run(
        [sys.executable, str(PEER), "client", "--port", str(port), "--dir", str(ctxdir),
         "--secret", secret.hex(), "--sender", sender.hex(), "--recipient", "",
         "--seq", str(seq), "--requests", reqs],
        capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == len(payloads), (proc.stdout, proc.stderr)
    return lines


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def aiocoap_server(tmp_path: Path, secret: bytes, recipient: bytes) -> Iterator[int]:
    """aiocoap's OscoreSiteWrapper (Sender ID empty, Recipient ID `recipient`) serving POST
    `a` with "echo:" + payload; yields its port. The port is picked free at run time; another
    is tried if the bind loses a race."""
    last = ""
    for attempt in range(5):
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, str(PEER), "server", "--port", str(port),
             "--dir", str(tmp_path / f"srv{attempt}"), "--secret", secret.hex(),
             "--sender", "", "--recipient", recipient.hex()],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the ready line, or EOF when it died
        if line.strip() == '{"ready": true}':
            try:
                yield port
            finally:
                proc.kill()
                proc.communicate(timeout=10)
            return
        proc.kill()
        _, err = proc.communicate(timeout=10)
        last = err
    raise AssertionError(f"aiocoap's OSCORE server did not start: {last[-2000:]}")
