"""Who a master is, for the other masters and for the clients: `MemberInfo` and the roles.

With several masters on one store (docs/ha.md) exactly one leads; the others are standbys that
refuse every call with NOT_LEADER, naming the leader's URL for the transport the call came in on
(`MemberInfo.urls`). The election (edgerm_master/election.py) keeps a `MemberInfo` per master;
`MasterService.set_role` takes one for the current leader.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["MemberInfo", "Role", "TRANSPORTS"]

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


class Role(enum.Enum):
    """LEADER serves (the only role of a master without HA); STANDBY refuses with NOT_LEADER."""
    LEADER = "leader"
    STANDBY = "standby"
