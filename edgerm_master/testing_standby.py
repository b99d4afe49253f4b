"""A master that stays a standby, for the client tests of issue 12 (clients follow the leader).

`python -m edgerm_master.testing_standby --leader-coap URL --leader-ws URL [master flags]` runs
a `MasterService` set to `Role.STANDBY` naming that leader (either URL may be empty: a standby
that knows no leader) and prints the master's ready line. It refuses every call with
NOT_LEADER, so a client started against it must move to the leader. The real standby, the one
an etcd election makes, is `edgerm_master`'s own role loop (docs/ha.md); this one needs no etcd.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

import trio

from edgerm_master.__main__ import _fmt
from edgerm_master.config import ConfigError, parse_args
from edgerm_master.members import MemberInfo, Role
from edgerm_master.service import MasterService


async def _run(service: MasterService) -> None:
    async with trio.open_nursery() as nursery:
        coap, ws = await nursery.start(service.run)
        print(json.dumps({"event": "ready", "coap": _fmt(coap), "ws": _fmt(ws),
                          "role": "standby"}), flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--leader-coap", default="", help="the leader's coap:// URL")
    ap.add_argument("--leader-ws", default="", help="the leader's ws:// URL")
    ours, rest = ap.parse_known_args(argv)
    try:
        config, _ = parse_args(rest)
    except ConfigError as e:
        print(f"testing_standby: {e}", file=sys.stderr)
        return 2
    service = MasterService(config)
    urls = {k: v for k, v in (("coap", ours.leader_coap), ("ws", ours.leader_ws)) if v}
    service.set_role(Role.STANDBY, MemberInfo("leader", urls) if urls else None)
    trio.run(_run, service)
    return 0


if __name__ == "__main__":
    sys.exit(main())
