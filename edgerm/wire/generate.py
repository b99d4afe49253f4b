"""Regenerate edgerm/wire/edgerm_pb2.py(i) from proto/edgerm.proto with grpcio-tools.

`python -m edgerm.wire.generate` rewrites the files; `--check` only reports whether they are
current (tests/wire/test_generated.py runs it). The generated files are committed so that agents
need no protoc; this check keeps them from drifting from the schema.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
OUT_DIR = Path(__file__).resolve().parent
FILES = ("edgerm_pb2.py", "edgerm_pb2.pyi")


def generate(out: Path) -> None:
    from grpc_tools import protoc  # test-only dependency

    rc = protoc.main([
        "protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--pyi_out={out}",
        str(PROTO_DIR / "edgerm.proto"),
    ])
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}: fix proto/edgerm.proto")


def stale_files() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        return [
            f for f in FILES
            if (Path(tmp) / f).read_bytes() != (OUT_DIR / f).read_bytes()
        ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="only check; exit 1 when stale")
    args = ap.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print(f"stale: {', '.join(stale)}; run: python -m edgerm.wire.generate")
            return 1
        print("generated code is current")
        return 0
    generate(OUT_DIR)
    print(f"wrote {', '.join(FILES)} in {OUT_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
