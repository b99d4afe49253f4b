"""CoRE Link Format (RFC 6690) for ``/.well-known/core``: render and parse link lists.

The server renders its routes with their attributes (``rt``, ``if``, ``ct``, ``obs``, ``sz``);
the parser exists for our own client and tests and accepts what RFC 6690 §2 allows:
``<uri>;attr;attr=token;attr="quoted"`` separated by commas.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

WELL_KNOWN_CORE = (".well-known", "core")


@dataclass(frozen=True)
class Link:
    """One link: target path and attributes (``True`` for a bare flag like ``obs``)."""

    target: str
    attrs: dict[str, str | int | bool] = field(default_factory=dict)


def _render_attr(name: str, value: str | int | bool) -> str:
    if value is True:
        return name
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{name}={value}"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'{name}="{escaped}"'


def format_links(links: Iterable[Link]) -> str:
    parts = []
    for link in links:
        items = [f"<{link.target}>"]
        items += [_render_attr(k, v) for k, v in link.attrs.items() if v is not False]
        parts.append(";".join(items))
    return ",".join(parts)


def parse_links(text: str) -> list[Link]:
    """Parse link-format text; raises ``ValueError`` on malformed input.

    Surrounding whitespace (a trailing newline from command-line tools) is ignored.
    """
    text = text.strip()
    links: list[Link] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] != "<":
            raise ValueError(f"expected '<' at {i}")
        end = text.index(">", i)
        target = text[i + 1:end]
        i = end + 1
        attrs: dict[str, str | int | bool] = {}
        while i < n and text[i] == ";":
            i += 1
            j = i
            while j < n and text[j] not in "=;,":
                j += 1
            name = text[i:j]
            i = j
            if i < n and text[i] == "=":
                i += 1
                if i < n and text[i] == '"':
                    i += 1
                    chars = []
                    while i < n and text[i] != '"':
                        if text[i] == "\\" and i + 1 < n:
                            i += 1
                        chars.append(text[i])
                        i += 1
                    if i >= n:
                        raise ValueError("unterminated quoted attribute")
                    i += 1
                    attrs[name] = "".join(chars)
                else:
                    j = i
                    while j < n and text[j] not in ";,":
                        j += 1
                    raw = text[i:j]
                    attrs[name] = int(raw) if raw.isdigit() else raw
                    i = j
            else:
                attrs[name] = True
        links.append(Link(target, attrs))
        if i < n:
            if text[i] != ",":
                raise ValueError(f"expected ',' at {i}")
            i += 1
    return links


__all__ = ["Link", "format_links", "parse_links", "WELL_KNOWN_CORE"]
