"""``AGENTRUN_HOME`` and everything under it, in one place.

``AGENTRUN_HOME`` defaults to the platform's user data folder (``platformdirs``), for
example ``~/.local/share/agentrun`` on Linux. It holds the run store ``runs.db``; later the
daemon's lock and control socket.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The agentrun home folder (created on first use, owner-only permissions)."""
    configured = os.environ.get("AGENTRUN_HOME")
    if configured:
        path = Path(configured).expanduser()
    else:
        from platformdirs import user_data_dir

        path = Path(user_data_dir("agentrun", appauthor=False))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def store_path() -> Path:
    """The SQLite run store."""
    return home() / "runs.db"
