"""File tools: confinement (``..``, absolute paths, symlinks, hard links), atomic writes, edits."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runner.errors import PathNotAllowed, ToolArgumentError, ToolError
from runner.tools import Tool, ToolRegistry, builtin
from runner.tools.builtin import EditFile, ListDir, PathJail, ReadFile, WriteFile

SECRET = "outside secret\n"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """``work/data`` is the only root; ``outside/secret.txt`` must stay out of reach."""
    workdir = tmp_path / "work"
    (workdir / "data").mkdir(parents=True)
    (workdir / "notes.txt").write_text("in the workdir, but not in a root\n")
    (workdir / "data" / "hello.txt").write_text("hello\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    return workdir


@pytest.fixture
def jail(work: Path) -> PathJail:
    return PathJail(work, ("data",))


def outside(work: Path) -> Path:
    return work.parent / "outside"


def all_calls(path: str) -> list[tuple[type[Tool], dict[str, str]]]:
    return [
        (ReadFile, {"path": path}),
        (WriteFile, {"path": path, "content": "pwned\n"}),
        (EditFile, {"path": path, "old": "outside", "new": "pwned"}),
    ]


def assert_outside_untouched(work: Path) -> None:
    assert (outside(work) / "secret.txt").read_text() == SECRET
    assert sorted(p.name for p in outside(work).iterdir()) == ["secret.txt"]


# -- escapes ---------------------------------------------------------------------------------


ESCAPES = [
    "../outside/secret.txt",
    "data/../../outside/secret.txt",
    "data/../notes.txt",
    "data/sub/../../../outside/secret.txt",
    "..\\outside\\secret.txt",
]


@pytest.mark.parametrize("path", ESCAPES)
@pytest.mark.parametrize("index", [0, 1, 2])
def test_dotdot_is_refused_by_every_file_tool(
    work: Path, jail: PathJail, path: str, index: int
) -> None:
    cls, arguments = all_calls(path)[index]
    with pytest.raises(PathNotAllowed, match=r"'\.\.'"):
        cls(jail).run(arguments)
    assert_outside_untouched(work)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_absolute_path_outside_the_roots_is_refused(work: Path, jail: PathJail, index: int) -> None:
    cls, arguments = all_calls(str(outside(work) / "secret.txt"))[index]
    with pytest.raises(PathNotAllowed, match="outside the allowed paths"):
        cls(jail).run(arguments)
    assert_outside_untouched(work)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_workdir_file_outside_the_declared_root_is_refused(
    work: Path, jail: PathJail, index: int
) -> None:
    cls, arguments = all_calls("notes.txt")[index]
    with pytest.raises(PathNotAllowed):
        cls(jail).run(arguments)
    assert (work / "notes.txt").read_text() == "in the workdir, but not in a root\n"


def test_absolute_path_inside_a_root_is_accepted(work: Path, jail: PathJail) -> None:
    target = work / "data" / "abs.txt"
    WriteFile(jail).run({"path": str(target), "content": "ok"})
    assert target.read_text() == "ok"
    assert ReadFile(jail).run({"path": str(target)}) == "ok"


@pytest.mark.parametrize("index", [0, 1, 2])
def test_symlinked_file_pointing_outside_is_refused(work: Path, jail: PathJail, index: int) -> None:
    (work / "data" / "link.txt").symlink_to(outside(work) / "secret.txt")
    cls, arguments = all_calls("data/link.txt")[index]
    with pytest.raises(PathNotAllowed, match="outside the allowed paths"):
        cls(jail).run(arguments)
    assert_outside_untouched(work)
    assert (work / "data" / "link.txt").is_symlink()


@pytest.mark.parametrize("index", [0, 1, 2])
def test_symlinked_folder_pointing_outside_is_refused(
    work: Path, jail: PathJail, index: int
) -> None:
    (work / "data" / "linkdir").symlink_to(outside(work), target_is_directory=True)
    cls, arguments = all_calls("data/linkdir/secret.txt")[index]
    with pytest.raises(PathNotAllowed):
        cls(jail).run(arguments)
    assert_outside_untouched(work)


def test_list_dir_through_a_symlinked_folder_is_refused(work: Path, jail: PathJail) -> None:
    (work / "data" / "linkdir").symlink_to(outside(work), target_is_directory=True)
    with pytest.raises(PathNotAllowed):
        ListDir(jail).run({"path": "data/linkdir"})
    with pytest.raises(PathNotAllowed):
        ListDir(jail).run({"path": ".."})


def test_new_file_under_a_symlinked_parent_is_refused_and_nothing_is_created(
    work: Path, jail: PathJail
) -> None:
    (work / "data" / "linkdir").symlink_to(outside(work), target_is_directory=True)
    with pytest.raises(PathNotAllowed):
        WriteFile(jail).run({"path": "data/linkdir/sub/deeper/new.txt", "content": "x"})
    assert_outside_untouched(work)


def test_dangling_symlink_pointing_outside_is_not_written_through(
    work: Path, jail: PathJail
) -> None:
    (work / "data" / "dangling").symlink_to(outside(work) / "created-by-model.txt")
    with pytest.raises(PathNotAllowed):
        WriteFile(jail).run({"path": "data/dangling", "content": "x"})
    assert_outside_untouched(work)


def test_hard_link_to_an_outside_file_is_replaced_not_written_through(
    work: Path, jail: PathJail
) -> None:
    os.link(outside(work) / "secret.txt", work / "data" / "hard.txt")
    WriteFile(jail).run({"path": "data/hard.txt", "content": "new\n"})
    EditFile(jail).run({"path": "data/hard.txt", "old": "new", "new": "newer"})
    assert (work / "data" / "hard.txt").read_text() == "newer\n"
    assert_outside_untouched(work)


def test_symlink_inside_the_root_is_followed_to_its_target(work: Path, jail: PathJail) -> None:
    (work / "data" / "alias.txt").symlink_to(work / "data" / "hello.txt")
    WriteFile(jail).run({"path": "data/alias.txt", "content": "via alias\n"})
    assert (work / "data" / "alias.txt").is_symlink()
    assert (work / "data" / "hello.txt").read_text() == "via alias\n"


def test_nul_byte_and_empty_path_are_refused(jail: PathJail) -> None:
    with pytest.raises(PathNotAllowed, match="NUL"):
        WriteFile(jail).run({"path": "data/a\x00b", "content": "x"})
    with pytest.raises(PathNotAllowed, match="empty"):
        WriteFile(jail).run({"path": "", "content": "x"})


def test_a_root_that_is_itself_a_symlink_still_confines(tmp_path: Path) -> None:
    real = tmp_path / "real-root"
    real.mkdir()
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "data").symlink_to(real, target_is_directory=True)
    (tmp_path / "other.txt").write_text("other")
    jail = PathJail(workdir, ("data",))
    WriteFile(jail).run({"path": "data/x.txt", "content": "fine"})
    assert (real / "x.txt").read_text() == "fine"
    with pytest.raises(PathNotAllowed):
        ReadFile(jail).run({"path": str(tmp_path / "other.txt")})


# -- write_file ------------------------------------------------------------------------------


def test_write_creates_parent_folders_inside_the_root(work: Path, jail: PathJail) -> None:
    result = WriteFile(jail).run({"path": "data/a/b/c.txt", "content": "deep ✓\n"})
    assert result == "created data/a/b/c.txt (9 bytes)"
    assert (work / "data" / "a" / "b" / "c.txt").read_text(encoding="utf-8") == "deep ✓\n"


def test_write_replaces_by_rename_and_keeps_the_mode(work: Path, jail: PathJail) -> None:
    target = work / "data" / "hello.txt"
    target.chmod(0o640)
    before = target.stat().st_ino
    result = WriteFile(jail).run({"path": "data/hello.txt", "content": "replaced\n"})
    assert result.startswith("replaced data/hello.txt")
    assert target.read_text() == "replaced\n"
    assert target.stat().st_ino != before  # a new file renamed over the old one
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in (work / "data").iterdir()) == ["hello.txt"]  # no temp left


def test_write_syncs_the_data_before_the_rename(
    work: Path, jail: PathJail, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        order.append("fsync")
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        order.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(builtin.os, "fsync", fsync)
    monkeypatch.setattr(builtin.os, "replace", replace)
    WriteFile(jail).run({"path": "data/hello.txt", "content": "synced"})
    assert order[:2] == ["fsync", "replace"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(
    work: Path, jail: PathJail, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_replace(src: str | Path, dst: str | Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(builtin.os, "replace", failing_replace)
    with pytest.raises(ToolError, match="No space left"):
        WriteFile(jail).run({"path": "data/hello.txt", "content": "never"})
    assert (work / "data" / "hello.txt").read_text() == "hello\n"
    assert sorted(p.name for p in (work / "data").iterdir()) == ["hello.txt"]


def test_write_to_a_folder_or_the_root_itself_is_refused(work: Path, jail: PathJail) -> None:
    (work / "data" / "sub").mkdir()
    with pytest.raises(ToolError, match="is a folder"):
        WriteFile(jail).run({"path": "data/sub", "content": "x"})
    with pytest.raises(ToolError, match="is a folder"):
        WriteFile(jail).run({"path": "data", "content": "x"})


def test_write_under_a_file_used_as_a_folder_fails_cleanly(jail: PathJail) -> None:
    with pytest.raises(ToolError, match="cannot create the folder"):
        WriteFile(jail).run({"path": "data/hello.txt/inner.txt", "content": "x"})


def test_write_refuses_content_over_the_limit(
    jail: PathJail, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(builtin, "WRITE_LIMIT", 10)
    with pytest.raises(ToolError, match="at most 10 bytes"):
        WriteFile(jail).run({"path": "data/big.txt", "content": "x" * 11})


# -- edit_file -------------------------------------------------------------------------------


def test_edit_replaces_exactly_one_occurrence(work: Path, jail: PathJail) -> None:
    (work / "data" / "code.py").write_text("a = 1\nb = 2\nc = 3\n")
    result = EditFile(jail).run({"path": "data/code.py", "old": "b = 2", "new": "b = 20"})
    assert result == "edited data/code.py: replaced 1 occurrence at line 2"
    assert (work / "data" / "code.py").read_text() == "a = 1\nb = 20\nc = 3\n"


def test_edit_refuses_text_that_is_not_found(work: Path, jail: PathJail) -> None:
    with pytest.raises(ToolError, match="not found"):
        EditFile(jail).run({"path": "data/hello.txt", "old": "Hello", "new": "x"})
    assert (work / "data" / "hello.txt").read_text() == "hello\n"


def test_edit_refuses_text_that_occurs_several_times(work: Path, jail: PathJail) -> None:
    (work / "data" / "dup.txt").write_text("x = 1\nx = 1\n")
    with pytest.raises(ToolError, match="occurs 2 times"):
        EditFile(jail).run({"path": "data/dup.txt", "old": "x = 1", "new": "x = 2"})
    assert (work / "data" / "dup.txt").read_text() == "x = 1\nx = 1\n"


def test_edit_counts_overlapping_occurrences_as_ambiguous(work: Path, jail: PathJail) -> None:
    (work / "data" / "aaa.txt").write_text("aaa")
    with pytest.raises(ToolError, match="more than once"):
        EditFile(jail).run({"path": "data/aaa.txt", "old": "aa", "new": "b"})
    assert (work / "data" / "aaa.txt").read_text() == "aaa"


def test_edit_refuses_missing_binary_and_non_utf8_files(work: Path, jail: PathJail) -> None:
    (work / "data" / "bin.dat").write_bytes(b"ab\x00cd")
    (work / "data" / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ToolError, match="does not exist"):
        EditFile(jail).run({"path": "data/missing.txt", "old": "a", "new": "b"})
    with pytest.raises(ToolError, match="binary"):
        EditFile(jail).run({"path": "data/bin.dat", "old": "ab", "new": "x"})
    with pytest.raises(ToolError, match="not UTF-8"):
        EditFile(jail).run({"path": "data/latin1.txt", "old": "caf", "new": "x"})
    assert (work / "data" / "latin1.txt").read_bytes() == "café".encode("latin-1")


def test_edit_keeps_the_file_mode_and_replaces_atomically(work: Path, jail: PathJail) -> None:
    target = work / "data" / "run.sh"
    target.write_text("echo one\n")
    target.chmod(0o755)
    before = target.stat().st_ino
    EditFile(jail).run({"path": "data/run.sh", "old": "one", "new": "two"})
    assert target.read_text() == "echo two\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert target.stat().st_ino != before


# -- schemas and risk ------------------------------------------------------------------------


def test_risk_levels(jail: PathJail) -> None:
    assert (ReadFile(jail).risk, ListDir(jail).risk) == ("low", "low")
    assert (WriteFile(jail).risk, EditFile(jail).risk) == ("medium", "medium")


def test_arguments_are_checked_against_the_schemas(jail: PathJail) -> None:
    write, edit = WriteFile(jail), EditFile(jail)
    registry = ToolRegistry([write, edit])
    assert registry.parse_arguments(write, '{"path": "data/x", "content": ""}') == {
        "path": "data/x",
        "content": "",
    }
    with pytest.raises(ToolArgumentError, match="'content' is a required property"):
        registry.parse_arguments(write, '{"path": "data/x"}')
    with pytest.raises(ToolArgumentError, match="old"):
        registry.parse_arguments(edit, '{"path": "data/x", "old": "", "new": "y"}')
    with pytest.raises(ToolArgumentError, match="Additional properties"):
        registry.parse_arguments(edit, '{"path": "a", "old": "b", "new": "c", "all": true}')


def test_a_root_that_names_one_file_can_be_written(tmp_path: Path) -> None:
    """``write_file: {paths: [greeting.txt]}`` allows that one file (it was refused as a
    folder, which the local model's task suite showed)."""
    jail = PathJail(tmp_path, ("greeting.txt",))
    WriteFile(jail).run({"path": "greeting.txt", "content": "hello"})
    assert (tmp_path / "greeting.txt").read_text() == "hello"
    WriteFile(jail).run({"path": "greeting.txt", "content": "hello again"})
    assert (tmp_path / "greeting.txt").read_text() == "hello again"
    with pytest.raises(PathNotAllowed):
        WriteFile(jail).run({"path": "other.txt", "content": "x"})
    folder = PathJail(tmp_path, ("out",))
    (tmp_path / "out").mkdir()
    with pytest.raises(ToolError, match="is a folder, not a file"):
        WriteFile(folder).run({"path": "out", "content": "x"})
