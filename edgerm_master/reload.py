"""Reloading the master's config on SIGHUP: the tokens take effect at once, nothing else does.

`apply` (sans-IO, over the core's state) takes a freshly read `MasterConfig` and puts its
reloadable parts in place (`config.RELOADABLE`: the framework principals and their tokens, the
agent tokens, the operator tokens); a framework connected with a token that is gone is told
UNAUTHENTICATED "token revoked" and closed (principals.reload). Every other setting that
differs is named in the log as needing a restart. What changed is logged by name only: no
token is ever written anywhere.

`watch_sighup` (Trio, in the service's nursery) reads the config again on each SIGHUP with the
loader it is given (`config.reload_config` over the master's own flags); a file that cannot be
read or is wrong is refused with one log line, and the config in use stays as it was.

Admitted agents keep working when their registration token is revoked: they hold secrets of
their own (docs/protocol.md); the token only admits new agents.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from edgerm.wire import token_key
from edgerm_master.config import RELOADABLE, ConfigError, MasterConfig, principal_tokens
from edgerm_master.principals import Principals, TokenChanges, reload

if TYPE_CHECKING:
    from edgerm_master.service import MasterService
    from edgerm_master.state import MasterState

__all__ = ["apply", "Reloaded", "watch_sighup", "reload_with"]

log = logging.getLogger("edgerm.master.config")


@dataclass(slots=True)
class Reloaded:
    """What one reload did."""
    principals: TokenChanges
    closed: list[str]                       # ids of the frameworks whose connection closed
    agent_tokens: bool = False              # the agent tokens changed
    operator_tokens: bool = False           # the operator tokens changed
    not_reloaded: list[str] = field(default_factory=list)   # changed settings needing a restart

    def describe(self) -> str:
        parts = [f"framework principals: {self.principals.describe()}"]
        if self.closed:
            parts.append(f"closed {len(self.closed)} framework connection"
                         f"{'s' if len(self.closed) != 1 else ''} of revoked tokens "
                         f"({', '.join(self.closed)})")
        parts.append("agent tokens " + ("changed" if self.agent_tokens else "unchanged"))
        parts.append("operator tokens " + ("changed" if self.operator_tokens else "unchanged"))
        return "; ".join(parts)


def apply(st: MasterState, new: MasterConfig, now: float) -> Reloaded:
    """Put `new`'s reloadable settings in place of `st.config`'s (the same object the service
    holds, changed in place); see the module's docstring."""
    cfg = st.config
    not_reloaded = [f.name for f in dataclasses.fields(MasterConfig)
                    if f.name not in RELOADABLE and f.metadata.get("toml", True)
                    and getattr(cfg, f.name) != getattr(new, f.name)]
    agents = set(cfg.agent_tokens) != set(new.agent_tokens)
    operators = set(cfg.operator_tokens) != set(new.operator_tokens)
    cfg.agent_tokens = list(new.agent_tokens)
    cfg.operator_tokens = list(new.operator_tokens)
    cfg.framework_principals = {k: list(v) for k, v in new.framework_principals.items()}
    cfg.framework_tokens = list(new.framework_tokens)
    if agents:
        st.token_keys = [(token, token_key(token)) for token in cfg.agent_tokens if token]
    changes, closed = reload(st, Principals(principal_tokens(cfg)), now)
    return Reloaded(changes, closed, agents, operators, not_reloaded)


async def watch_sighup(service: MasterService, load: Callable[[], MasterConfig]) -> None:
    """Reload on every SIGHUP until cancelled (run it in the service's nursery; signal
    handlers need the main thread). `load` reads the config again; it runs in a worker
    thread (it reads a file)."""
    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _ in signals:
            try:
                new = await trio.to_thread.run_sync(load)
            except (ConfigError, OSError) as e:
                refused(e)
                continue
            reload_with(service, new)


def refused(e: Exception) -> None:
    log.error("SIGHUP: config not reloaded, the one in use stays: %s; fix the file and send "
              "SIGHUP again", e, extra={"event": "config_reload_refused"})


def reload_with(service: MasterService, new: MasterConfig) -> Reloaded:
    """Apply `new` to the running service and log what changed (names only)."""
    for notice in new.notices:
        log.warning("%s", notice, extra={"event": "config_deprecated"})
    done = service.reload_config(new)
    log.info("SIGHUP: config reloaded: %s", done.describe(),
             extra={"event": "config_reloaded", "principals_added": done.principals.added,
                    "principals_removed": done.principals.removed,
                    "principals_changed": done.principals.changed,
                    "frameworks_closed": done.closed})
    if done.not_reloaded:
        log.warning("SIGHUP: %s changed in the config but only take effect at a restart "
                    "(a reload changes the tokens only)", ", ".join(done.not_reloaded),
                    extra={"event": "config_not_reloaded", "keys": done.not_reloaded})
    return done
