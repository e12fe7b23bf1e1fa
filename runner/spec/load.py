"""The loading pipeline: read the file → YAML with positions → JSON Schema → build → checks.

Every problem is a :class:`~runner.errors.Diagnostic` at the file's own line and column,
and all of them are reported at once, in file order. Entry points:

- :func:`load_spec` returns an :class:`~runner.spec.types.AgentSpec` or raises
  :class:`~runner.errors.SpecError`;
- :func:`check_spec` returns the spec (or None) and every diagnostic, warnings included;
- :func:`check_specs` checks several files as one set, as the daemon loads a folder: two
  files with the same agent ``name`` are an error in each.

The steps are imported when a spec is first loaded, so a module that only names the spec's
types (:mod:`runner.spec.types`) pays for none of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import Diagnostic, SpecError
from .types import AgentSpec

if TYPE_CHECKING:
    from .yamlpos import Located

#: Largest spec file read, in bytes. Real specs are a few KiB.
MAX_SPEC_BYTES = 1_000_000


def _read(path: Path, shown: str, source: bytes | None = None) -> tuple[bytes, str]:
    if source is not None:
        raw = source
    elif not path.exists():
        raise SpecError.single(shown, "spec file not found", "check the path")
    elif path.is_dir():
        raise SpecError.single(shown, "is a folder, not a spec file", "name a .yaml file")
    else:
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise SpecError.single(shown, f"cannot read the spec: {error.strerror}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError.single(
            shown, f"spec is {len(raw)} bytes, more than the {MAX_SPEC_BYTES} allowed"
        )
    try:
        return raw, raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError.single(
            shown, f"spec is not UTF-8 text (byte {error.start})", "save it as UTF-8"
        ) from None


def check_spec(
    path: str | Path, source: bytes | None = None, environ: Mapping[str, str] | None = None
) -> tuple[AgentSpec | None, list[Diagnostic]]:
    """Load and check a spec, collecting every problem instead of stopping at the first.

    Args:
        path: the spec file; relative paths in the spec resolve against its folder.
        source: the file's bytes, when already read (the daemon runs the last good version
            of a spec, whatever the file holds now).
        environ: when given, also warn about the model's key variables it lacks
            (:func:`runner.spec.checks.key_variable_warnings`); without it the result
            depends on the file alone.

    Returns:
        ``(spec, diagnostics)``: ``spec`` is None when any diagnostic is an error;
        ``diagnostics`` are in file order and include warnings.

    Raises:
        SpecError: only for a file that cannot be read at all (missing, a folder, not UTF-8).
    """
    spec, diagnostics, _ = _check(path, source, environ)
    return spec, diagnostics


def check_specs(
    paths: Iterable[Path], environ: Mapping[str, str] | None = None
) -> list[tuple[Path, AgentSpec | None, list[Diagnostic]]]:
    """Check several spec files as one set: each as :func:`check_spec` does, and their names.

    Two valid files (or more) with the same agent ``name`` each get an error at their
    ``name``, naming all of them: the daemon would load the first and reject the others.
    (A file with errors of its own is not loaded by the daemon, so it takes no name.)
    A file that cannot be read gets its one diagnostic. A path given twice is checked once.

    Returns:
        ``(path, spec, diagnostics)`` per file, in the order given; ``spec`` is None when
        any of the file's diagnostics is an error.
    """
    results: list[tuple[Path, AgentSpec | None, list[Diagnostic]]] = []
    located_by_index: dict[int, Located] = {}
    seen: set[Path] = set()
    for path in paths:
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        try:
            spec, diagnostics, located = _check(path, None, environ)
        except SpecError as error:
            spec, diagnostics, located = None, list(error.diagnostics), None
        if spec is not None and located is not None:
            located_by_index[len(results)] = located
        results.append((path, spec, diagnostics))
    by_name: dict[str, list[int]] = {}
    for index, (_, spec, _) in enumerate(results):
        if spec is not None:
            by_name.setdefault(spec.name, []).append(index)
    for name, indexes in by_name.items():
        if len(indexes) < 2:
            continue
        files = [str(results[i][0]) for i in indexes]
        listed = ", ".join(files[:-1]) + " and " + files[-1]
        for index in indexes:
            path, _, diagnostics = results[index]
            located = located_by_index[index]
            duplicate = located.diagnostic(
                str(path),
                located.value_pos(("name",)),
                f"agent name {name!r} is used by {listed}; the daemon loads one of them "
                "and rejects the others",
                "give each agent its own name",
            )
            diagnostics = sorted([*diagnostics, duplicate], key=lambda d: (d.line, d.column))
            results[index] = (path, None, diagnostics)
    return results


def _check(
    path: str | Path, source: bytes | None, environ: Mapping[str, str] | None
) -> tuple[AgentSpec | None, list[Diagnostic], Located | None]:
    """:func:`check_spec`, and the parsed document (None when the YAML did not parse)."""
    from . import yamlpos
    from .build import build_spec
    from .checks import key_variable_warnings, semantic_checks
    from .validation import diagnose

    shown = str(path)
    file = Path(path)
    raw, text = _read(file, shown, source)
    located, diagnostics = yamlpos.parse(text, shown)
    if located is None:
        return None, diagnostics, None
    if not isinstance(located.value, dict):
        found = "a list" if isinstance(located.value, list) else f"{located.value!r}"
        return (
            None,
            [
                *diagnostics,
                located.diagnostic(
                    shown,
                    located.value_pos(()),
                    f"the spec must be a mapping of keys to values, not {found}",
                    "start with 'version: 1' and 'name: ...'; see `agentrun init NAME`",
                ),
            ],
            located,
        )
    diagnostics = sorted(diagnostics + diagnose(located, shown), key=lambda d: (d.line, d.column))
    if any(d.severity == "error" for d in diagnostics):
        return None, diagnostics, located
    spec = build_spec(located.value, file.resolve(), raw)
    diagnostics = diagnostics + semantic_checks(spec, located, shown)
    if environ is not None:
        diagnostics += key_variable_warnings(spec, located, shown, environ)
    diagnostics.sort(key=lambda d: (d.line, d.column))
    if any(d.severity == "error" for d in diagnostics):
        return None, diagnostics, located
    return spec, diagnostics, located


def load_spec(path: str | Path, source: bytes | None = None) -> AgentSpec:
    """Load a spec file (or its given ``source`` bytes) into an :class:`AgentSpec`.

    Raises:
        SpecError: with every located diagnostic, when the spec is invalid.
    """
    spec, diagnostics = check_spec(path, source)
    if spec is None:
        raise SpecError(diagnostics)
    return spec
