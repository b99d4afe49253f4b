"""Offers: a round turns the allocator's decisions into offers; declined, expired or rescinded
offers give their resources back, exactly."""

from __future__ import annotations

from edgerm.resources import Res
from edgerm.wire import pb
from edgerm_master import offers
from edgerm_master.state import T_OFFER
from edgerm_master.testing import Cluster, ScriptedAgent, ScriptedFramework


def setup(c: Cluster) -> tuple[ScriptedAgent, ScriptedFramework]:
    a = c.add_agent(ScriptedAgent())
    f = c.subscribe(ScriptedFramework())
    c.step(1.0)
    assert len(f.offers) == 1
    return a, f


def test_a_round_offers_each_free_agent_once_with_an_expiry(cluster: Cluster) -> None:
    a, f = setup(cluster)
    st = cluster.master.state
    (offer,) = st.offers.values()
    assert (offer.framework_id, offer.agent_id) == (f.framework_id, a.agent_id)
    assert cluster.now < offer.expires <= cluster.now + st.config.offer_timeout_s
    assert (offer.expires, T_OFFER, offer.offer_id) in st.timers
    assert st.offers_by_agent == {a.agent_id: {offer.offer_id}}
    offers.allocate(st, cluster.now)  # all of it is offered already: nothing more
    assert len(st.offers) == 1 and st.stats["offers_made"] == 1


def test_a_round_gives_back_what_no_connected_framework_can_take(cluster: Cluster) -> None:
    a = cluster.add_agent(ScriptedAgent())
    f = cluster.subscribe(ScriptedFramework())
    st = cluster.master.state
    fw = st.frameworks[f.framework_id]
    offers.withdraw(st, fw)
    fw.conn = None  # gone without the shell noticing yet
    offers.allocate(st, cluster.now)
    assert st.offers == {}
    assert st.allocator.free(a.agent_id) == st.agents[a.agent_id].total


def test_remove_frees_and_rescinds_only_when_asked(cluster: Cluster) -> None:
    a, f = setup(cluster)
    st = cluster.master.state
    (offer,) = st.offers.values()
    offers.remove(st, offer, rescind=False)
    assert st.offers == {} and st.offers_by_agent == {} and st.outbox == []
    assert st.allocator.free(a.agent_id) == st.agents[a.agent_id].total
    offers.allocate(st, cluster.now)
    (again,) = st.offers.values()
    st.outbox.clear()
    offers.rescind_on_agent(st, a.agent_id)
    (event,) = st.outbox
    assert event.event.rescind.offer_id == again.offer_id  # type: ignore[union-attr]


def test_expiry_rescinds_only_an_offer_past_its_time(cluster: Cluster) -> None:
    _, f = setup(cluster)
    st = cluster.master.state
    (offer,) = st.offers.values()
    offers.expire(st, offer.offer_id, offer.expires - 0.001)
    assert offer.offer_id in st.offers
    offers.expire(st, offer.offer_id, offer.expires)
    assert st.offers == {}
    offers.expire(st, offer.offer_id, offer.expires + 1)  # already gone: harmless


def test_decline_filters_the_agent_for_refuse_seconds(cluster: Cluster) -> None:
    a, f = setup(cluster)
    st = cluster.master.state
    (offer,) = st.offers.values()
    call = pb.FrameworkCall(decline=pb.Decline(offer_ids=[offer.offer_id, "nope"],
                                               refuse_seconds=50))
    offers.decline(st, st.frameworks[f.framework_id], call, cluster.now)
    assert st.offers == {} and not st.outbox  # an unknown id is skipped, not an error
    offers.allocate(st, cluster.now + 49)
    assert st.offers == {}
    offers.allocate(st, cluster.now + 50)
    assert len(st.offers) == 1


def test_suppress_and_revive(cluster: Cluster) -> None:
    a, f = setup(cluster)
    st = cluster.master.state
    fw = st.frameworks[f.framework_id]
    offers.withdraw(st, fw)
    offers.suppress(st, fw, pb.FrameworkCall(), cluster.now)
    offers.allocate(st, cluster.now)
    assert fw.suppressed and st.offers == {}
    offers.revive(st, fw, pb.FrameworkCall(), cluster.now)
    assert st.alloc_due <= cluster.now + 0.1  # a round soon
    offers.allocate(st, cluster.now)
    assert not fw.suppressed and len(st.offers) == 1
    assert st.allocator.free(a.agent_id) == Res.EMPTY
