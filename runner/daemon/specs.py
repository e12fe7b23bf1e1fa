"""The daemon's spec folders: which spec files changed, and what each change means.

:meth:`SpecFolders.scan` compares the ``*.yaml`` and ``*.yml`` files of the daemon's folders
with what it saw last and yields one change per file that matters: a valid spec to
(re)install (:class:`Loaded`), an invalid one with its first located error
(:class:`Invalid`: the agent keeps its last good version), or an agent whose file is gone
(:class:`Removed`). An unchanged file (same mtime) is not read again, and neither is an
invalid file until it changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..spec import TriggerKind


@dataclass(frozen=True)
class Loaded:
    """A valid spec to install (new, or an edit of a known agent's file)."""

    spec: Any
    path: Path
    mtime: float
    source: bytes
    replaces: str | None
    """The agent name the file had before, when the edit renamed it (else None)."""
    warnings: tuple[str, ...] = ()
    """The spec's warnings, located (a key variable the daemon's environment lacks, ...)."""


@dataclass(frozen=True)
class Invalid:
    """A spec file that does not load: ``message`` names the file, line and column."""

    path: Path
    message: str


@dataclass(frozen=True)
class Removed:
    """An agent whose spec file is gone."""

    name: str
    path: Path


Change = Loaded | Invalid | Removed


def load_warnings(loaded: Loaded, listening: bool) -> list[str]:
    """What will fail later in a spec the daemon just loaded, one line each.

    - The spec's own warnings, the daemon's environment included: a key variable the model
      reads (``model.api_key_env``, or its provider's, such as ``OPENAI_API_KEY``) that the
      daemon lacks (:func:`runner.spec.checks.key_variable_warnings`, as ``validate`` warns).
    - Webhook triggers while the daemon has no HTTP listener (``listening`` False: started
      without ``--http``): they can never fire.

    The spec stays loaded either way (the variable may be exported and the daemon
    restarted); these are warnings for the daemon's log.
    """
    spec = loaded.spec
    warnings = [f"agent {spec.name}: {warning}" for warning in loaded.warnings]
    hooks = [t for t in spec.triggers if t.kind == TriggerKind.WEBHOOK]
    if hooks and not listening:
        warnings.append(
            f"agent {spec.name}: {len(hooks)} webhook trigger(s) will never fire: the daemon "
            "serves no HTTP (start it with --http HOST:PORT)"
        )
    return warnings


class SpecFolders:
    """The daemon's spec folders and what was last loaded from them.

    Args:
        dirs: folders of spec files (not searched recursively).

    Attributes:
        by_path: spec file -> the agent name loaded from it.
        errors: spec file -> ``"{mtime}:{message}"`` of its last failed load.
    """

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = [d.resolve() for d in dirs]
        self.by_path: dict[Path, str] = {}
        self.mtimes: dict[Path, float] = {}
        self.errors: dict[Path, str] = {}

    def files(self) -> list[Path]:
        """Every spec file in the folders, each folder's in name order."""
        files: list[Path] = []
        for folder in self.dirs:
            files.extend(sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]))
        return files

    def error_messages(self) -> list[str]:
        """The current spec errors, one located message each."""
        return [e.split(":", 1)[1] for e in self.errors.values()]

    def scan(
        self, path_of: Callable[[str], Path | None], environ: Mapping[str, str] | None = None
    ) -> Iterator[Change]:
        """Yield what changed since the last scan; the caller applies each change.

        ``path_of`` gives the spec file of an installed agent (None when there is none): a
        second file with a name already in use is :class:`Invalid`. A file removed or made
        unreadable mid-scan is seen on the next scan. ``environ`` (the daemon's environment)
        adds the warnings of key variables it lacks to each :class:`Loaded`.
        """
        from ..spec import check_spec

        seen: set[Path] = set()
        for path in self.files():
            seen.add(path)
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                continue
            name = self.by_path.get(path)
            if name is not None and self.mtimes.get(path) == mtime:
                continue
            if path in self.errors and self.errors[path].startswith(f"{mtime}:"):
                continue
            try:
                source = path.read_bytes()
                spec, diagnostics = check_spec(path, source, environ)
            except SpecError as error:
                spec, diagnostics = None, error.diagnostics
            except OSError:
                continue
            if spec is None:
                first = next(d for d in diagnostics if d.severity == "error")
                keeping = " (keeping the last good version)" if name else ""
                yield self._invalid(path, mtime, first.headline() + keeping)
                continue
            other = path_of(spec.name)
            if other is not None and other != path:
                yield self._invalid(
                    path, mtime, f"{path}: agent name {spec.name!r} is already used by {other}"
                )
                continue
            self.errors.pop(path, None)
            self.by_path[path] = spec.name
            self.mtimes[path] = mtime
            replaces = name if name is not None and name != spec.name else None
            warnings = tuple(d.headline() for d in diagnostics if d.severity == "warning")
            yield Loaded(spec, path, mtime, source, replaces, warnings)
        for path, name in list(self.by_path.items()):
            if path not in seen:
                del self.by_path[path]
                self.mtimes.pop(path, None)
                yield Removed(name, path)

    def _invalid(self, path: Path, mtime: float, message: str) -> Invalid:
        self.errors[path] = f"{mtime}:{message}"
        return Invalid(path, message)
