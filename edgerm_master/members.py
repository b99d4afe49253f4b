"""Who a master is, for the other masters and for the clients: `MemberInfo` and the roles.

With several masters on one store (docs/ha.md) exactly one leads; the others are standbys that
refuse every call with NOT_LEADER, naming the leader's URL for the transport the call came in on
(`MemberInfo.urls`). The election (edgerm_master/election.py) keeps a `MemberInfo` per master
(the members registry and the leader key hold one as JSON); `MasterService.set_role` takes one
for the current leader.

`MasterRow` and `masters_json` are what `edgerm masters --json` (edgerm_cli/masters.py) and the
HTTP API's `/api/v1/masters` (http_api.py) both answer: one builder, so the two cannot drift.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["MemberInfo", "Role", "TRANSPORTS", "MasterRow", "registry_rows", "masters_json"]

# The transport kinds a master may serve on, the keys of `MemberInfo.urls`:
# "coap" (agents over CoAP: coap://host:port), "ws" (agents, frameworks and the operator state
# over WebSocket: ws://host:port, no path; clients add /agent, /framework, /state), "http".
TRANSPORTS = ("coap", "ws", "http")


@dataclass(frozen=True)
class MemberInfo:
    """One master: a unique `name` and, per transport kind, the URL clients use to reach it."""
    name: str
    urls: dict[str, str] = field(default_factory=dict)

    def url(self, transport: str) -> str:
        """The URL for `transport` ("coap", "ws", "http"); "" when this master has none."""
        return self.urls.get(transport, "")

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


class Role(enum.Enum):
    """LEADER serves (the only role of a master without HA); STANDBY refuses with NOT_LEADER."""
    LEADER = "leader"
    STANDBY = "standby"


@dataclass
class MasterRow:
    """One master as `edgerm masters` and `/api/v1/masters` show it."""
    name: str            # from the members registry; "" when only probed
    role: str            # leader, standby, unreachable, refusing
    urls: dict[str, str]
    leader: str = ""     # the leader's URL or name this master names ("" unknown)
    detail: str = ""     # why unreachable / refusing


def registry_rows(members: Iterable[MemberInfo], leader: MemberInfo | None) -> list[MasterRow]:
    """The members registry's masters (in its order), the one named by the leader key marked;
    each row names the leader by its name."""
    name = leader.name if leader is not None else ""
    return [MasterRow(m.name, "leader" if name and m.name == name else "standby", dict(m.urls),
                      name) for m in members]


def masters_json(rows: Iterable[MasterRow]) -> dict[str, Any]:
    """`{"leader": <name or URL of the first leading row, "" if none>, "masters": [...]}`."""
    rows = list(rows)
    leaders = [r.name or r.urls.get("ws", "") for r in rows if r.role == "leader"]
    return {"leader": leaders[0] if leaders else "", "masters": [asdict(r) for r in rows]}
