"""Offers: the allocator's decisions turned into messages, and resources coming back.

`allocate` runs one round of the allocator (`Allocator.offers`) and sends each framework its
batch; an offer lives until it is accepted (`tasks.accept`), declined, expires (`T_OFFER`) or
is rescinded (its agent changed or went away). Whatever an offer held that no task claims goes
back to the allocator (`Allocator.release`). A framework's Decline, Revive and Suppress calls
are here too: they only steer the allocator.
"""

from __future__ import annotations

from edgerm.wire import decode, pb
from edgerm_master.agent_states import AGENT_ACTIVE
from edgerm_master.state import T_OFFER, Framework, MasterState, Offer
from edgerm_master.validation import check_refuse_seconds

__all__ = ["allocate", "drop", "remove", "expire", "rescind_on_agent", "withdraw",
           "decline", "revive", "suppress"]


def allocate(st: MasterState, now: float) -> None:
    """One allocation round: offers to frameworks that can take them; the rest goes back."""
    batches: dict[str, list[pb.Offer]] = {}
    expires = now + st.config.offer_timeout_s
    infos: dict[int, pb.Register] = {}
    for fid, aid, res in st.allocator.offers(now):
        fw = st.frameworks.get(fid)
        agent = st.agents.get(aid)
        if (fw is None or fw.conn is None or fw.removing or agent is None
                or agent.state != AGENT_ACTIVE or not agent.synced):
            st.allocator.release(fid, aid, res)
            continue
        st.offer_seq += 1
        oid = f"{st.epoch}-{st.offer_seq}"
        offer = Offer(oid, fid, aid, res, expires)
        st.offers[oid] = offer
        st.offers_by_agent.setdefault(aid, set()).add(oid)
        fw.offers.add(oid)
        st.timer(expires, T_OFFER, oid)
        reg = infos.get(aid)
        if reg is None:
            reg = infos[aid] = decode(pb.Register, agent.info)
        batches.setdefault(fid, []).append(pb.Offer(
            offer_id=oid, agent_id=aid, agent_name=reg.name, resources=res.to_pb(),
            attributes=reg.attributes, executors=reg.executors,
            expires_in_s=st.config.offer_timeout_s))
        st.stats["offers_made"] += 1
    for fid, batch in batches.items():
        st.send(st.frameworks[fid], pb.FrameworkEvent(offers=pb.Offers(offers=batch)))


def drop(st: MasterState, offer: Offer) -> None:
    """Forget the offer (its resources stay with the framework: accepted)."""
    del st.offers[offer.offer_id]
    by_agent = st.offers_by_agent.get(offer.agent_id)
    if by_agent is not None:
        by_agent.discard(offer.offer_id)
        if not by_agent:
            del st.offers_by_agent[offer.agent_id]
    fw = st.frameworks.get(offer.framework_id)
    if fw is not None:
        fw.offers.discard(offer.offer_id)


def remove(st: MasterState, offer: Offer, rescind: bool) -> None:
    """Declined, expired, rescinded: the offer's resources are free again."""
    drop(st, offer)
    st.allocator.release(offer.framework_id, offer.agent_id, offer.res)
    fw = st.frameworks.get(offer.framework_id)
    if rescind and fw is not None:
        st.send(fw, pb.FrameworkEvent(rescind=pb.Rescind(offer_id=offer.offer_id)))


def expire(st: MasterState, offer_id: str, now: float) -> None:
    """`T_OFFER`: an offer still outstanding at its expiry is rescinded."""
    offer = st.offers.get(offer_id)
    if offer is not None and now >= offer.expires:
        remove(st, offer, rescind=True)


def rescind_on_agent(st: MasterState, agent_id: int) -> None:
    """Every outstanding offer on the agent (it changed or went away)."""
    for oid in list(st.offers_by_agent.get(agent_id, ())):
        remove(st, st.offers[oid], rescind=True)


def withdraw(st: MasterState, fw: Framework) -> None:
    """Every outstanding offer of the framework, silently (it is gone or going)."""
    for oid in list(fw.offers):
        remove(st, st.offers[oid], rescind=False)


def decline(st: MasterState, fw: Framework, call: pb.FrameworkCall, now: float) -> None:
    dec = call.decline
    refuse = check_refuse_seconds(dec.refuse_seconds, "Decline.refuse_seconds")
    refuse = refuse or st.config.refuse_default_s
    declined = 0
    for oid in dec.offer_ids:
        offer = st.offers.get(oid)
        if offer is None or offer.framework_id != fw.framework_id:
            continue  # expired or rescinded meanwhile: nothing to give back
        remove(st, offer, rescind=False)
        st.allocator.filter(fw.framework_id, offer.agent_id, now + refuse)
        declined += 1
    if declined:
        st.decline_watch.declined(fw.framework_id, fw.name, declined, now, st.peer)


def revive(st: MasterState, fw: Framework, call: pb.FrameworkCall, now: float) -> None:
    fw.suppressed = False
    st.allocator.revive(fw.framework_id)
    st.alloc_soon(now)


def suppress(st: MasterState, fw: Framework, call: pb.FrameworkCall, now: float) -> None:
    fw.suppressed = True
    st.allocator.suppress(fw.framework_id)
