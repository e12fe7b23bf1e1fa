"""The catalogue of built-in tools: each one's spec key, argument names and default risk.

Pure data (it imports nothing of agentrun but the spec's vocabulary), so that the spec
checks can name a tool's arguments without importing :mod:`runner.tools`. The factories
that build each tool from its spec options sit in :mod:`runner.tools.catalogue`, keyed by
the same names; ``tests/test_tools_catalogue.py`` checks that the two agree, and that each
built tool has the arguments and default risk written here.

Read by the spec types (:meth:`runner.spec.types.ToolsSpec.builtin_names`), the rule checks
(:mod:`runner.spec.checks`), the compiler (:func:`runner.compiler.build_tools`, through the
factories), ``agentrun explain`` and ``agentrun tools``, and the docs generator
(``docs/gen_reference.py`` checks the table in ``docs/concepts/tools.md`` against it).

Adding a built-in tool: an entry here, a factory in :mod:`runner.tools.catalogue`, and the
tool's own module (plus its options in the schema and :class:`runner.spec.types.ToolsSpec`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .vocabulary import Risk


@dataclass(frozen=True)
class BuiltinTool:
    """One built-in tool.

    Attributes:
        key: its key under ``tools:`` in a spec, which is also the tool's name for the model
            and in rules.
        arguments: the names of its arguments (the properties of its JSON Schema), which a
            ``TOOL:ARG=GLOB`` rule may name.
        risk: its risk when the spec sets no ``risk:``; ``http_request`` rates each call by
            its method, and this is its risk with the schema's default methods.
    """

    key: str
    arguments: tuple[str, ...]
    risk: Risk


#: Every built-in tool, in the order the compiler offers them to the model.
CATALOGUE: tuple[BuiltinTool, ...] = (
    BuiltinTool("read_file", ("path",), Risk.LOW),
    BuiltinTool("list_dir", ("path",), Risk.LOW),
    BuiltinTool("write_file", ("path", "content"), Risk.MEDIUM),
    BuiltinTool("edit_file", ("path", "old", "new"), Risk.MEDIUM),
    BuiltinTool("shell", ("argv",), Risk.HIGH),
    BuiltinTool("http_request", ("url", "method", "headers", "body"), Risk.MEDIUM),
    BuiltinTool("ask_human", ("question", "context", "choices"), Risk.LOW),
)

#: The built-in tools' keys, in catalogue order.
BUILTIN_TOOLS: tuple[str, ...] = tuple(tool.key for tool in CATALOGUE)

#: Key → the built-in tool.
BY_KEY: dict[str, BuiltinTool] = {tool.key: tool for tool in CATALOGUE}
