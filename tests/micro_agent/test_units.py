"""The MicroPython agent's pieces checked against CPython references, run under the real
`micropython`: the shared wire vectors (with the first registration's token key, secret and
macs), HMAC-SHA256 against `hmac`, float encodings against cbor2's canonical mode, and every
field/enum number the agent names against the schema."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import cbor2

from edgerm.wire import pb

from .conftest import MICRO, ROOT, needs_micropython, run_mp

HERE = ROOT / "tests" / "micro_agent"


def _mp_lines(cases: list[str]) -> list[str]:
    env = dict(os.environ, MICROPYPATH=f"{MICRO}:.frozen")
    r = subprocess.run([shutil.which("micropython") or "micropython", "-X", "heapsize=128k",
                        str(HERE / "mp_units.py")], input="\n".join(cases) + "\n",
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


@functools.cache
def _vectors_output() -> str:
    r = run_mp(HERE / "mp_vectors.py", str(ROOT / "proto" / "vectors" / "vectors.json"), heap="1m")
    assert r.returncode == 0, r.stderr
    return r.stdout


@needs_micropython
def test_vectors_round_trip_and_negatives() -> None:
    out = _vectors_output()
    m = re.search(r"^vectors: (\d+) passed, (\d+) failed$", out, re.M)
    assert m is not None, out
    assert int(m.group(2)) == 0, out
    assert int(m.group(1)) >= 100


@needs_micropython
def test_first_registration_auth_vector() -> None:
    # The agent's own mac/agent code, under micropython, against vectors.json "auth": token key
    # and derived secret byte for byte, register_first signed with the token key to exactly the
    # vector's bytes, registered verified with the derived secret (and not with a wrong key).
    out = _vectors_output()
    m = re.search(r"^auth: (\d+) passed, (\d+) failed$", out, re.M)
    assert m is not None, out
    assert (int(m.group(1)), int(m.group(2))) == (9, 0), out


@needs_micropython
def test_hmac_matches_python() -> None:
    rnd = random.Random(7)
    cases, want = [], []
    for klen in (0, 1, 16, 32, 63, 64, 65, 100):
        for dlen in (0, 1, 55, 56, 64, 200):
            k, d = rnd.randbytes(klen), rnd.randbytes(dlen)
            cases.append(f"xhmac x{k.hex()} x{d.hex()}")
            want.append(hmac.new(k, d, hashlib.sha256).digest()[:8].hex())
    assert _mp_lines(cases) == want


@needs_micropython
def test_floats_match_cbor2_canonical() -> None:
    values = [0.0, -0.0, 1.0, -1.0, 1.5, 0.1, 65504.0, 65505.0, 65536.0, 5.960464477539063e-08,
              6.103515625e-05, 1e-7, 3.4028234663852886e38, 1e300, 100000.0, 0.333251953125,
              float("inf"), float("-inf"), 2.5, 1024.5, 0.00048828125]
    got = _mp_lines([f"xfloat x{v!r} x-" for v in values])
    for v, line in zip(values, got, strict=True):
        hexed, same = line.split()
        assert hexed == cbor2.dumps(v, canonical=True).hex(), v
        assert same == "same", v


_CONST = re.compile(r"^(_[A-Z0-9_]+) = const\((\d+)\)  # pb: (\w+)\.(\w+)$", re.M)


def test_field_and_enum_numbers_match_the_schema() -> None:
    checked = 0
    for src in sorted(MICRO.glob("*.py")):
        for name, num, owner, member in _CONST.findall(src.read_text()):
            where = f"{src.name}: {name}"
            if owner in pb.DESCRIPTOR.message_types_by_name:
                fd = pb.DESCRIPTOR.message_types_by_name[owner].fields_by_name.get(member)
                assert fd is not None, f"{where}: {owner} has no field {member}"
                assert fd.number == int(num), f"{where}: {owner}.{member} is {fd.number}"
            else:
                enum = pb.DESCRIPTOR.enum_types_by_name.get(owner)
                assert enum is not None, f"{where}: no message or enum {owner}"
                assert enum.values_by_name[member].number == int(num), where
            checked += 1
    assert checked >= 80
    # Every `# pb:` annotation was understood: none is malformed and silently skipped.
    for src in MICRO.glob("*.py"):
        annotated = src.read_text().count("# pb: ")
        assert annotated == len(_CONST.findall(src.read_text())), src.name


@needs_micropython
def test_largest_publish_fits_the_send_buffer_and_one_more_is_refused(tmp_path: Path) -> None:
    env = dict(os.environ, MICROPYPATH=f"{MICRO}:.frozen")
    r = subprocess.run([shutil.which("micropython") or "micropython", "-X", "heapsize=128k",
                        str(HERE / "mp_publish.py")], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0] == "over -4" and lines[1] == "queued 0" and lines[2] == "max 0", r.stdout
    used, size = map(int, lines[3].split()[1:])
    assert used <= size == 576


@needs_micropython
def test_queued_updates_of_an_older_state_file_are_loaded_encoded(tmp_path: Path) -> None:
    # An agent before this one kept queued updates as [call field, update] in its state file;
    # one upgraded with updates pending must still send them, and acknowledge them by id.
    status = {1: 1, 2: 4, 3: 8, 4: 12, 5: "bad spec"}
    pub = {1: 2, 2: 4, 3: b"21.5", 4: "temp"}
    state = {1: 7, 2: b"s" * 16, 3: 3, 4: 2, 5: [[6, status], [7, pub]], 6: [[4, 8]], 7: 640}
    (tmp_path / "state.cbor").write_bytes(cbor2.dumps(state, canonical=True))
    (tmp_path / "config.json").write_text(json.dumps(
        {"state": str(tmp_path / "state.cbor"), "cache": str(tmp_path / "cache")}))
    env = dict(os.environ, MICROPYPATH=f"{MICRO}:.frozen")
    r = subprocess.run([shutil.which("micropython") or "micropython", "-X", "heapsize=128k",
                        str(HERE / "mp_queue.py"), str(tmp_path / "config.json")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # byte for byte what the agent sends (deterministic CBOR: cbor2's canonical mode)
    assert lines[0] == "bytes " + cbor2.dumps({6: status}, canonical=True).hex(), r.stdout
    assert lines[1] == "bytes " + cbor2.dumps({7: pub}, canonical=True).hex(), r.stdout
    assert lines[2] == "after ack 1: 1", r.stdout


@needs_micropython
def test_protected_datagrams_fit_the_wire_budgets_and_carry_no_inner_content_format() -> None:
    # Built as the agent builds them (tests/micro_agent/mp_wire_size.py), agent id 255 and a
    # 4-byte Partial IV at worst: the steady heartbeat (FETCH `c` with Observe, the default,
    # acknowledging a command) <= 32 B, a status update <= 40 B. Inside OSCORE the resource
    # implies CBOR: no Content-Format; the plain first registration keeps its 60.
    r = run_mp(HERE / "mp_wire_size.py", heap="128k")
    assert r.returncode == 0, r.stderr
    rows = {name: (int(n), opts) for name, n, opts in
            (line.split() for line in r.stdout.splitlines())}
    assert rows["heartbeat_observe_worst"][0] <= 32 and rows["heartbeat_post_worst"][0] <= 32
    assert rows["status_update_worst"][0] <= 40
    assert rows["heartbeat_observe_worst"][1] == "05605163"   # FETCH, Observe 0, Uri-Path c
    assert all(opts == "02b161" for name, (_, opts) in rows.items()
               if name.startswith(("heartbeat_post", "status")))   # POST, Uri-Path a
    assert rows["registration_header"][1] == "b161113c"       # Uri-Path a, Content-Format 60
