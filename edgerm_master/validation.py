"""Every check of an incoming call that needs no master state beyond what is passed in
(Mesos's validation.cpp). Each check raises `CallError(code, text)`; the text names the field and
says what to do, and the caller answers with it and changes nothing.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Iterable

from edgerm.wire import pb

__all__ = [
    "CallError", "tokens_match", "executor_of", "module_of", "check_task_info",
    "check_refuse_seconds", "check_text", "MAX_TASK_ID", "MAX_NAME",
]

E = pb.ErrorCode

MAX_TASK_ID = 200
MAX_NAME = 200
SHA256_LEN = 32


class CallError(Exception):
    """A refused call: `code` is a pb.ErrorCode, `text` goes back to the caller verbatim."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def tokens_match(given: str, allowed: Iterable[str]) -> bool:
    """Constant-time comparison against each configured token (no early exit on a match, so
    the time does not tell which one or how much of it was right)."""
    g = given.encode("utf-8", "surrogatepass")
    ok = False
    for token in allowed:
        if hmac.compare_digest(g, token.encode("utf-8", "surrogatepass")) and token:
            ok = True
    return ok


def check_text(value: str, field: str, limit: int = MAX_NAME, empty_ok: bool = True) -> None:
    if not empty_ok and not value:
        raise CallError(E.BAD_REQUEST, f"{field} must not be empty")
    if len(value) > limit:
        raise CallError(E.BAD_REQUEST, f"{field} is {len(value)} characters, limit {limit}")


_EXECUTORS = {"docker": pb.DOCKER, "wasm": pb.WASM, "micropython": pb.MICROPYTHON}


def executor_of(spec: pb.TaskSpec) -> int:
    kind = spec.WhichOneof("kind")
    return _EXECUTORS.get(kind or "", pb.EXECUTOR_UNSPECIFIED)


def module_of(spec: pb.TaskSpec) -> tuple[bytes, int] | None:
    """(sha256, size) of the module a WASM or MicroPython task runs, else None."""
    kind = spec.WhichOneof("kind")
    if kind == "wasm":
        return spec.wasm.sha256, spec.wasm.size
    if kind == "micropython":
        return spec.micropython.sha256, spec.micropython.size
    return None


def check_task_info(ti: pb.TaskInfo, agent_executors: int,
                    module_sizes: dict[bytes, int]) -> None:
    """A task of an accept, on its own: id, kind, executor on that agent, module present."""
    check_text(ti.task_id, "TaskInfo.task_id", MAX_TASK_ID, empty_ok=False)
    if any(c in ti.task_id for c in "\x00\n\r"):
        raise CallError(E.BAD_REQUEST, "TaskInfo.task_id must not contain control characters")
    where = f"task {ti.task_id!r}"
    check_text(ti.spec.name, f"{where}: TaskSpec.name")
    ex = executor_of(ti.spec)
    if ex == pb.EXECUTOR_UNSPECIFIED:
        raise CallError(E.BAD_REQUEST, f"{where}: TaskSpec needs one of docker, wasm, micropython")
    if not agent_executors & (1 << ex):
        raise CallError(
            E.UNSUPPORTED,
            f"{where}: the agent has no {pb.Executor.Name(ex)} executor "  # type: ignore[arg-type]
            "(see Offer.executors)")
    if ex == pb.DOCKER and not ti.spec.docker.image:
        raise CallError(E.BAD_REQUEST, f"{where}: DockerTask.image must not be empty")
    mod = module_of(ti.spec)
    if mod is not None:
        sha, size = mod
        if len(sha) != SHA256_LEN:
            raise CallError(E.BAD_REQUEST, f"{where}: sha256 must be 32 bytes, got {len(sha)}")
        have = module_sizes.get(sha)
        if have is None:
            raise CallError(
                E.NOT_FOUND,
                f"{where}: the master has no module {sha.hex()}; upload it first "
                "(FrameworkCall.upload)")
        if size and size != have:
            raise CallError(E.BAD_REQUEST,
                            f"{where}: module {sha.hex()} has {have} bytes, the task says {size}")


def check_refuse_seconds(value: float, field: str) -> float:
    if math.isnan(value) or value < 0 or math.isinf(value):
        raise CallError(E.BAD_REQUEST, f"{field} must be a finite number >= 0")
    return min(value, 365 * 24 * 3600.0)
