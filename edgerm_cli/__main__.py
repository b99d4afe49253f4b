"""`python -m edgerm_cli`: the `edgerm` command (see `edgerm_cli.main`)."""

from __future__ import annotations

import sys

from edgerm_cli.main import main

sys.exit(main())
