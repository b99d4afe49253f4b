"""Just enough of the wasm binary format to check a module before running it: its imports, its
memory limits and its exports, and to rewrite the memory maximum so that the runtime itself
refuses a `memory.grow` past the task's `mem_mb`.

Parsers here read untrusted bytes and raise only `BadModule`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BadModule", "ModuleInfo", "parse_module_untrusted", "cap_memory_untrusted",
           "PAGE"]

PAGE = 65536
_MAGIC = b"\0asm\x01\0\0\0"
_SEC_IMPORT, _SEC_MEMORY, _SEC_EXPORT = 2, 5, 7
_KIND_NAMES = {0: "func", 1: "table", 2: "memory", 3: "global"}


class BadModule(Exception):
    """Not a wasm module we can run; the message says why."""


@dataclass
class ModuleInfo:
    imports: list[tuple[str, str, str]] = field(default_factory=list)  # (module, name, kind)
    exports: dict[str, str] = field(default_factory=dict)              # name -> kind
    mem_min: int | None = None          # pages; None: no memory defined in the module
    mem_max: int | None = None          # pages; None: no declared maximum
    memory_section: tuple[int, int] | None = None   # (start of section id byte, end)


class _R:
    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data, self.pos = data, pos
        self.end = len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise BadModule("truncated module")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u32(self) -> int:
        result = shift = 0
        for _ in range(5):
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                if result > 0xFFFFFFFF:
                    raise BadModule("LEB128 out of range")
                return result
            shift += 7
        raise BadModule("LEB128 too long")

    def name(self) -> str:
        n = self.u32()
        if self.pos + n > self.end:
            raise BadModule("truncated name")
        raw = self.data[self.pos:self.pos + n]
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadModule("name is not UTF-8") from None

    def limits(self) -> tuple[int, int | None]:
        flags = self.byte()
        lo = self.u32()
        hi = self.u32() if flags & 1 else None
        return lo, hi


def _uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def parse_module_untrusted(data: bytes) -> ModuleInfo:
    if data[:8] != _MAGIC:
        raise BadModule("not a wasm32 MVP module (bad magic or version)")
    info = ModuleInfo()
    r = _R(data, 8)
    while r.pos < r.end:
        start = r.pos
        sec_id = r.byte()
        size = r.u32()
        body_end = r.pos + size
        if body_end > r.end:
            raise BadModule(f"section {sec_id} runs past the end of the module")
        s = _R(data, r.pos, body_end)
        if sec_id == _SEC_IMPORT:
            for _ in range(s.u32()):
                mod, name = s.name(), s.name()
                kind = s.byte()
                if kind == 0:
                    s.u32()
                elif kind == 1:
                    s.byte()
                    s.limits()
                elif kind == 2:
                    s.limits()
                elif kind == 3:
                    s.byte()
                    s.byte()
                else:
                    raise BadModule(f"unknown import kind {kind}")
                info.imports.append((mod, name, _KIND_NAMES[kind]))
        elif sec_id == _SEC_MEMORY:
            count = s.u32()
            if count > 1:
                raise BadModule("more than one memory")
            if count == 1:
                info.mem_min, info.mem_max = s.limits()
                info.memory_section = (start, body_end)
        elif sec_id == _SEC_EXPORT:
            for _ in range(s.u32()):
                name = s.name()
                kind = s.byte()
                s.u32()
                info.exports[name] = _KIND_NAMES.get(kind, "?")
        r.pos = body_end
    return info


def cap_memory_untrusted(data: bytes, info: ModuleInfo, max_pages: int) -> bytes:
    """`data` with its memory maximum lowered to `max_pages` (if it declared more or none)."""
    if info.memory_section is None or info.mem_min is None:
        return data
    if info.mem_max is not None and info.mem_max <= max_pages:
        return data
    body = b"\x01" + b"\x01" + _uleb(info.mem_min) + _uleb(max_pages)
    start, end = info.memory_section
    section = bytes([_SEC_MEMORY]) + _uleb(len(body)) + body
    return data[:start] + section + data[end:]
