"""The master's role loop when several masters share one etcd store (docs/ha.md).

Theory of operation. A master process serves CoAP and WebSocket from the start, as a STANDBY:
it answers every call with a refusal naming the leader (`MasterService.set_role`), keeps its
member entry in etcd, keeps a warm copy of the state (`store.follow()`, a watch on the prefix),
and campaigns. When it wins:

1. it stops following and recovers the core from the warm copy (`store.recover()` reads only
   what changed since the copy was last current), commits what recovery emits, starts the
   flusher and the timer (`MasterService.lead`), and only then answers as the LEADER;
2. every commit is an etcd transaction conditioned on the election key still being its own
   (`EtcdStore.apply` raises `NotLeader` otherwise), and nothing is sent before its commit
   (persist, then act) -- so a failed commit is followed by no send at all;
3. it watches its own leadership: a lost lease or a foreign election key ends the term.

A term ends by the process exiting (`Deposed`, exit code `EXIT_DEPOSED` = 3), for a supervisor
(systemd `Restart=always`, a container runtime, the tests' `MasterSet.restart`) to start it
again as a standby. Why not re-enter STANDBY in-process: when a commit fails, the core has
already applied the change it could not persist; the only state known to be right is the
store's, and the surest way to forget everything else -- the core, offers, half-sent pushes,
connections, timers -- is a new process. The cost is one process start (~1 s), off the
failover's critical path: another master is already taking over.

A leader whose store cannot be reached (no etcd quorum: `StoreUnavailable`) keeps its records,
refuses new work with a clear error (UNAVAILABLE) and retries the commit (service.py). If the
outage outlasts its lease (which it cannot renew either), it counts as deposed but goes on
refusing with UNAVAILABLE until etcd answers again -- no other master could lead meanwhile --
and then exits; the next election picks a leader and work resumes with nothing lost.

Every role change is logged once, at WARNING, with `event` = "role" (docs/master.md, "Logs").
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from edgerm_master.config import advertised_urls, wildcard_host
from edgerm_master.etcd_client import EtcdError
from edgerm_master.members import MemberInfo, Role
from edgerm_master.store_api import StoreUnavailable

if TYPE_CHECKING:
    from edgerm_master.service import MasterService

__all__ = ["RoleLoop", "Deposed", "EXIT_DEPOSED", "member_of"]

log = logging.getLogger("edgerm.master.roles")

# The exit code of a master that lost leadership: a supervisor restarts it as a standby.
EXIT_DEPOSED = 3


class Deposed(Exception):
    """This master led and no longer does; the process must end (see the module docstring)."""


def member_of(service: MasterService, coap: tuple[str, int], ws: tuple[str, int]
              ) -> MemberInfo:
    """This master as the members registry shows it: its name and advertised URLs."""
    cfg = service.config
    urls = advertised_urls(cfg, coap, ws, service.http_address)
    if wildcard_host(cfg.host):
        missing = sorted({"coap", "ws"} - set(cfg.advertise_urls))
        if missing:
            raise ValueError(
                f"--host {cfg.host} binds every address, so clients cannot be told which one "
                f"reaches this master: set [master] urls for {', '.join(missing)} (or "
                "--advertise-url KIND=URL)")
    return MemberInfo(cfg.name or f"{coap[0]}:{coap[1]}", urls)


class RoleLoop:
    """standby -> leader -> deposed, for one process (`MasterService(roles=RoleLoop())`, with
    an `EtcdStore` as the service's store).

    Args:
        make_election: called with the store and this master's `MemberInfo` once the ports
            are bound; returns the election (default: `Election` on the store's etcd client,
            with the config's prefix and lease).
        poll_s: how often a standby re-reads the leader for its refusals (the election's
            watch keeps it current; this only bounds how stale a refusal can be).
        act_on_loss: False only in the fencing tests (edgerm_master.testing_fencing): a
            deposed leader that does not notice, so that only the store's compare stops it.
    """

    def __init__(self, make_election: Any = None, poll_s: float = 0.1,
                 act_on_loss: bool = True) -> None:
        self.make_election = make_election
        self.poll_s = poll_s
        self.act_on_loss = act_on_loss
        self.role = "starting"
        self.member: MemberInfo | None = None
        self.election: Any = None

    def _log_role(self, role: str, leader: MemberInfo | None, why: str = "") -> None:
        if role == self.role:
            return
        self.role = role
        log.warning("role %s (leader %s)%s", role, leader.name if leader else "unknown",
                    f": {why}" if why else "",
                    extra={"event": "role", "role": role,
                           "leader": leader.name if leader else ""})

    def _default_election(self, store: Any, me: MemberInfo, config: Any) -> Any:
        from edgerm_master.election import Election
        return Election(store.client, config.store_prefix, config.store_lease_ttl_s, me)

    async def run(self, service: MasterService,
                  addrs: tuple[tuple[str, int], tuple[str, int]]) -> NoReturn:
        me = member_of(service, addrs[0], addrs[1])
        self.member = me
        store: Any = service.store
        if self.make_election is not None:
            election = await self.make_election(store, me)
        else:
            election = self._default_election(store, me, service.config)
        self.election = election
        async with trio.open_nursery() as nursery:
            # Standby: the lease and the members entry, the warm copy, refusals naming the
            # leader; campaign.
            if hasattr(election, "run"):
                await nursery.start(election.run)
            if hasattr(store, "follow"):
                await nursery.start(store.follow)
            self._log_role("standby", None)
            naming = trio.CancelScope()
            nursery.start_soon(self._name_leader, service, election, naming)
            await election.campaign()
            naming.cancel()
            # Leader: every write fenced on this term's election key; recover (from the
            # warm copy: recover() ends follow()), then serve.
            if hasattr(store, "set_fence"):
                store.set_fence(election.fence)
            try:
                await service.lead()
            except StoreUnavailable as e:
                raise Deposed(f"won the election but cannot recover: {e}") from None
            service.set_role(Role.LEADER, me)
            self._log_role("leader", me, "won the election; recovered, serving")
            if self.act_on_loss:
                await election.lost.wait()
            else:
                await trio.sleep_forever()
            self._log_role("deposed", election.leader(), "leadership lost")
            await self._refuse_until_store_answers(service, store, election)
            raise Deposed("this master lost its leadership (lease expired or election key "
                          "taken); exiting for the supervisor to restart it as a standby")

    async def _refuse_until_store_answers(self, service: MasterService, store: Any,
                                          election: Any) -> None:
        """A lead lost because etcd stopped answering (no quorum): until it answers again,
        refuse new work with UNAVAILABLE and the reason, rather than hand clients over to
        standbys that cannot lead either. What this master already accepted stays unsent
        (its commit is retried, fenced: it goes through only if the lead survived)."""
        client = getattr(store, "client", None)
        key = getattr(election, "leader_key", None)
        if client is None or key is None:
            return
        timeout = 2.0 * service.config.store_timeout_s
        while True:
            try:
                with trio.fail_after(timeout):
                    await client.range(key)  # linearizable: answered only with a quorum
                return
            except (EtcdError, trio.TooSlowError) as e:
                if service.store_down is None:
                    service.store_down = (
                        f"etcd does not answer ({e or 'timeout'}): no quorum; the master "
                        "accepts no work until a majority of the etcd members is back")
                    log.error("%s", service.store_down, extra={"event": "store_unavailable"})
                await trio.sleep(0.2)

    async def _name_leader(self, service: MasterService, election: Any,
                           scope: trio.CancelScope) -> None:
        """While standby: keep the refusals naming the current leader."""
        with scope:
            current: MemberInfo | None = None
            while True:
                leader = election.leader()
                if leader is not None and leader.name == (self.member.name if self.member
                                                          else None):
                    leader = None  # our own key from a term of a previous process
                if leader != current:
                    current = leader
                    service.set_role(Role.STANDBY, leader)
                    log.info("leader is %s", leader.name if leader else "unknown",
                             extra={"event": "leader", "leader": leader.name if leader else ""})
                await trio.sleep(self.poll_s)
