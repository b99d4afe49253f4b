"""`edgerm-agent CONFIG.toml` / `python -m edgerm_agent CONFIG.toml`: run the Linux agent.

A start-up failure (config, checkpoint, work dir) is one line on stderr and exit code 2; Ctrl-C
(SIGINT) ends it with 130 and no traceback. With a `[gateway]` table it also serves the constrained
agents behind it (docs/gateway.md). While it runs, it logs to stderr (docs/agent.md).
"""

from __future__ import annotations

import argparse
import logging
import sys

import trio

from edgerm_agent.checkpoint import CheckpointError
from edgerm_agent.config import ConfigError, load_config
from edgerm_agent.shell import Agent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgerm-agent", description=__doc__)
    parser.add_argument("config", help="the agent's TOML configuration (docs/agent.md)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except FileNotFoundError:
        return _fail(f"config {args.config} not found: write one (docs/agent.md lists the keys; "
                     "master.url is required) or give the right path")
    except OSError as e:
        return _fail(f"cannot read config {args.config} ({e.strerror}): fix its permissions")
    except ConfigError as e:
        return _fail(f"config {args.config}: {e}")
    try:
        if config.gateway is not None:
            from edgerm_agent.gateway_shell import GatewayListenError, run_agent

            try:
                trio.run(run_agent, config)
            except GatewayListenError as e:
                return _fail(str(e))
            except BaseExceptionGroup as group:
                matched, _ = group.split(GatewayListenError)
                if matched is None:
                    raise
                first: BaseException = matched
                while isinstance(first, BaseExceptionGroup):
                    first = first.exceptions[0]
                return _fail(str(first))
        else:
            trio.run(Agent(config).run)
    except CheckpointError as e:
        return _fail(str(e))
    except OSError as e:
        # The work dir (checkpoint, module cache) cannot be created or written.
        return _fail(f"work_dir {config.work_dir}: {e.strerror or e} ({e.filename or ''}): "
                     "point work_dir at a writable directory")
    except KeyboardInterrupt:
        return 130
    except BaseExceptionGroup as group:
        # Trio hands a Ctrl-C that lands in a nursery over inside a group.
        if group.split(KeyboardInterrupt)[1] is not None:
            raise
        return 130
    return 0


def _fail(message: str) -> int:
    print(f"edgerm-agent: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
