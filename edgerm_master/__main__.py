"""`edgerm-master` / `python -m edgerm_master`: parse flags and the TOML config, run the service,
print one JSON ready line to stdout once CoAP and WebSocket are bound:

    {"event": "ready", "coap": "127.0.0.1:5683", "ws": "127.0.0.1:5690"}

SIGINT/SIGTERM stop it cleanly; SIGKILL loses nothing that was acknowledged (see store.py).
"""

from __future__ import annotations

import json
import logging
import signal
import sys

import trio

from edgerm_master.config import ConfigError, liveness_problem, parse_args
from edgerm_master.service import MasterService


def _fmt(addr: tuple[str, int]) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _run(service: MasterService, generated: dict[str, str]) -> None:
    async with trio.open_nursery() as nursery:
        coap, ws = await nursery.start(service.run)
        if generated:
            print(json.dumps({"event": "dev-tokens", **generated}), flush=True)
        print(json.dumps({"event": "ready", "coap": _fmt(coap), "ws": _fmt(ws)}), flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                logging.getLogger("edgerm_master").info("stopping")
                nursery.cancel_scope.cancel()
                break


def main(argv: list[str] | None = None) -> int:
    try:
        config, generated = parse_args(argv)
    except ConfigError as e:
        print(f"edgerm-master: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not (config.agent_tokens and config.framework_tokens):
        logging.getLogger("edgerm_master").warning(
            "no agent or framework token configured: nobody can connect (use --dev to "
            "generate tokens)")
    problem = liveness_problem(config)
    if problem:
        logging.getLogger("edgerm_master").warning("%s", problem)
    try:
        trio.run(_run, MasterService(config), generated)
    except KeyboardInterrupt:
        pass
    except OSError as e:
        print(f"edgerm-master: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
