"""Entry point: `micropython main.py [config.json]` on the unix port; on a board, main.py runs
at boot and reads config.json from the filesystem."""

import sys

import agent

agent.main(sys.argv[1] if len(getattr(sys, "argv", ())) > 1 else "config.json")
