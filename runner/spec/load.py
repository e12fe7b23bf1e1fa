"""The loading pipeline: read the file → YAML with positions → JSON Schema → build → checks.

Every problem is a :class:`~runner.errors.Diagnostic` at the file's own line and column,
and all of them are reported at once, in file order. Entry points:

- :func:`load_spec` returns an :class:`~runner.spec.types.AgentSpec` or raises
  :class:`~runner.errors.SpecError`;
- :func:`check_spec` returns the spec (or None) and every diagnostic, warnings included.

The steps are imported when a spec is first loaded, so a module that only names the spec's
types (:mod:`runner.spec.types`) pays for none of them.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import Diagnostic, SpecError
from .types import AgentSpec

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
    path: str | Path, source: bytes | None = None
) -> tuple[AgentSpec | None, list[Diagnostic]]:
    """Load and check a spec, collecting every problem instead of stopping at the first.

    Args:
        path: the spec file; relative paths in the spec resolve against its folder.
        source: the file's bytes, when already read (the daemon runs the last good version
            of a spec, whatever the file holds now).

    Returns:
        ``(spec, diagnostics)``: ``spec`` is None when any diagnostic is an error;
        ``diagnostics`` are in file order and include warnings.

    Raises:
        SpecError: only for a file that cannot be read at all (missing, a folder, not UTF-8).
    """
    from . import yamlpos
    from .build import build_spec
    from .checks import semantic_checks
    from .validation import diagnose

    shown = str(path)
    file = Path(path)
    raw, text = _read(file, shown, source)
    located, diagnostics = yamlpos.parse(text, shown)
    if located is None:
        return None, diagnostics
    if not isinstance(located.value, dict):
        found = "a list" if isinstance(located.value, list) else f"{located.value!r}"
        return None, [
            *diagnostics,
            located.diagnostic(
                shown,
                located.value_pos(()),
                f"the spec must be a mapping of keys to values, not {found}",
                "start with 'version: 1' and 'name: ...'; see `agentrun init NAME`",
            ),
        ]
    diagnostics = sorted(diagnostics + diagnose(located, shown), key=lambda d: (d.line, d.column))
    if any(d.severity == "error" for d in diagnostics):
        return None, diagnostics
    spec = build_spec(located.value, file.resolve(), raw)
    diagnostics = sorted(
        diagnostics + semantic_checks(spec, located, shown), key=lambda d: (d.line, d.column)
    )
    if any(d.severity == "error" for d in diagnostics):
        return None, diagnostics
    return spec, diagnostics


def load_spec(path: str | Path, source: bytes | None = None) -> AgentSpec:
    """Load a spec file (or its given ``source`` bytes) into an :class:`AgentSpec`.

    Raises:
        SpecError: with every located diagnostic, when the spec is invalid.
    """
    spec, diagnostics = check_spec(path, source)
    if spec is None:
        raise SpecError(diagnostics)
    return spec
