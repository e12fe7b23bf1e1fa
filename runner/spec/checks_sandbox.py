"""Semantic checks of the spec's sandboxes, located at the offending entry.

Wherever a sandbox is written (the agent's ``sandbox``, ``tools.shell.sandbox``,
``tools.mcp.NAME.sandbox``):

- each ``network.allow`` entry is one of the egress forms
  (:func:`runner.sandbox.egress.parse_pattern`: ``host``, ``*.domain``, an IPv4 address,
  ``[IPv6]`` or ``localhost``, each with an optional ``:PORT``);
- no ``writable`` or ``readable`` path is blank (spaces only).

The keys and types themselves are checked by the schema.
"""

from __future__ import annotations

from typing import Any

from ..errors import Diagnostic
from .egress_rules import parse_pattern
from .types import AgentSpec
from .yamlpos import Located

_HINT = "see docs/security.md"
_FORMS = (
    "the forms: pypi.org, *.pythonhosted.org (its subdomains), pypi.org:443, 192.0.2.10, "
    f"[2001:db8::1]:8080, localhost:8080; {_HINT}"
)


def sandbox_problems(spec: AgentSpec, located: Located, file: str) -> list[Diagnostic]:
    """Every problem of the sandboxes written in the spec, located at the entry.

    Args:
        spec: the built spec; unused, as its merged sandboxes no longer say where each
            entry was written: they are read from ``located``.
        located: the spec's YAML with positions.
        file: the spec's file name, for the diagnostics.

    Returns:
        Errors, in the order the sandboxes appear: the agent's, the shell's, each MCP
        server's.
    """
    out: list[Diagnostic] = []
    for path, sandbox in _written_sandboxes(located.value):
        out += _network_problems(located, file, path, sandbox.get("network"))
        for key in ("writable", "readable"):
            out += _path_problems(located, file, (*path, key), sandbox.get(key))
    return out


def _written_sandboxes(document: Any) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Each sandbox written in the object form, with its path in the YAML."""
    if not isinstance(document, dict):
        return []
    found: list[tuple[tuple[Any, ...], Any]] = [(("sandbox",), document.get("sandbox"))]
    tools = document.get("tools")
    if isinstance(tools, dict):
        shell = tools.get("shell")
        if isinstance(shell, dict):
            found.append((("tools", "shell", "sandbox"), shell.get("sandbox")))
        servers = tools.get("mcp")
        if isinstance(servers, dict):
            for name, server in servers.items():
                if isinstance(server, dict):
                    found.append((("tools", "mcp", name, "sandbox"), server.get("sandbox")))
    return [(path, sandbox) for path, sandbox in found if isinstance(sandbox, dict)]


def _network_problems(
    located: Located, file: str, path: tuple[Any, ...], network: Any
) -> list[Diagnostic]:
    if not isinstance(network, dict) or not isinstance(network.get("allow"), list):
        return []
    out = []
    for index, entry in enumerate(network["allow"]):
        if not isinstance(entry, str):
            continue  # the schema's
        try:
            parse_pattern(entry)
        except ValueError as error:
            out.append(
                located.diagnostic(
                    file,
                    located.value_pos((*path, "network", "allow", index)),
                    f"sandbox network allow: {error}",
                    _FORMS,
                )
            )
    return out


def _path_problems(
    located: Located, file: str, path: tuple[Any, ...], paths: Any
) -> list[Diagnostic]:
    if not isinstance(paths, list):
        return []
    key = path[-1]
    return [
        located.diagnostic(
            file,
            located.value_pos((*path, index)),
            f"sandbox {key} path {entry!r} is blank",
            f"write a path relative to workdir (or absolute), such as '.' or 'build'; {_HINT}",
        )
        for index, entry in enumerate(paths)
        if isinstance(entry, str) and not entry.strip()
    ]
