"""Built-in tools: ``read_file`` and ``list_dir`` (risk low), confined to declared paths.

Confinement (:class:`PathJail`): the model names paths relative to the agent's ``workdir``
(absolute paths are accepted only when they land inside a root). A path with a ``..``
component is refused outright; the rest is resolved with every symlink followed and must
lie inside one of the roots the spec declared (themselves resolved). This stops ``..``,
absolute-path and symlink escapes; it is not a sandbox against a hostile local process
racing the check (see docs/security.md).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import PathNotAllowed, ToolError
from . import Tool

#: Most bytes ``read_file`` reads from one file; the loop truncates further to
#: ``budgets.max_tool_output``.
READ_LIMIT = 1_048_576
#: Most entries ``list_dir`` shows.
LIST_LIMIT = 1000


class PathJail:
    """Resolves the model's paths inside the declared roots.

    Args:
        workdir: the agent's working directory (absolute).
        roots: the declared paths, relative to ``workdir`` or absolute.
    """

    def __init__(self, workdir: Path, roots: tuple[str, ...]) -> None:
        self.workdir = workdir
        self.roots = [Path(os.path.realpath(workdir / root)) for root in roots]
        self.declared = roots

    def resolve(self, requested: str) -> Path:
        """The real path of ``requested`` if it is inside a root.

        Raises:
            PathNotAllowed: ``..`` components, or a resolved path outside every root.
        """
        if "\x00" in requested:
            raise PathNotAllowed("path contains a NUL byte")
        parts = PurePosixPath(requested.replace("\\", "/")).parts
        if ".." in parts:
            raise PathNotAllowed(
                f"path {requested!r} contains '..'; name paths inside {self._allowed()}"
            )
        real = Path(os.path.realpath(self.workdir / requested))
        for root in self.roots:
            if real == root or real.is_relative_to(root):
                return real
        raise PathNotAllowed(f"path {requested!r} is outside the allowed paths {self._allowed()}")

    def display(self, path: Path) -> str:
        """``path`` relative to the workdir when possible (what the model sees)."""
        try:
            return str(path.relative_to(Path(os.path.realpath(self.workdir)))) or "."
        except ValueError:
            return str(path)

    def _allowed(self) -> str:
        return ", ".join(repr(r) for r in self.declared)


class ReadFile(Tool):
    """Read a UTF-8 text file inside the declared paths."""

    name = "read_file"
    risk = "low"
    parameters = {  # noqa: RUF012
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "File path, relative to the working folder."}
        },
        "required": ["path"],
        "additionalProperties": False,
    }

    def __init__(self, jail: PathJail) -> None:
        self.jail = jail
        self.description = (
            "Read a text file. Allowed paths: " + ", ".join(jail.declared) + "."
        )

    def run(self, arguments: dict[str, Any]) -> str:
        """The file's text (at most :data:`READ_LIMIT` bytes)."""
        path = self.jail.resolve(arguments["path"])
        if path.is_dir():
            raise ToolError(f"{arguments['path']!r} is a folder; use list_dir")
        if not path.exists():
            raise ToolError(f"file {arguments['path']!r} does not exist")
        with path.open("rb") as handle:
            data = handle.read(READ_LIMIT + 1)
        if b"\x00" in data[:8192]:
            raise ToolError(f"{arguments['path']!r} is a binary file, not text")
        text = data[:READ_LIMIT].decode("utf-8", errors="replace")
        if len(data) > READ_LIMIT:
            text += f"\n[file longer than {READ_LIMIT} bytes; the rest is not shown]"
        return text


class ListDir(Tool):
    """List a folder inside the declared paths."""

    name = "list_dir"
    risk = "low"
    parameters = {  # noqa: RUF012
        "type": "object",
        "properties": {
            "path": {
                "type": "string",
                "description": "Folder path, relative to the working folder. Default: '.'.",
            }
        },
        "additionalProperties": False,
    }

    def __init__(self, jail: PathJail) -> None:
        self.jail = jail
        self.description = (
            "List the files and folders in a folder. Allowed paths: "
            + ", ".join(jail.declared)
            + "."
        )

    def run(self, arguments: dict[str, Any]) -> str:
        """One entry per line: ``name/`` for folders, ``name (N bytes)`` for files."""
        requested = arguments.get("path") or "."
        path = self.jail.resolve(requested)
        if not path.is_dir():
            raise ToolError(f"{requested!r} is not a folder")
        lines = []
        for entry in sorted(os.scandir(path), key=lambda e: e.name)[:LIST_LIMIT]:
            if entry.is_dir():
                lines.append(entry.name + "/")
            else:
                try:
                    size = entry.stat().st_size
                except OSError:
                    size = 0
                lines.append(f"{entry.name} ({size} bytes)")
        return "\n".join(lines) if lines else "(empty folder)"
