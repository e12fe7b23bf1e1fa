"""Semantic checks of a spec's ``guards:`` (what JSON Schema cannot say), located.

- each guard has exactly one of ``command`` and ``prompt``;
- ``model`` only with ``prompt``, naming a provider litellm knows (or the spec model's
  provider, whose ``api_base`` serves it);
- a ``command`` parses with ``shlex`` (it runs without a shell) into at least one word;
- a ``tools`` glob that names no tool the spec declares is a warning (the guard would never
  run); an MCP server's tools are only known at run time, so ``SERVER.*`` stands for them.
"""

from __future__ import annotations

import difflib
import fnmatch
import shlex

from ..errors import Diagnostic
from .prices import LOCAL_PREFIX, providers
from .types import AgentSpec, GuardSpec
from .yamlpos import Located

_HINT = "see docs/concepts/autonomy.md#guards"


def guard_checks(spec: AgentSpec, located: Located, file: str) -> list[Diagnostic]:
    """Every problem of the spec's guards, located at the offending key or value.

    Returns errors (a guard that cannot run as written) and warnings (a guard that would
    never be shown a call).
    """
    out: list[Diagnostic] = []
    names = _declared_tools(spec)
    for guard in spec.guards:
        out += _guard(spec, guard, located, file, names)
    return out


def _declared_tools(spec: AgentSpec) -> list[str]:
    """The names rules and guards use for the spec's tools; ``SERVER.*`` per MCP server."""
    tools = spec.tools
    names = tools.builtin_names() + sorted(tools.functions)
    if tools.ask_human is not None and "ask_human" not in names:
        names.append("ask_human")
    return names + [f"{server}.*" for server in tools.mcp]


def _guard(
    spec: AgentSpec, guard: GuardSpec, located: Located, file: str, names: list[str]
) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    path = ("guards", guard.index)

    def error(key: str, message: str, hint: str = _HINT, severity: str = "error") -> None:
        pos = located.key_pos((*path, key)) if key else located.value_pos(path)
        out.append(located.diagnostic(file, pos, message, hint, severity))

    label = f"guard {guard.name!r}" if guard.name else guard.label
    if guard.command is None and guard.prompt is None:
        error("", f"{label} has neither 'command' nor 'prompt'", "give it exactly one of them")
    elif guard.command is not None and guard.prompt is not None:
        error("prompt", f"{label} has both 'command' and 'prompt'", "keep exactly one of them")
    if guard.model is not None and guard.prompt is None:
        error("model", f"{label}: 'model' applies only to a 'prompt' guard", "remove 'model'")
    elif guard.model is not None:
        problem = _model_problem(spec, guard.model)
        if problem:
            error("model", f"{label}: {problem}", "use a litellm id such as 'openai/gpt-4o-mini'")
    if guard.command is not None:
        try:
            words = shlex.split(guard.command)
        except ValueError as failure:
            error(
                "command",
                f"{label}: its command {guard.command!r} cannot be parsed: {failure}",
                "it runs without a shell: check the quotes",
            )
        else:
            if not words:
                error("command", f"{label}: its command is empty")
    for index, glob in enumerate(guard.tools):
        if not any(_names(glob, name) for name in names):
            close = difflib.get_close_matches(glob, names, n=1)
            pos = located.value_pos((*path, "tools", index))
            out.append(
                located.diagnostic(
                    file,
                    pos,
                    f"{label} watches {glob!r}, which names no tool the spec declares: "
                    "it will never see a call",
                    f"did you mean {close[0]!r}?"
                    if close
                    else f"declared tools: {', '.join(names) or 'none'}",
                    "warning",
                )
            )
    return out


def _names(glob: str, name: str) -> bool:
    """Whether ``glob`` can match the tool ``name`` (``SERVER.*``: any tool of that server)."""
    if name.endswith(".*"):
        server = name[:-2]
        head = glob.split(".", 1)[0]
        return fnmatch.fnmatchcase(server, head) or glob == "*"
    return fnmatch.fnmatchcase(name, glob)


def _model_problem(spec: AgentSpec, model_id: str) -> str:
    """Why ``model_id`` cannot be a guard's model, or ``""``."""
    if model_id.startswith(LOCAL_PREFIX):
        return ""  # the embedded model's names are checked where the spec's model is
    provider = model_id.split("/", 1)[0] if "/" in model_id else ""
    if not provider:
        return f"model {model_id!r} names no provider (write it as provider/model)"
    if spec.model.api_base and provider == spec.model.id.split("/", 1)[0]:
        return ""  # the spec's endpoint serves its provider's models
    known = providers()
    if known and provider not in known:
        close = difflib.get_close_matches(provider, sorted(known), n=1)
        also = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown model provider {provider!r} in {model_id!r}{also}"
    return ""
