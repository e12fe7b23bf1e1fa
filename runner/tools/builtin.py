"""Built-in file tools, confined to declared paths.

``read_file`` and ``list_dir`` (risk low) read; ``write_file`` and ``edit_file`` (risk
medium) write, atomically: the new content goes to a temporary file in the same folder,
is flushed to disk (``fsync``) and renamed over the target (``os.replace``), so a reader
sees the old file or the new one, never a half-written one.

Confinement (:class:`PathJail`): the model names paths relative to the agent's ``workdir``
(absolute paths are accepted only when they land inside a root). A path with a ``..``
component is refused outright; the rest is resolved with every symlink followed and must
lie inside one of the roots the spec declared (themselves resolved). This stops ``..``,
absolute-path and symlink escapes (a symlinked file or folder pointing outside the roots is
refused, for reads and writes alike). Writes go to the resolved path and replace it by a
rename, which never follows a symlink planted at the target afterwards; parent folders
created for a write are checked again once they exist. It is not a sandbox against a
hostile local process racing the checks (see docs/security.md).

Every path argument is put in its canonical form once, when the call's arguments are parsed
(:meth:`_FileTool.canonical_arguments`, :func:`runner.canonical.canonical_path`): the policy
matches its rules against that text and the tool resolves that same text, so ``./data/x``,
``data//x``, an absolute path and a symlink's name are one path to both.

Hard links: ``read_file`` and ``edit_file`` refuse a file with more than one hard link (as
the open file reports it), since another name of it may lie outside the roots and no
portable call finds the other names. ``write_file`` replaces such a file by a rename, which
gives the name a file of its own and leaves the other names untouched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from ..canonical import canonical_path, refused_on_text
from ..errors import PathNotAllowed, ToolError
from ..spec.vocabulary import Risk
from . import Tool

#: Most bytes ``read_file`` reads from one file; the loop truncates further to
#: ``budgets.max_tool_output``.
READ_LIMIT = 1_048_576
#: Most entries ``list_dir`` shows.
LIST_LIMIT = 1000
#: Largest file, in bytes, that ``write_file`` writes or ``edit_file`` edits.
WRITE_LIMIT = 10_485_760


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

    def canonical(self, requested: str) -> str:
        """The canonical form of ``requested`` (:func:`runner.canonical.canonical_path`).

        What the policy's rules see and what :meth:`resolve` then resolves; a path refused on
        its text (empty, NUL, ``..``) comes back as written. Never raises.
        """
        return canonical_path(self.workdir, requested)

    def resolve(self, requested: str) -> Path:
        """The real path of ``requested`` (every symlink followed) if it is inside a root.

        Args:
            requested: the model's path, relative to the workdir or absolute.

        Returns:
            The resolved absolute path; it may not exist yet.

        Raises:
            PathNotAllowed: a NUL byte, ``..`` components, or a resolved path outside every
                root (``..``, an absolute path elsewhere, a symlink pointing out).
        """
        refused = refused_on_text(requested)
        if refused == "NUL":
            raise PathNotAllowed("path contains a NUL byte")
        if refused == "empty":
            raise PathNotAllowed(f"empty path; name paths inside {self._allowed()}")
        if refused == "..":
            raise PathNotAllowed(
                f"path {requested!r} contains '..'; name paths inside {self._allowed()}"
            )
        real = Path(os.path.realpath(self.workdir / requested))
        if self.inside(real):
            return real
        raise PathNotAllowed(f"path {requested!r} is outside the allowed paths {self._allowed()}")

    def resolve_for_write(self, requested: str) -> Path:
        """Resolve ``requested`` for writing, creating its missing parent folders in the root.

        Args:
            requested: the model's path, relative to the workdir or absolute.

        Returns:
            The resolved absolute path of the file to write; its parent folder exists and
            is (still) inside a root.

        Raises:
            PathNotAllowed: as :meth:`resolve`, or a parent that resolves outside the roots
                once created.
            ToolError: the path is a folder, or a parent cannot be created.
        """
        real = self.resolve(requested)
        if real.is_dir():  # a root that names one file (paths: [report.md]) is writable
            raise ToolError(f"{requested!r} is a folder, not a file")
        try:
            real.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ToolError(
                f"cannot create the folder of {requested!r}: {error.strerror or error}"
            ) from None
        parent = Path(os.path.realpath(real.parent))
        if not (self.inside(parent) or parent / real.name in self.roots):
            raise PathNotAllowed(
                f"path {requested!r} is outside the allowed paths {self._allowed()}"
            )
        return real

    def inside(self, real: Path) -> bool:
        """Whether the resolved path ``real`` is a root or lies under one."""
        return any(real == root or real.is_relative_to(root) for root in self.roots)

    def display(self, path: Path) -> str:
        """``path`` relative to the workdir when possible (what the model sees)."""
        try:
            return str(path.relative_to(Path(os.path.realpath(self.workdir)))) or "."
        except ValueError:
            return str(path)

    def _allowed(self) -> str:
        return ", ".join(repr(r) for r in self.declared)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    The bytes go to a new temporary file in the same folder (created exclusively, so
    never through a symlink), which is flushed with ``fsync`` and renamed over ``path``
    with ``os.replace``; the folder is then synced too. An existing file keeps its
    permission bits; a new one gets the usual ``0o666`` minus the umask.

    Args:
        path: the resolved destination; its folder must exist.
        data: the complete new content.

    Raises:
        OSError: the folder is not writable, the disk is full, and so on; the temporary
            file is removed.
    """
    try:
        mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temp, flags, 0o666 if mode is None else 0o600)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _os_error(action: str, requested: str, error: OSError) -> ToolError:
    return ToolError(f"cannot {action} {requested!r}: {error.strerror or error}")


def _refuse_hard_links(fd: int, requested: str, action: str, jail: PathJail) -> None:
    """Refuse the open regular file ``fd`` when it has more than one hard link.

    Another name of the file may lie outside the roots, and there is no portable way to
    find a file's other names. Checked on the open file, so it is the file that is read.
    A filesystem that reports one link for every file cannot be checked.

    Raises:
        PathNotAllowed: ``st_nlink`` is above 1.
    """
    status = os.fstat(fd)
    if stat.S_ISREG(status.st_mode) and status.st_nlink > 1:
        raise PathNotAllowed(
            f"{requested!r} has {status.st_nlink} hard links, and another name of the same "
            f"file may lie outside the allowed paths {jail._allowed()}, so it is not "
            f"{action}; a copy with a single name (cp, not ln) inside them can be used"
            + ("; or write the whole new content with write_file" if action == "edited" else "")
        )


class _FileTool(Tool):
    """A tool confined by a :class:`PathJail`; ``summary`` starts its description.

    ``default_path`` is the path used when the call names none (None: the path is required).
    """

    summary = ""
    default_path: str | None = None

    def __init__(self, jail: PathJail) -> None:
        self.jail = jail
        self.description = f"{self.summary} Allowed paths: {', '.join(jail.declared)}."

    def canonical_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """``arguments`` with ``path`` in canonical form (:meth:`PathJail.canonical`).

        A missing or empty ``path`` becomes ``default_path`` when the tool has one, so a
        rule sees the folder the tool lists.
        """
        requested = arguments.get("path")
        if not requested and self.default_path is not None:
            requested = self.default_path
        if not isinstance(requested, str):
            return arguments
        return {**arguments, "path": self.jail.canonical(requested)}

    def refusal(self, arguments: dict[str, Any]) -> str | None:
        """Why the path would be refused (outside the declared roots), or None; reads nothing."""
        requested = arguments.get("path") or self.default_path
        if not isinstance(requested, str):
            return None
        try:
            self.jail.resolve(requested)
        except PathNotAllowed as error:
            return str(error)
        return None


class ReadFile(_FileTool):
    """Read a UTF-8 text file inside the declared paths."""

    name = "read_file"
    summary = "Read a text file."
    risk = Risk.LOW
    parameters = {  # noqa: RUF012
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "File path, relative to the working folder."}
        },
        "required": ["path"],
        "additionalProperties": False,
    }

    def __init__(self, jail: PathJail, max_output: int = READ_LIMIT) -> None:
        super().__init__(jail)
        self.max_output = max(min(max_output, READ_LIMIT), 0)

    def run(self, arguments: dict[str, Any]) -> str:
        """The file's text, in at most ``max_output`` UTF-8 bytes (a note included).

        Args:
            arguments: ``{"path": str}``.

        Returns:
            The text, decoded as UTF-8 (undecodable bytes replaced). A file longer than
            fits ends with a note giving its real size and how many of its bytes are shown,
            so the loop never cuts it again (``budgets.max_tool_output``, passed in as
            ``max_output``, and at most :data:`READ_LIMIT`).

        Raises:
            PathNotAllowed: the path escapes the declared roots, or the file has more than
                one hard link.
            ToolError: a folder, a missing file, a binary file, or an unreadable one.
        """
        path = self.jail.resolve(arguments["path"])
        if path.is_dir():
            raise ToolError(f"{arguments['path']!r} is a folder; use list_dir")
        if not path.exists():
            raise ToolError(f"file {arguments['path']!r} does not exist")
        try:
            with path.open("rb") as handle:
                _refuse_hard_links(handle.fileno(), arguments["path"], "read", self.jail)
                size = os.fstat(handle.fileno()).st_size
                data = handle.read(self.max_output + 1)
        except OSError as error:
            raise _os_error("read", arguments["path"], error) from None
        if b"\x00" in data[:8192]:
            raise ToolError(f"{arguments['path']!r} is a binary file, not text")
        if len(data) <= self.max_output:
            return data.decode("utf-8", errors="replace")
        size = max(size, len(data))
        hint = (
            "raise budgets.max_tool_output to see more"
            if self.max_output < READ_LIMIT
            else f"read_file shows at most {READ_LIMIT} bytes of a file"
        )
        return _cut_with_note(data, self.max_output, size, hint)


def _cut_with_note(data: bytes, limit: int, size: int, hint: str) -> str:
    """The start of a file of ``size`` bytes in at most ``limit`` UTF-8 bytes, note included.

    The note says the file's real size, how many of its bytes are shown, and ``hint``; the
    text is cut at a character boundary.
    """

    def note(shown: int) -> str:
        return f"\n[file is {size} bytes; showing its first {shown}: {hint}]"

    # The note for ``limit`` is the longest one (fewer bytes shown, fewer digits).
    room = max(limit - len(note(limit).encode()), 0)
    text = data[:room].decode("utf-8", errors="ignore")
    return text + note(len(text.encode("utf-8")))


class ListDir(_FileTool):
    """List a folder inside the declared paths."""

    name = "list_dir"
    summary = "List the files and folders in a folder."
    risk = Risk.LOW
    default_path = "."
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

    def run(self, arguments: dict[str, Any]) -> str:
        """One entry per line: ``name/`` for folders, ``name (N bytes)`` for files.

        Args:
            arguments: ``{"path": str}`` (optional, default ``"."``).

        Returns:
            At most :data:`LIST_LIMIT` entries, sorted by name.

        Raises:
            PathNotAllowed: the path escapes the declared roots.
            ToolError: not a folder, or unreadable.
        """
        requested = arguments.get("path") or "."
        path = self.jail.resolve(requested)
        if not path.is_dir():
            raise ToolError(f"{requested!r} is not a folder")
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)[:LIST_LIMIT]
        except OSError as error:
            raise _os_error("list", requested, error) from None
        lines = []
        for entry in entries:
            if entry.is_dir():
                lines.append(entry.name + "/")
            else:
                try:
                    size = entry.stat().st_size
                except OSError:
                    size = 0
                lines.append(f"{entry.name} ({size} bytes)")
        return "\n".join(lines) if lines else "(empty folder)"


class WriteFile(_FileTool):
    """Create or replace a UTF-8 text file inside the declared paths, atomically."""

    name = "write_file"
    summary = "Create a text file or replace its whole content."
    risk = Risk.MEDIUM
    parameters = {  # noqa: RUF012
        "type": "object",
        "properties": {
            "path": {
                "type": "string",
                "description": "File path, relative to the working folder. Missing parent "
                "folders are created.",
            },
            "content": {
                "type": "string",
                "description": "The complete new content of the file (UTF-8 text).",
            },
        },
        "required": ["path", "content"],
        "additionalProperties": False,
    }

    def run(self, arguments: dict[str, Any]) -> str:
        """Write ``content`` to ``path`` (atomic replace, see :func:`atomic_write`).

        Args:
            arguments: ``{"path": str, "content": str}``.

        Returns:
            ``"created PATH (N bytes)"`` or ``"replaced PATH (N bytes)"``.

        Raises:
            PathNotAllowed: the path escapes the declared roots.
            ToolError: the path is a folder, the content is larger than
                :data:`WRITE_LIMIT` bytes, or the file cannot be written.
        """
        requested = arguments["path"]
        data = arguments["content"].encode("utf-8", errors="replace")
        if len(data) > WRITE_LIMIT:
            raise ToolError(
                f"content is {len(data)} bytes; write_file writes at most {WRITE_LIMIT} bytes"
            )
        path = self.jail.resolve_for_write(requested)
        existed = path.exists()
        try:
            atomic_write(path, data)
        except OSError as error:
            raise _os_error("write", requested, error) from None
        verb = "replaced" if existed else "created"
        return f"{verb} {self.jail.display(path)} ({len(data)} bytes)"


class EditFile(_FileTool):
    """Replace exactly one occurrence of a piece of text in a file, atomically."""

    name = "edit_file"
    summary = "Replace one exact, unique piece of text in a text file with new text."
    risk = Risk.MEDIUM
    parameters = {  # noqa: RUF012
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "File path, relative to the working folder."},
            "old": {
                "type": "string",
                "minLength": 1,
                "description": "The exact text to replace; it must occur exactly once in the "
                "file (include surrounding lines to make it unique).",
            },
            "new": {"type": "string", "description": "The replacement text."},
        },
        "required": ["path", "old", "new"],
        "additionalProperties": False,
    }

    def run(self, arguments: dict[str, Any]) -> str:
        """Replace the single occurrence of ``old`` with ``new`` in ``path``.

        Args:
            arguments: ``{"path": str, "old": str, "new": str}``.

        Returns:
            ``"edited PATH: replaced 1 occurrence at line N"``.

        Raises:
            PathNotAllowed: the path escapes the declared roots, or the file has more than
                one hard link (replace it whole with ``write_file`` instead).
            ToolError: a missing, binary, non-UTF-8 or oversized file; ``old`` found zero
                times or more than once (overlapping matches count); a write failure.
        """
        requested, old, new = arguments["path"], arguments["old"], arguments["new"]
        if not old:
            raise ToolError("'old' is empty; give the exact text to replace")
        path = self.jail.resolve(requested)
        if path.is_dir():
            raise ToolError(f"{requested!r} is a folder, not a file")
        if not path.exists():
            raise ToolError(f"file {requested!r} does not exist; create it with write_file")
        try:
            with path.open("rb") as handle:
                _refuse_hard_links(handle.fileno(), requested, "edited", self.jail)
                data = handle.read(WRITE_LIMIT + 1)
        except OSError as error:
            raise _os_error("read", requested, error) from None
        if len(data) > WRITE_LIMIT:
            raise ToolError(f"{requested!r} is larger than {WRITE_LIMIT} bytes; not edited")
        if b"\x00" in data[:8192]:
            raise ToolError(f"{requested!r} is a binary file, not text")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"{requested!r} is not UTF-8 text; not edited") from None
        first = text.find(old)
        if first < 0:
            raise ToolError(
                f"the text to replace was not found in {requested!r}; read the file and copy "
                "the exact text, including whitespace"
            )
        if text.find(old, first + 1) >= 0:
            count = text.count(old)
            times = f"{count} times" if count > 1 else "more than once (overlapping)"
            raise ToolError(
                f"the text to replace occurs {times} in {requested!r}; include more "
                "surrounding text so that it occurs exactly once"
            )
        line = text.count("\n", 0, first) + 1
        if old == new:
            return f"{self.jail.display(path)} unchanged: 'old' and 'new' are the same"
        updated = text[:first] + new + text[first + len(old) :]
        encoded = updated.encode("utf-8", errors="replace")
        if len(encoded) > WRITE_LIMIT:
            raise ToolError(f"the edited file would exceed {WRITE_LIMIT} bytes; not edited")
        try:
            atomic_write(path, encoded)
        except OSError as error:
            raise _os_error("write", requested, error) from None
        return f"edited {self.jail.display(path)}: replaced 1 occurrence at line {line}"
