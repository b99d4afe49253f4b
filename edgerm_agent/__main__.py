"""`edgerm-agent CONFIG.toml` / `python -m edgerm_agent CONFIG.toml`: run the Linux agent."""

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
    except (OSError, ConfigError) as e:
        print(f"edgerm-agent: {e}", file=sys.stderr)
        return 2
    try:
        trio.run(Agent(config).run)
    except CheckpointError as e:
        print(f"edgerm-agent: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
