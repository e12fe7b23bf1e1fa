"""The CLI's exit: quick even after litellm's import (issue 19, item 4)."""

from __future__ import annotations

import gc
import sys
import types

import pytest

from runner.cli import main


@pytest.mark.parametrize("heavy", [None, "litellm", "openai", "cyllama"])
def test_main_freezes_the_heap_before_exit_once_a_heavy_module_is_loaded(
    monkeypatch: pytest.MonkeyPatch, heavy: str | None
) -> None:
    frozen: list[bool] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    for name in ("litellm", "openai", "cyllama", "llama_cpp"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    if heavy is not None:
        monkeypatch.setitem(sys.modules, heavy, types.ModuleType(heavy))
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert frozen == ([True] if heavy else [])
