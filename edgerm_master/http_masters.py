"""The HTTP API with several masters (docs/ha.md, docs/operations.md): `/api/v1/masters`, and
the 503 a standby answers on every other /api/v1 path.

    GET /api/v1/masters    {"leader": <name>, "masters": [{"name", "role", "urls", "leader",
                            "detail"}, ...]}: the same document as `edgerm masters --json
                            --etcd ...` (members.masters_json builds both)

On an etcd-backed master (a `RoleLoop`) the list is etcd's members registry with the holder of
the election key (`election.read_registry`, as `edgerm masters --etcd` reads it), read when
asked: every master answers it, the standbys
too. A master without HA (SQLite) lists itself, leading.

A standby has only a warm copy of the records and acts on none of them: its /api/v1 lists
would look like the cluster but be stale, so it answers `503 {"error": "not_leader",
"message": ..., "leader": <the leader's http URL, "" unknown>, "leader_name": ...}` instead.
/metrics (with `edgerm_master_leader 0`) and the dashboard's files are still served; the
dashboard shows a banner with the link (web/masters.js), which it learns from the
`X-EdgeRM-Role: leader|standby` header of this master's /api/v1/masters answer.

Error handling: etcd not answering while the registry is read is a 503 that says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from edgerm_master.config import advertised_urls
from edgerm_master.election import read_registry
from edgerm_master.etcd_client import EtcdError
from edgerm_master.http_api import API
from edgerm_master.http_server import HttpApp, HttpError, HttpRequest, HttpResponse, json_response
from edgerm_master.members import MasterRow, Role, masters_json, registry_rows

if TYPE_CHECKING:
    from edgerm_master.service import MasterService

__all__ = ["add_masters_route", "standby_refusal", "masters_document"]

# How long reading the registry may take before the answer is a 503.
REGISTRY_TIMEOUT_S = 3.0


def standby_refusal(service: MasterService) -> Callable[[HttpRequest], HttpError | None]:
    """`HttpApp`'s standby check: None on the leader, else the 503 naming the leader."""

    def check(request: HttpRequest) -> HttpError | None:
        if service.role is Role.LEADER:
            return None
        leader = service.leader
        url = leader.url("http") if leader is not None else ""
        if leader is None:
            message = ("this master is a standby and no leader is known yet (an election is "
                       f"under way): retry in a few seconds, or see {API}/masters")
        elif url:
            message = (f"this master is a standby; the leader is {leader.name} at {url}: send "
                       f"the request there ({url}{request.path})")
        else:
            message = (f"this master is a standby; the leader is {leader.name}, which serves "
                       f"no HTTP API; see {API}/masters for its URLs")
        return HttpError(503, "not_leader", message, [("retry-after", "2")],
                         {"leader": url, "leader_name": leader.name if leader else ""})

    return check


async def masters_document(service: MasterService) -> dict[str, object]:
    """What /api/v1/masters answers (see the module docstring)."""
    roles = service.roles
    if roles is None:
        cfg = service.config
        coap, ws = service.addresses or ((cfg.host, cfg.coap_port), (cfg.host, cfg.ws_port))
        urls = advertised_urls(cfg, coap, ws, service.http_address)
        name = cfg.name or f"{coap[0]}:{coap[1]}"
        return masters_json([MasterRow(name, "leader", urls, name)])
    election = roles.election
    if election is None or not hasattr(election, "client"):
        raise HttpError(503, "starting", "this master is still joining the election: retry "
                        "in a second", [("retry-after", "1")])
    try:
        with trio.fail_after(REGISTRY_TIMEOUT_S):
            members, leader = await read_registry(election.client, election.prefix)
    except (EtcdError, trio.TooSlowError) as e:
        raise HttpError(503, "store_unavailable", f"etcd does not answer ({e or 'timeout'}): "
                        "the masters registry cannot be read; check the etcd cluster",
                        [("retry-after", "2")]) from None
    return masters_json(registry_rows(members, leader))


def add_masters_route(app: HttpApp, service: MasterService) -> None:
    """Serve GET /api/v1/masters (operator token; standbys answer it too)."""

    async def masters(request: HttpRequest) -> HttpResponse:
        if request.query:
            raise HttpError(400, "bad_request", f"{API}/masters takes no parameters")
        response = json_response(await masters_document(service))
        # Which of them answered (the document is the same from every master): the
        # dashboard shows its standby banner by it (web/masters.js).
        response.headers.append(("x-edgerm-role", service.role.value))
        return response

    app.route(f"{API}/masters", masters, standby=True)
