"""The ``agentrun`` command line: argument parsing and error → exit-code mapping only.

One module per group of commands; :mod:`runner.cli.base` holds the ``cli`` group, the
exit codes and :func:`main`. Heavy modules are imported inside the commands that need them,
so ``agentrun --help`` and ``agentrun validate`` stay fast.
"""

from __future__ import annotations

from . import (  # noqa: F401  (registers the commands)
    agent_tests,
    console,
    daemon,
    escalations,
    keys,
    people,
    records,
    running,
    specs,
    store,
    worker,
)
from .base import STOP_EXIT_CODES, cli, main

__all__ = ["STOP_EXIT_CODES", "cli", "main"]
