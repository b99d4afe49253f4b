"""Leader election among masters on etcd, and the members registry.

    election = Election(client, "/edgerm/", ttl=2, member=MemberInfo("m1", {"ws": ...}))
    await nursery.start(election.run)     # a lease, kept alive; members/m1; the leader watched
    await election.campaign()             # returns when this master leads
    store.set_fence(election.fence)       # every write conditioned on the election key
    await election.lost.wait()            # leadership gone (lease expired, key deleted)

How: each master holds one lease (TTL `ttl` seconds), renewed every ttl/3. Under it it keeps
`<prefix>members/<name>` (its MemberInfo, so `edgerm masters` can list every master, leading or
not) and, while leading, `<prefix>leader` (the leader's MemberInfo). Campaigning is a
transaction "if `leader` does not exist, create it under my lease"; whoever's transaction
commits first leads. The key's create_revision is the leader's `Fence`: unique to this term.

Losing the lead is noticed by whichever comes first: the watch on the leader key sees it
deleted or replaced; a keep-alive answers that the lease is gone; or no keep-alive has been
answered for a whole TTL (the lease may have expired unseen, e.g. this process was stopped:
after SIGCONT the first look at the clock says so). Then `lost` is set and the fence dropped;
etcd's fencing makes any write already on its way fail anyway (store_api.NotLeader).

Resource handling: `run()` lives in the caller's nursery and revokes its lease when cancelled
(so a master that stops cleanly hands over at once instead of after the TTL).
"""

from __future__ import annotations

import logging
import math
from typing import NoReturn

import trio

from edgerm_master.etcd_client import (
    EtcdClient,
    EtcdError,
    cmp_create_revision,
    op_delete,
    op_put,
    prefix_end,
)
from edgerm_master.members import MemberInfo
from edgerm_master.store_api import Fence

__all__ = ["Election", "read_registry"]

log = logging.getLogger("edgerm.master.election")

async def read_registry(client: EtcdClient, prefix: str
                        ) -> tuple[list[MemberInfo], MemberInfo | None]:
    """Every master in the members registry under `prefix` (key order) and the one the
    leader key names (None: no leader), in two reads. `edgerm masters --etcd`, the election and
    the HTTP API's /api/v1/masters all read it here. Raises EtcdError."""
    if not prefix.endswith("/"):
        prefix += "/"
    start = (prefix + "members/").encode()
    page = await client.range(start, prefix_end(start))
    kv = await client.get((prefix + "leader").encode())
    leader = MemberInfo.from_json_untrusted(kv.value) if kv is not None else None
    members = [MemberInfo.from_json_untrusted(item.value) for item in page.kvs]
    return [m for m in members if m is not None], leader


# After a failed etcd call the loops wait this long before trying again.
_RETRY_S = 0.2


class _Outage:
    """Logs a failing etcd loop once when it starts failing and once when it works again, not
    at every retry (five a second)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failing = False

    def failed(self, error: Exception) -> None:
        if not self.failing:
            self.failing = True
            log.warning("etcd: %s failed (%s); trying again until it works", self.what, error,
                        extra={"event": "etcd-unavailable"})

    def worked(self) -> None:
        if self.failing:
            self.failing = False
            log.warning("etcd: %s works again", self.what, extra={"event": "etcd-available"})


class Election:
    def __init__(self, client: EtcdClient, prefix: str, ttl: float, member: MemberInfo) -> None:
        if not prefix.endswith("/"):
            prefix += "/"
        self.client = client
        self.prefix = prefix
        self.ttl = max(1, math.ceil(ttl))  # etcd leases are whole seconds
        self.member = member
        self.leader_key = (prefix + "leader").encode()
        self.member_key = (prefix + "members/" + member.name).encode()
        self.lease = 0
        self.fence: Fence | None = None
        self.lost = trio.Event()           # set when a won lead is lost (a new Event per term)
        self._leader: MemberInfo | None = None
        self._leader_revision = 0          # create_revision of the leader key seen, 0: none
        self._changed = trio.Event()       # the leader key changed, or a new lease
        self._lease_ok = trio.Event()      # set while a lease is held
        self._lease_granted_at = 0.0

    # --- what others read ---------------------------------------------------------------------

    def leader(self) -> MemberInfo | None:
        """The current leader as last seen by the watch (None: none known)."""
        return self._leader

    @property
    def leading(self) -> bool:
        return self.fence is not None

    async def members(self) -> list[tuple[MemberInfo, bool]]:
        """Every registered master and whether it leads, by name."""
        members, leader = await read_registry(self.client, self.prefix)
        return [(m, leader is not None and m.name == leader.name) for m in members]

    # --- running --------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        """Hold a lease with this member registered under it; watch the leader key. Started
        once the first lease is granted and the leader key read. Never returns; on
        cancellation revokes the lease (resigning if leading)."""
        started = False
        outage = _Outage("granting this master's lease")
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_leader)
                while True:
                    try:
                        await self._new_lease()
                    except EtcdError as e:
                        outage.failed(e)
                        await trio.sleep(_RETRY_S)
                        continue
                    outage.worked()
                    if not started:
                        while self._leader_revision < 0:
                            await self._changed.wait()
                        task_status.started()
                        started = True
                    await self._keep_alive()
                    # The lease is gone (or may be): a lead held under it is lost.
                    self._lease_ok = trio.Event()
                    self.lease = 0
                    self._lose("lease expired")
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                if self.lease:
                    try:
                        await self.client.lease_revoke(self.lease)
                    except EtcdError:
                        pass
            self.fence = None

    async def _new_lease(self) -> None:
        lease, _ = await self.client.lease_grant(self.ttl)
        self.lease = lease
        self._lease_granted_at = trio.current_time()
        await self.client.put(self.member_key, self.member.to_json(), lease)
        self._lease_ok.set()
        self._kick()

    async def _keep_alive(self) -> None:
        """Renew the lease every ttl/3 until it is gone or no renewal has been answered for a
        whole TTL; then return."""
        expires = self._lease_granted_at + self.ttl
        while True:
            now = trio.current_time()
            if now >= expires:
                return
            with trio.move_on_at(expires):
                await trio.sleep(self.ttl / 3)
                sent = trio.current_time()
                if sent >= expires:
                    return  # asleep (stopped) past the lease: it may be gone already
                try:
                    # A member that hangs (stopped, cut off) must not use up the lease: the
                    # next endpoint is tried after a third of it.
                    ttl = await self.client.lease_keepalive(self.lease, timeout=self.ttl / 3)
                except EtcdError as e:
                    log.info("etcd: lease renewal failed (%s); trying again", e)
                    continue
                if ttl <= 0:
                    return
                expires = sent + ttl

    def _kick(self) -> None:
        event, self._changed = self._changed, trio.Event()
        event.set()

    def _lose(self, why: str) -> None:
        if self.fence is not None:
            log.warning("lost the lead (%s)", why, extra={"event": "lead-lost"})
            self.fence = None
            self.lost.set()

    def _see_leader(self, value: bytes | None, create_revision: int) -> None:
        self._leader = MemberInfo.from_json_untrusted(value) if value is not None else None
        self._leader_revision = create_revision
        if self.fence is not None and create_revision != self.fence.create_revision:
            self._lose("election key deleted or taken over")
        self._kick()

    async def _watch_leader(self) -> None:
        self._leader_revision = -1   # not read yet
        while True:
            try:
                kvs = await self.client.range(self.leader_key)
                if kvs.kvs:
                    self._see_leader(kvs.kvs[0].value, kvs.kvs[0].create_revision)
                else:
                    self._see_leader(None, 0)
                async with self.client.watch(self.leader_key,
                                             start_revision=kvs.revision + 1) as watch:
                    async for events, _ in watch:
                        for ev in events:
                            if ev.kind == "DELETE":
                                self._see_leader(None, 0)
                            else:
                                self._see_leader(ev.kv.value, ev.kv.create_revision)
            except EtcdError as e:
                log.debug("etcd: leader watch ended (%s); watching again", e)
                await trio.sleep(_RETRY_S)

    async def campaign(self) -> None:
        """Return once this member leads (with `fence` set and a fresh `lost` event). Needs
        `run()` started. Waits for the current leader's key to go (resign or lease expiry)."""
        outage = _Outage("campaigning")
        while True:
            await self._lease_ok.wait()
            lease = self.lease
            try:
                result = await self.client.txn(
                    [cmp_create_revision(self.leader_key, 0)],
                    [op_put(self.leader_key, self.member.to_json(), lease)])
            except EtcdError as e:
                outage.failed(e)
                await trio.sleep(_RETRY_S)
                continue
            outage.worked()
            if result.succeeded:
                if lease != self.lease:
                    continue  # the lease changed meanwhile; the key dies with the old one
                self.lost = trio.Event()
                self.fence = Fence(self.leader_key, result.revision)
                self._leader, self._leader_revision = self.member, result.revision
                log.info("leading (election key revision %d)", result.revision,
                         extra={"event": "leading"})
                return
            # Someone leads: wait for its key to change, and look again at least once a TTL
            # (a watch that missed a deletion must not keep us out for ever).
            with trio.move_on_after(self.ttl):
                changed = self._changed
                while self._leader_revision > 0:
                    await changed.wait()
                    changed = self._changed

    async def resign(self) -> None:
        """Give the lead up now (delete the election key if still ours); others may win it."""
        fence = self.fence
        self.fence = None
        if fence is None:
            return
        self.lost.set()
        try:
            await self.client.txn([cmp_create_revision(fence.key, fence.create_revision)],
                                  [op_delete(fence.key)])
        except EtcdError as e:
            log.warning("etcd: resign could not delete the election key (%s); it goes with "
                        "the lease", e)
