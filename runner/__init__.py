"""agentrun: declarative YAML-defined agents, run inside rails a person can read.

The public API, imported lazily so that ``import runner`` stays cheap (no litellm)::

    from runner import load_spec, compile_agent, run_agent, RunStore

- :func:`load_spec` (``runner.spec``): YAML file → :class:`~runner.spec.AgentSpec`, or
  :class:`~runner.errors.SpecError` with located diagnostics;
- :func:`compile_agent` (``runner.compiler``): spec + inputs → compiled agent;
- :func:`run_agent` (``runner.loop``): run it to a stop reason, recorded in the store;
- :class:`RunStore` (``runner.store``): the record of every run (SQLite by default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .compiler import compile_agent
    from .loop import run_agent
    from .spec import load_spec
    from .store import RunStore

_LAZY = {
    "load_spec": ("runner.spec", "load_spec"),
    "compile_agent": ("runner.compiler", "compile_agent"),
    "run_agent": ("runner.loop", "run_agent"),
    "RunStore": ("runner.store", "RunStore"),
}

__all__ = ["RunStore", "__version__", "compile_agent", "load_spec", "run_agent"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'runner' has no attribute {name!r}")
