"""Who a master is to the others and to clients: its name and the URL of each of its transports.

Shared by the election (the members registry and the leader key hold one as JSON) and by the
service's refusals (NOT_LEADER names the leader's URL for the caller's transport).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["MemberInfo"]


@dataclass(frozen=True)
class MemberInfo:
    name: str
    urls: dict[str, str]  # transport kind ("coap", "ws", "http") -> URL clients use

    def to_json(self) -> bytes:
        return json.dumps({"name": self.name, "urls": self.urls}, sort_keys=True).encode()

    @classmethod
    def from_json_untrusted(cls, data: bytes) -> MemberInfo | None:
        """The member a registry value names, or None if it is not one (written by something
        else, or by a newer master that we do not understand)."""
        try:
            obj = json.loads(data)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        name, urls = obj.get("name"), obj.get("urls", {})
        if not isinstance(name, str) or not isinstance(urls, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in urls.items()):
            return None
        return cls(name, dict(urls))
