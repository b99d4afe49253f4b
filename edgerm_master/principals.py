"""Framework principals (Mesos's principals and credentials): which principal a framework token
names, the binding of every framework to the principal that created it, and the token table's
reload (SIGHUP, edgerm_master/reload.py) that closes the connections of revoked tokens.

A principal is a name with one or more tokens (`[frameworks.principals]` in the master's TOML;
the deprecated `framework_tokens` list is principal "default"). A Subscribe's token names its
principal: compared in constant time against every token, without an early exit, so the time
tells neither which token matched nor how much of one was right. A new framework is bound to
that principal for good (persisted with it: `records.AddFramework.principal`); only the same
principal, holding the framework's secret too, can subscribe as it again, and a connection acts
only for the framework it subscribed as, so nobody else can kill its tasks, acknowledge or
reconcile its updates or read its updates and outputs.

Tokens never leave this module's table: not in logs, views or the store (a connection keeps
only the SHA-256 of the token it subscribed with, to tell whether a reload revoked it).

The TOML side (`frameworks_table`, `parse_principals`, `merge_tokens`, `shared_token`) is here
too, for config.py, which turns each ValueError into a ConfigError naming the file.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgerm.wire import pb
from edgerm_master.events import CloseFramework, ToFramework
from edgerm_master.logs import log_frameworks

if TYPE_CHECKING:
    from edgerm_master.state import MasterState

__all__ = ["DEFAULT_PRINCIPAL", "Principals", "TokenChanges", "reload", "REVOKED",
           "frameworks_table", "parse_principals", "merge_tokens", "shared_token"]

E = pb.ErrorCode

# The principal of the deprecated `framework_tokens` (and `--framework-token`), and of every
# framework a store from before principals holds.
DEFAULT_PRINCIPAL = "default"
# The text a revoked connection gets in its last event.
REVOKED = "token revoked"


# A principal's name: it appears in logs, views and the store, so short and plain.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}")


# --- the config's side (config.py turns each ValueError into a ConfigError naming the file)


def frameworks_table(values: dict[str, Any]) -> None:
    """TOML `[frameworks.principals]` (the only key of `[frameworks]` so far) in the parsed
    TOML `values` -> `values["framework_principals"]`."""
    table = values.pop("frameworks", None)
    if table is None:
        return
    if not isinstance(table, dict):
        raise ValueError("frameworks must be a table ([frameworks.principals] on its own "
                         "line, then name = \"token\" lines)")
    for key, value in table.items():
        if key != "principals":
            raise ValueError(f"unknown key {key!r} in [frameworks] (principals)")
        values["framework_principals"] = value


def parse_principals(value: Any) -> dict[str, list[str]]:
    """Principal name -> its tokens (one token or a list, for rotation), checked. The
    messages never show a token."""
    if not isinstance(value, dict):
        raise ValueError("[frameworks.principals] must be a table of name = \"token\" (or "
                         "name = [\"token\", ...])")
    out: dict[str, list[str]] = {}
    for name, tokens in value.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"framework principal name {name!r}: use 1-64 letters, digits "
                             "and _.@+- (starting with a letter or digit)")
        if isinstance(tokens, str):
            tokens = [tokens]
        if (not isinstance(tokens, list) or not tokens
                or not all(isinstance(t, str) and t for t in tokens)):
            raise ValueError(f"framework principal {name}: its token must be a non-empty "
                             "string, or a list of them")
        out[name] = list(tokens)
    return out


def merge_tokens(principals: Mapping[str, list[str]], legacy: Iterable[str]
                 ) -> dict[str, list[str]]:
    """`principals` with the deprecated `framework_tokens` (`legacy`) added to "default"."""
    out = {name: list(tokens) for name, tokens in principals.items()}
    old = [t for t in legacy if t]
    if old:
        out[DEFAULT_PRINCIPAL] = out.get(DEFAULT_PRINCIPAL, []) + old
    return out


def shared_token(tokens: Mapping[str, list[str]]) -> tuple[str, str] | None:
    """Two principals sharing a token (by name), or None: one token names one principal."""
    owner: dict[str, str] = {}
    for name, ts in tokens.items():
        for token in ts:
            other = owner.setdefault(token, name)
            if other != name:
                return other, name
    return None


# --- the table


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Principals:
    """The framework token table: principal name -> its tokens (kept as SHA-256 digests, so
    every comparison is of 32 bytes whatever the tokens' lengths)."""

    __slots__ = ("_entries", "_by_name")

    def __init__(self, tokens: Mapping[str, Iterable[str]]) -> None:
        self._entries: list[tuple[str, bytes]] = [
            (name, _digest(token)) for name, ts in tokens.items() for token in ts if token]
        self._by_name: dict[str, frozenset[bytes]] = {}
        for name, digest in self._entries:
            self._by_name[name] = self._by_name.get(name, frozenset()) | {digest}

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._by_name)

    def identify(self, token: str) -> tuple[str, bytes] | None:
        """(principal, token digest) of `token`, or None: every entry is compared, no early
        exit (config.py refuses a token that two principals share)."""
        given = _digest(token)
        found: str | None = None
        for name, digest in self._entries:
            if hmac.compare_digest(given, digest):
                found = name
        return None if found is None or not token else (found, given)

    def holds(self, principal: str, digest: bytes) -> bool:
        """True if `principal` still has the token whose digest is `digest`."""
        return digest in self._by_name.get(principal, frozenset())

    def changes(self, new: Principals) -> TokenChanges:
        """What going from this table to `new` changes, by principal name."""
        old_names, new_names = self.names, new.names
        return TokenChanges(
            added=sorted(new_names - old_names), removed=sorted(old_names - new_names),
            changed=sorted(n for n in old_names & new_names
                           if self._by_name[n] != new._by_name[n]))


@dataclass(frozen=True, slots=True)
class TokenChanges:
    """Principal names added, removed, and with tokens added or revoked."""
    added: list[str]
    removed: list[str]
    changed: list[str]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self) -> str:
        parts = [f"{what} {', '.join(names)}" for what, names in (
            ("added", self.added), ("removed", self.removed),
            ("tokens changed for", self.changed)) if names]
        return "; ".join(parts) or "nothing changed"


def reload(st: MasterState, new: Principals, now: float) -> tuple[TokenChanges, list[str]]:
    """Use `new` from now on: every framework connected with a token `new` no longer holds gets
    the error UNAUTHENTICATED "token revoked" and is closed, and is disconnected like any
    other (its tasks keep running for its failover timeout). -> (what changed, the ids of the
    frameworks closed)."""
    from edgerm_master.frameworks import framework_disconnected

    changes = st.principals.changes(new)
    st.principals = new
    closed: list[str] = []
    for fw in list(st.frameworks.values()):
        conn = fw.conn
        if conn is None or new.holds(fw.principal, fw.token_digest):
            continue
        closed.append(fw.framework_id)
        log_frameworks.log(
            logging.WARNING, "framework %s %r of principal %s: its token was revoked; closing "
            "its connection (it keeps its tasks for its failover timeout, %g s)",
            fw.framework_id, fw.name, fw.principal, fw.failover_s,
            extra={"event": "framework_token_revoked", "framework_id": fw.framework_id,
                   "principal": fw.principal})
        st.outbox.append(ToFramework(conn, pb.FrameworkEvent(
            error=pb.Error(code=E.UNAUTHENTICATED, message=REVOKED))))
        st.outbox.append(CloseFramework(conn, REVOKED, refused=True))
        framework_disconnected(st, conn, now)
    return changes, closed
