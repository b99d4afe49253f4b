"""The first registration is the one call OSCORE cannot protect (the agent has no secret
yet): it stays a plain, token-signed CoAP POST. Its replay is refused while the master
remembers its nonce; a master that restarted has forgotten it, and the contract makes that
replay useless instead: the agent it creates stays *pending* until its first valid OSCORE
request (key confirmation, which only a holder of the token can make) — not shown, not offered,
not stored."""

from __future__ import annotations

import trio

from .conftest import Scene, first_registration
from .test_replay import check_unchanged, verdict


async def test_first_registration_replayed_after_a_master_restart_stays_pending(
        scene: Scene) -> None:
    """The contract's key confirmation: a recorded first registration replayed to a master
    that forgot its nonce gets an answer, but no agent appears, nothing is offered, nothing
    is stored, not even after several heartbeat intervals."""
    agent_id = await scene.registered()
    firsts = [d for d in scene.relay.requests() if first_registration(d)]
    assert len(firsts) >= 1
    await scene.start_spin()
    mark = len(scene.relay.recorded)
    await scene.restart_master()
    await scene.reregistered(mark)
    before = await scene.snapshot()
    offers_seen = len(scene.fw.fw.events)
    for via in ("attacker", "agent"):
        answer = await scene.relay.replay(firsts[0], via=via, timeout=1.0)
        v = verdict(scene, firsts[0].data, answer, None)
        assert v in ("refused", "pending"), v
    await trio.sleep(1.0)   # five heartbeat intervals
    await check_unchanged(scene, before)
    st = await scene.cluster_state()
    assert [a.agent_id for a in st.agents] == [agent_id]
    new_offers = [o for e in scene.fw.fw.events[offers_seen:]
                  if e.WhichOneof("event") == "offers" for o in e.offers.offers]
    assert all(o.agent_id == agent_id for o in new_offers), new_offers
