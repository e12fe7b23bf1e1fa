"""The factories of the built-in tools, keyed by the names in :mod:`runner.spec.builtin_tools`.

Each factory builds one tool from the spec and the tool's options under ``tools:`` (a
:class:`~runner.spec.FileToolSpec`, :class:`~runner.spec.ShellToolSpec`,
:class:`~runner.spec.HttpToolSpec` or :class:`~runner.spec.types.AskHumanToolSpec`), with the
spec's ``risk`` override applied. A factory
imports its tool's module when it is called, so that compiling a spec without ``shell`` or
``http_request`` imports neither (``httpx`` stays off the start-up path). The compiler
(:func:`runner.compiler.build_tools`) calls them in catalogue order;
``tests/test_tools_catalogue.py`` checks that every catalogued tool has a factory and every
factory a catalogue entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..spec import AgentSpec, FileToolSpec, HttpToolSpec, ShellToolSpec
from ..spec.types import AskHumanToolSpec
from . import Tool

if TYPE_CHECKING:
    from .builtin import PathJail

#: Builds one built-in tool from the spec and that tool's options under ``tools:``.
Factory = Callable[[AgentSpec, Any], Tool]


def _jailed(cls: Callable[[PathJail], Tool], spec: AgentSpec, options: FileToolSpec) -> Tool:
    from .builtin import PathJail

    tool = cls(PathJail(spec.workdir, options.paths))
    tool.risk = options.risk or tool.risk
    return tool


def _read_file(spec: AgentSpec, options: FileToolSpec) -> Tool:
    from .builtin import PathJail, ReadFile

    tool = ReadFile(PathJail(spec.workdir, options.paths), spec.budgets.max_tool_output)
    tool.risk = options.risk or tool.risk
    return tool


def _list_dir(spec: AgentSpec, options: FileToolSpec) -> Tool:
    from .builtin import ListDir

    return _jailed(ListDir, spec, options)


def _write_file(spec: AgentSpec, options: FileToolSpec) -> Tool:
    from .builtin import WriteFile

    return _jailed(WriteFile, spec, options)


def _edit_file(spec: AgentSpec, options: FileToolSpec) -> Tool:
    from .builtin import EditFile

    return _jailed(EditFile, spec, options)


def _shell(spec: AgentSpec, options: ShellToolSpec) -> Tool:
    from .shell import ShellTool

    budgets = spec.budgets
    tool = ShellTool(options, spec.workdir, spec.env, budgets.tool_timeout, budgets.max_tool_output)
    tool.risk = options.risk or tool.risk
    return tool


def _http_request(spec: AgentSpec, options: HttpToolSpec) -> Tool:
    from .http import HttpTool

    # HttpTool applies the spec's risk itself: without one, it rates each call by its method.
    return HttpTool(options, spec.budgets.tool_timeout)


def _ask_human(spec: AgentSpec, options: AskHumanToolSpec) -> Tool:
    from .ask_human import AskHuman

    return AskHuman(options.answer_timeout)


#: Built-in tool name (a key of :data:`runner.spec.builtin_tools.BY_KEY`) → its factory.
FACTORIES: dict[str, Factory] = {
    "read_file": _read_file,
    "list_dir": _list_dir,
    "write_file": _write_file,
    "edit_file": _edit_file,
    "shell": _shell,
    "http_request": _http_request,
    "ask_human": _ask_human,
}
