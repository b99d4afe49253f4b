"""The agent core and a master that refuses it: the refusal comes out as a `Refused` event for
the shell to log (with the master's reason and when the core tries again), and a refused first
registration is retried after the back-off, not at once."""

from __future__ import annotations

import random

from edgerm.wire import pb
from edgerm_agent.core import AgentCore
from edgerm_agent.events import Refused

from .pair import Pair, core_config


def test_a_wrong_token_is_a_refused_event_and_backs_off() -> None:
    p = Pair(AgentCore(core_config(token="not-the-token"), rng=random.Random(1)))
    p.start()
    retries = []
    for _ in range(4):
        assert p.exchange()
        [ev] = [e for e in p.drain() if isinstance(e, Refused)]
        assert (ev.call, ev.code, ev.fresh) == ("register", pb.UNAUTHENTICATED, True)
        assert "not signed with an agent token of this master" in ev.message
        assert ev.retry_at is not None
        # Nothing goes out before the back-off ends: no fast retry loop.
        assert p.core.next_call(p.now) is None
        retries.append(ev.retry_at - p.now)
        p.cluster.now = ev.retry_at
        p.core.handle_timer(p.now)
    # 1 s, 2 s, 4 s, 8 s (±10 %): the back-off grows.
    for got, want in zip(retries, [1.0, 2.0, 4.0, 8.0], strict=True):
        assert 0.9 * want <= got <= 1.1 * want, retries
    assert not p.core.registered
