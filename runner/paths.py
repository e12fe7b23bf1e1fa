"""``AGENTRUN_HOME`` and everything under it, in one place.

``AGENTRUN_HOME`` defaults to the platform's user data folder (``platformdirs``), for
example ``~/.local/share/agentrun`` on Linux. It holds the run store ``runs.db`` (with its
``-wal`` and ``-shm`` files), the key that seals unredacted messages (``seal.key``), the
daemon's lock, control socket and worker logs, and the console's login token
(``console.token``).

Everything there is owner-only: folders ``0700``, files ``0600``. What agentrun creates is
created so (never with the process umask's wider bits, not even for a moment), and what it
finds looser (a home made by hand as ``0755``, a store copied in as ``0644``) is tightened,
with a warning on the ``agentrun`` logger naming the path and both modes.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

#: Mode of every folder agentrun keeps under its home.
PRIVATE_DIR_MODE = 0o700
#: Mode of every file agentrun keeps under its home.
PRIVATE_FILE_MODE = 0o600

log = logging.getLogger("agentrun")


def home() -> Path:
    """The agentrun home folder, created (or tightened) owner-only on first use."""
    return private_dir(home_path())


def home_path() -> Path:
    """Where the agentrun home folder is, whether or not it exists yet (nothing is created)."""
    configured = os.environ.get("AGENTRUN_HOME")
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("agentrun", appauthor=False))


def store_path() -> Path:
    """The SQLite run store."""
    return home() / "runs.db"


def console_token_path() -> Path:
    """The operator console's login token (``agentrun console``; see ``docs/console.md``)."""
    return home() / "console.token"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as ``0700``, or tighten it to that; ``path``.

    Parents that already exist are left as they are (they may be shared, such as ``/tmp``),
    and so is ``path`` itself when it is such a shared folder (sticky bit set, as ``/tmp``:
    a store file put straight in it by ``AGENTRUN_STORE=sqlite:////tmp/runs.db`` must not
    lock every other user out of it); the files made in it are still owner-only.
    """
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    if not path.stat().st_mode & stat.S_ISVTX:
        tighten(path, PRIVATE_DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty as ``0600`` if it is missing, else tighten it to that; ``path``.

    Creation uses ``O_CREAT`` with the mode, so the file never exists with wider bits.
    """
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE)
    except FileExistsError:
        tighten(path, PRIVATE_FILE_MODE)
    else:
        os.close(descriptor)
    return path


def tighten(path: Path, mode: int) -> bool:
    """Remove any permission bit of ``path`` beyond ``mode``; whether it had to.

    A path that is missing, or that this user cannot change (another owner), is left alone;
    the latter with a warning, since other users may then read it.
    """
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return False
    if current & ~mode == 0:
        return False
    try:
        os.chmod(path, current & mode)
    except OSError as error:
        log.warning(
            "%s is readable by other users (mode %04o) and cannot be made owner-only: %s",
            path,
            current,
            error.strerror,
        )
        return False
    log.warning(
        "%s was readable by other users: its mode is now %04o (was %04o)",
        path,
        current & mode,
        current,
    )
    return True
