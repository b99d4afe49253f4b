"""`edgerm-master` / `python -m edgerm_master`: parse flags and the TOML config, run the service,
print one JSON ready line to stdout once CoAP and WebSocket are bound:

    {"event": "ready", "coap": "127.0.0.1:5683", "ws": "127.0.0.1:5690", "http": "127.0.0.1:5691"}

("http" only when the HTTP API and dashboard are on, `[http] listen`, docs/operations.md; with
TLS (`[tls]`, or `--dev`) also `"tls": true`, and under `--dev` the generated CA's file as
`"ca_file"`: clients of wss:// and https:// trust it, docs/operations.md "TLS".)

SIGINT/SIGTERM stop it cleanly; SIGKILL loses nothing that was acknowledged (see store.py).
SIGHUP reloads the tokens from the config file (framework principals, agent and operator
tokens; reload.py), closing framework connections of revoked tokens.

With `[store] backend = "etcd"` it is one of several masters (docs/ha.md): ready as a standby,
it leads once it wins the election, and exits with code 3 (`roles.EXIT_DEPOSED`) when it loses
the lead, for its supervisor to start it again as a standby.

What it logs goes to stderr, one event a line as text or JSON (`--log-format`; loggers
`edgerm.master.*`, docs/operations.md "Logs"). A start-up
failure (bad flags or config, a port in use, an unusable data dir) is one line on stderr,
`edgerm-master: <what is wrong>; <what to do>`, and exit code 2 (configuration) or 1.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import sqlite3
import sys

import trio

from edgerm.logformat import configure_logging
from edgerm_master.config import (
    ConfigError,
    liveness_problem,
    parse_args,
    principal_tokens,
    reload_config,
)
from edgerm_master.roles import EXIT_DEPOSED, Deposed, RoleLoop
from edgerm_master.service import ListenError, MasterService
from edgerm_master.store_api import NotLeader

log = logging.getLogger("edgerm.master")


def _fmt(addr: tuple[str, int]) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _run(service: MasterService, generated: dict[str, str]) -> None:
    async with trio.open_nursery() as nursery:
        coap, ws = await nursery.start(service.run)
        tokens = {k: v for k, v in generated.items() if k != "ca_file"}
        if tokens:
            print(json.dumps({"event": "dev-tokens", **tokens}), flush=True)
        ready: dict[str, object] = {"event": "ready", "coap": _fmt(coap), "ws": _fmt(ws)}
        if service.http_address is not None:
            ready["http"] = _fmt(service.http_address)
        if service.config.tls_cert:
            ready["tls"] = True
        if "ca_file" in generated:
            ready["ca_file"] = generated["ca_file"]
        print(json.dumps(ready), flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                log.info("stopping", extra={"event": "stopping"})
                nursery.cancel_scope.cancel()
                break


def main(argv: list[str] | None = None) -> int:
    try:
        config, generated = parse_args(argv)
    except ConfigError as e:
        print(f"edgerm-master: {e}", file=sys.stderr)
        return e.exit_code
    configure_logging(config.log_level, config.log_format, sys.stderr)
    # httpx (the etcd client's watches) logs every request at INFO.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    for notice in config.notices:
        log.warning("%s", notice, extra={"event": "config_deprecated"})
    if not (config.agent_tokens and principal_tokens(config)):
        log.warning(
            "no agent or framework token configured: nobody can connect (use --dev to "
            "generate tokens)", extra={"event": "no_tokens"})
    problem = liveness_problem(config)
    if problem:
        log.warning("%s", problem, extra={"event": "liveness_problem"})
    roles = RoleLoop() if config.store_backend == "etcd" else None
    # SIGHUP reads the same flags and file again (reload.py: the tokens only).
    reload = functools.partial(reload_config, argv, generated)
    try:
        trio.run(_run, MasterService(config, roles=roles, reload=reload), generated)
    except KeyboardInterrupt:
        pass
    except (Deposed, NotLeader, ExceptionGroup) as e:
        deposed = _deposed(e)
        if deposed is None:
            problem = _startup_problem(e, config.data_dir)
            if problem is None:
                raise
            print(f"edgerm-master: {problem}", file=sys.stderr)
            return 1
        log.warning("exiting: %s", deposed, extra={"event": "deposed"})
        return EXIT_DEPOSED
    except (OSError, sqlite3.Error, ListenError) as e:
        problem = _startup_problem(e, config.data_dir)
        if problem is None:
            raise
        print(f"edgerm-master: {problem}", file=sys.stderr)
        return 1
    return 0


def _deposed(e: BaseException) -> BaseException | None:
    """The `Deposed`/`NotLeader` that ended the run (in Trio's groups), else None."""
    if isinstance(e, Deposed | NotLeader):
        return e
    if isinstance(e, BaseExceptionGroup):
        found: BaseException | None = e.split((Deposed, NotLeader))[0]
        while isinstance(found, BaseExceptionGroup):
            found = found.exceptions[0]
        return found
    return None


def _startup_problem(e: BaseException, data_dir: str) -> str | None:
    """The one line to print for a failure to start (a port, the data dir), else None (a bug:
    let its traceback out). Trio's nurseries hand the failure over wrapped in groups."""
    while isinstance(e, ExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    if isinstance(e, ListenError):
        return str(e)
    # The store's files: SQLite's own errors, or an OSError naming a file.
    if isinstance(e, sqlite3.Error) or (isinstance(e, OSError) and e.filename):
        what = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        where = (f" ({e.filename})" if isinstance(e, OSError) and e.filename
                 and e.filename != data_dir else "")
        return (f"data dir {data_dir}{where}: {what}; --data-dir must be a writable directory "
                "with free space")
    if isinstance(e, OSError):
        return str(e)
    return None


if __name__ == "__main__":
    sys.exit(main())
