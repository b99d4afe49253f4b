"""Which master a client talks to, out of the list it was configured with (several masters,
one leading: docs/ha.md). Sans-IO, shared by the Linux agent, the SDK and the CLI.

Rules (docs/protocol.md, "High availability"):
- a standby's NOT_LEADER refusal may name the leader: the client goes there only if that URL is
  one of its configured masters (compared by scheme, host and port; a configured URL keeps its
  own path, e.g. /agent), so a forged or stale refusal cannot send it anywhere new;
- otherwise (no leader named, a leader outside the list, a timeout or a lost connection) it
  moves to the next master of its list, round robin.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["MasterList", "origin", "split_urls"]

_DEFAULT_PORTS = {"coap": 5683, "coaps": 5684, "ws": 80, "wss": 443, "http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of `url`, the port defaulted by scheme; ("", "", 0) if unusable."""
    try:
        parts = urlsplit(url if "://" in url else "ws://" + url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        return ("", "", 0)
    return (parts.scheme, (parts.hostname or "").lower(), port)


def split_urls(values: Iterable[str]) -> list[str]:
    """Repeated and comma-separated URL options ("a,b", "c") as one list, blanks dropped."""
    return [u.strip() for v in values for u in v.split(",") if u.strip()]


class MasterList:
    """The configured masters and the one in use (`current`). Raises ValueError when empty."""

    def __init__(self, urls: Iterable[str]) -> None:
        self.urls = list(urls)
        if not self.urls:
            raise ValueError("no master URL given")
        self.index = 0

    @property
    def current(self) -> str:
        return self.urls[self.index]

    def __len__(self) -> int:
        return len(self.urls)

    def find(self, url: str) -> int | None:
        """The index of the configured master at `url`'s origin, None when not configured."""
        want = origin(url)
        if not want[1]:
            return None
        for i, u in enumerate(self.urls):
            if origin(u) == want:
                return i
        return None

    def refused(self, leader: str) -> str:
        """A NOT_LEADER refusal naming `leader` ("" unknown): the URL to use next."""
        i = self.find(leader) if leader else None
        if i is None or i == self.index:
            # Outside the list, unknown, or naming the very master that refused: rotate.
            return self.rotate()
        self.index = i
        return self.current

    def rotate(self) -> str:
        """A timeout or a lost connection: the next configured master."""
        self.index = (self.index + 1) % len(self.urls)
        return self.current
