"""The EdgeRM applications built on the `edgerm` library: the `edgerm` command and the local
cluster.

- `edgerm` (`python -m edgerm_cli`): launch one task and follow it (`edgerm run`, module
  `edgerm_cli.run`), and read the cluster's state (`edgerm agents|frameworks|tasks|offers`,
  `edgerm_cli.listing`), and set up a master or agent as a systemd service
  (`edgerm install-service`, `edgerm_cli.install_service`, unit templates in `deploy/`).
  Arguments are parsed and dispatched in `edgerm_cli.main`; where the master is and which tokens
  to use is `edgerm_cli.target`.
- `python -m edgerm_cli.cluster`: a local cluster in one command (master, Linux agent, MicroPython
  agent as child processes, `edgerm_cli.cluster_processes`) and a demo framework on it
  (`edgerm_cli.cluster_demo`).

The exit codes of `edgerm` are defined here, shared by its command modules.
"""

from __future__ import annotations

__all__ = ["EXIT_FINISHED", "EXIT_TASK_FAILED", "EXIT_USAGE", "EXIT_NO_OFFER", "EXIT_MASTER",
           "EXIT_INTERRUPTED"]

EXIT_FINISHED = 0
EXIT_TASK_FAILED = 1        # FAILED, KILLED, ERROR, LOST, DROPPED
EXIT_USAGE = 2              # argparse's own code for bad arguments
EXIT_NO_OFFER = 3           # no agent offered what the task needs within --offer-timeout
EXIT_MASTER = 4             # master unreachable, or it refused us
EXIT_INTERRUPTED = 130      # the shell convention for SIGINT
