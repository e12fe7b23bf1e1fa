"""The spec's sandbox resolved on this machine: which paths, which network, which limits.

:func:`resolve` turns a :class:`~runner.spec.SandboxSpec` (as written, relative to the
agent's workdir) into a :class:`SandboxPolicy` of absolute paths, adding what is always
hidden: every home folder (``/home``, ``/root``, ``$HOME``), ``/run`` (sockets of other
services), agentrun's own home (the run store, the seal key, the console token, the
daemon's control socket) and, wherever they are, a SQLite store file and the seal key file.
"""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import SetupError
from ..spec import SandboxLimitsSpec, SandboxSpec

#: Folders hidden behind an empty tmpfs in every sandbox, before any path is made visible.
ALWAYS_HIDDEN = (Path("/home"), Path("/root"), Path("/run"), Path("/tmp"))
#: The system's own secrets, covered where they exist: readable by root's processes (the
#: sandbox keeps the user's file ownership, so agentrun run as root keeps root's reads).
SYSTEM_SECRETS = (
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/ssh/ssh_host_*_key",
    "/etc/ssl/private/*",
)


@dataclass(frozen=True)
class SandboxPolicy:
    """One sandbox, resolved: absolute paths, the allowlist and the limits.

    Attributes:
        mode: ``required``, ``auto`` or ``off``.
        workdir: the agent's working folder (visible; writable when in ``writable``).
        writable: folders and files the processes may write (each exists).
        readable: folders and files in a hidden place the processes may read (each exists):
            the spec's, and the prefixes of the Python running agentrun (``sys.prefix``,
            ``sys.base_prefix``), so ``python`` works the same inside.
        hidden_first: folders covered by an empty tmpfs before anything is made visible.
        hidden_last: folders covered after every visible path (agentrun's own home): hidden
            even when they lie inside the workdir.
        hidden_files: files covered by `/dev/null` (the store, the seal key): unreadable inside.
        network_allow: the egress allowlist; empty for no network.
        limits: resource limits of each process.
    """

    mode: str
    workdir: Path
    writable: tuple[Path, ...]
    readable: tuple[Path, ...]
    hidden_first: tuple[Path, ...]
    hidden_last: tuple[Path, ...]
    hidden_files: tuple[Path, ...]
    network_allow: tuple[str, ...]
    limits: SandboxLimitsSpec


def _absolute(path: str, workdir: Path) -> Path:
    expanded = Path(os.path.expanduser(path)) if path.startswith("~") else Path(path)
    return Path(os.path.realpath(expanded if expanded.is_absolute() else workdir / expanded))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def agentrun_private_paths() -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """Agentrun's own places: (folders, files) every sandbox hides.

    The folder is ``AGENTRUN_HOME`` (when it exists); the files are a SQLite store named by
    ``AGENTRUN_STORE`` (with its ``-wal`` and ``-shm``) and ``AGENTRUN_SEAL_KEY_FILE``,
    wherever they are, when they exist.
    """
    from .. import paths
    from ..store.location import scheme, sqlite_path, store_location

    home = Path(os.path.realpath(paths.home_path()))
    folders = [home] if home.is_dir() else []
    files: list[Path] = []
    try:
        location = store_location(home=home)  # (names it; creates nothing)
        if scheme(location) == "sqlite":
            store = Path(os.path.realpath(sqlite_path(location)))
            files += [store, Path(f"{store}-wal"), Path(f"{store}-shm")]
    except Exception:  # a bad AGENTRUN_STORE is reported where the store is opened
        pass
    seal = os.environ.get("AGENTRUN_SEAL_KEY_FILE")
    if seal:
        files.append(Path(os.path.realpath(os.path.expanduser(seal))))
    for pattern in SYSTEM_SECRETS:
        files += sorted(Path(found) for found in glob.glob(pattern))
    hidden_files = tuple(
        file
        for file in dict.fromkeys(files)
        if file.is_file() and not any(_inside(file, folder) for folder in folders)
    )
    return tuple(folders), hidden_files


def resolve(spec: SandboxSpec, workdir: Path) -> SandboxPolicy:
    """``spec`` made absolute against ``workdir``, with everything a sandbox always hides.

    Raises:
        SetupError: a writable or readable path that does not exist, or one inside
            agentrun's own home (which stays hidden); a workdir inside agentrun's home.
    """
    workdir = Path(os.path.realpath(workdir))
    private, hidden_files = agentrun_private_paths()
    for folder in private:
        if _inside(workdir, folder):
            raise SetupError(
                f"the sandbox cannot run in {str(workdir)!r}: it is inside agentrun's own "
                f"home {str(folder)!r}, which every sandbox hides (set AGENTRUN_HOME elsewhere)"
            )

    def paths(key: str, written: tuple[str, ...]) -> tuple[Path, ...]:
        resolved = []
        for path in written:
            absolute = _absolute(path, workdir)
            if not os.path.exists(absolute):
                raise SetupError(
                    f"sandbox.{key}: {path!r} ({str(absolute)!r}) does not exist; create it "
                    "first or remove it from the spec"
                )
            for folder in private:
                # agentrun's home inside a visible path is fine: it is covered last.
                if _inside(absolute, folder):
                    raise SetupError(
                        f"sandbox.{key}: {path!r} would expose agentrun's own home "
                        f"{str(folder)!r} (the run store, tokens, keys), which stays hidden"
                    )
            resolved.append(absolute)
        return tuple(dict.fromkeys(resolved))

    writable = paths("writable", spec.writable)
    # The Python that runs agentrun stays usable inside (a toolchain in the home folder, as
    # pyenv installs it): read-only, and never agentrun's own home.
    interpreters = [
        Path(os.path.realpath(prefix))
        for prefix in dict.fromkeys((sys.prefix, sys.base_prefix))
        if not any(_inside(Path(os.path.realpath(prefix)), folder) for folder in private)
    ]
    readable = tuple(dict.fromkeys([*paths("readable", spec.readable), *interpreters]))
    home = Path(os.path.realpath(Path.home()))
    homes = [home] if len(home.parts) > 1 else []  # never a HOME of "/"
    first = tuple(dict.fromkeys([*ALWAYS_HIDDEN, *homes]))
    return SandboxPolicy(
        mode=spec.mode,
        workdir=workdir,
        writable=writable,
        readable=readable,
        hidden_first=first,
        hidden_last=private,
        hidden_files=hidden_files,
        network_allow=spec.network,
        limits=spec.limits,
    )
