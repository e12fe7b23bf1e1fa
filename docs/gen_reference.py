"""Generate the spec and CLI references of the docs, or check that they are up to date.

- ``docs/reference/spec.md`` comes from ``schemas/agent.schema.json``: every field with its
  path, type, default, constraints, description and an example;
- ``docs/reference/cli.md`` comes from the commands' ``--help``, walked with click's API on
  ``runner.cli.cli`` (every command and subcommand);
- ``docs/reference/api.md`` and ``docs/reference/openapi.json`` come from the OpenAPI
  document the HTTP API generates (:func:`runner.web.app.create_app`, built over a
  throwaway home): every endpoint, its parameters, body and answers, and every schema.

It also checks the hand-written table of built-in tools in ``docs/concepts/tools.md``
against the catalogue (:mod:`runner.spec.builtin_tools`): a row for each tool, naming its
arguments and its default risk, and no row for a tool the catalogue does not have.

Usage (from the repository root)::

    python docs/gen_reference.py            # write the files
    python docs/gen_reference.py --check    # exit 1, saying which file is stale, if either is
                                            # (or what the tools table gets wrong)
"""

from __future__ import annotations

import argparse
import difflib
import functools
import itertools
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "schemas" / "agent.schema.json"
DOCS = ROOT / "docs"
#: Width of the generated ``--help`` texts (fixed, so the output does not depend on the
#: terminal that runs the generator).
HELP_WIDTH = 100
REGENERATE = "python docs/gen_reference.py"


# ---------------------------------------------------------------------------------------------
# the spec reference


@dataclass
class Field:
    """One field of the spec language, found by walking the schema.

    Attributes:
        path: segments from the top: a key, ``<NAME>`` for a key the user chooses, or
            ``[]`` for the items of a list.
        node: the field's schema, with ``$ref`` resolved (local keys win).
        required: whether its parent requires it.
        example_keys: for each ``<NAME>`` segment, the key an example uses there.
    """

    path: tuple[str, ...]
    node: dict[str, Any]
    required: bool
    example_keys: tuple[str, ...]

    @property
    def dotted(self) -> str:
        """``budgets.max_steps``, ``inputs.<name>.type``, ``triggers[].cron``."""
        text = ""
        for segment in self.path:
            if segment == "[]":
                text += "[]"
            else:
                text += ("." if text else "") + segment
        return text

    @property
    def anchor(self) -> str:
        """An HTML id for the field: ``budgets-max_steps``, ``inputs-name-type``."""
        parts = [s.strip("<>") for s in self.path if s != "[]"]
        if self.path[-1] == "[]":
            parts.append("item")
        return "-".join(parts).lower()


def load_schema() -> dict[str, Any]:
    """The spec's JSON Schema."""
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


def resolve(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``node`` with its local ``$ref`` followed; the node's own keys override the target's."""
    ref = node.get("$ref")
    if not ref:
        return node
    target: Any = schema
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    merged = dict(resolve(target, schema))
    merged.update({k: v for k, v in node.items() if k != "$ref"})
    merged["$refname"] = ref.rsplit("/", 1)[-1]
    return merged


def _example_key(node: dict[str, Any], fallback: str) -> str:
    for example in node.get("examples") or []:
        if isinstance(example, dict) and example:
            return str(next(iter(example)))
    return fallback


def walk(
    schema: dict[str, Any],
    node: dict[str, Any],
    path: tuple[str, ...] = (),
    keys: tuple[str, ...] = (),
) -> Iterator[Field]:
    """Every field below ``node``, depth first, in the schema's order."""
    node = resolve(node, schema)
    required = set(node.get("required") or [])
    for name, child in (node.get("properties") or {}).items():
        child = resolve(child, schema)
        yield Field((*path, name), child, name in required, keys)
        yield from walk(schema, child, (*path, name), keys)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and (resolve(extra, schema).get("properties")):
        placeholder = "<name>"
        key = _example_key(node, "name")
        child = resolve(extra, schema)
        yield Field((*path, placeholder), child, False, (*keys, key))
        yield from walk(schema, child, (*path, placeholder), (*keys, key))
    items = node.get("items")
    if isinstance(items, dict) and resolve(items, schema).get("properties"):
        child = resolve(items, schema)
        yield Field((*path, "[]"), child, False, keys)
        yield from walk(schema, child, (*path, "[]"), keys)


def _code(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return "`" + text.replace("`", "'") + "`"


def type_text(node: dict[str, Any], schema: dict[str, Any]) -> str:
    """A reader's name for the field's type."""
    if "const" in node:
        return f"constant {_code(node['const'])}"
    if "enum" in node:
        return "one of " + ", ".join(_code(v) for v in node["enum"])
    if node.get("$refname") == "duration":
        return "duration: seconds as a number, or a string such as `500ms`, `90s`, `15m`, `2h`"
    kinds = node.get("type")
    names = kinds if isinstance(kinds, list) else [kinds] if kinds else []
    words = []
    for kind in names:
        if kind == "array":
            items = resolve(node.get("items") or {}, schema)
            inner = type_text(items, schema) if items else "any"
            words.append(f"list of ({inner})" if " " in inner else f"list of {inner}")
        elif kind == "object":
            extra = node.get("additionalProperties")
            if isinstance(extra, dict):
                inner = resolve(extra, schema)
                value = "an object (below)" if inner.get("properties") else type_text(inner, schema)
                words.append(f"mapping of names to {value}")
            else:
                words.append("object")
        elif kind == "number":
            words.append("number")
        else:
            words.append(str(kind))
    return " or ".join(words) if words else "any value"


def constraints(node: dict[str, Any]) -> list[str]:
    """Human-readable constraints of a field (bounds, lengths, patterns, required keys)."""
    found = []
    for key, word in (
        ("minimum", "at least"),
        ("exclusiveMinimum", "more than"),
        ("maximum", "at most"),
        ("exclusiveMaximum", "less than"),
    ):
        if key in node:
            found.append(f"{word} {node[key]}")
    if "minLength" in node:
        found.append(f"at least {node['minLength']} character(s)")
    if "minItems" in node:
        found.append(f"at least {node['minItems']} item(s)")
    if node.get("uniqueItems"):
        found.append("no duplicates")
    if "pattern" in node:
        found.append(f"matches {_code(node['pattern'])}")
    names = (node.get("propertyNames") or {}).get("pattern")
    if names:
        found.append(f"keys match {_code(names)}")
    items = node.get("items") or {}
    if isinstance(items, dict) and "pattern" in items:
        found.append(f"each item matches {_code(items['pattern'])}")
    if node.get("required"):
        found.append("requires " + ", ".join(_code(k) for k in node["required"]))
    alternatives = [
        alt.get("required", []) for alt in node.get("oneOf") or [] if isinstance(alt, dict)
    ]
    if alternatives and all(len(a) == 1 for a in alternatives):
        found.append("exactly one of " + ", ".join(_code(a[0]) for a in alternatives))
    if node.get("additionalProperties") is False:
        found.append("no other keys")
    return found


def example(field: Field, schema: dict[str, Any], parents: dict[tuple[str, ...], Any]) -> Any:
    """An example value: the schema's first, else one built from the field's sub-fields."""
    node = field.node
    if node.get("examples"):
        return node["examples"][0]
    parent = parents.get(field.path[:-1])
    if field.path and field.path[-1] == "<name>" and isinstance(parent, dict) and parent:
        return next(iter(parent.values()))
    if field.path and field.path[-1] == "[]" and isinstance(parent, list) and parent:
        return parent[0]
    return _synthesized(node, schema)


def _synthesized(node: dict[str, Any], schema: dict[str, Any]) -> Any:
    node = resolve(node, schema)
    if node.get("examples"):
        return node["examples"][0]
    properties = node.get("properties") or {}
    if not properties:
        return None
    wanted = list(node.get("required") or [])
    for alternative in node.get("oneOf") or []:
        wanted += [k for k in alternative.get("required", [])[:1] if k not in wanted]
        break
    if not wanted:
        wanted = list(properties)
    built = {}
    for name in wanted:
        value = _synthesized(properties[name], schema)
        if value is not None:
            built[name] = value
    return built or None


def as_yaml(field: Field, value: Any) -> str:
    """``value`` placed at the field's path in a YAML document."""
    import yaml

    keys = iter(field.example_keys)
    segments = list(field.path)
    document: Any = value
    for segment in reversed(segments):
        if segment == "[]":
            document = [document]
        elif segment == "<name>":
            continue
        else:
            document = {segment: document}
    # Put the example keys in place of the <name> segments, outermost first.
    document = _fill_names(document, segments, keys)
    text = yaml.dump(document, Dumper=_dumper(), sort_keys=False, allow_unicode=True, width=88)
    return text.rstrip("\n")


@functools.cache
def _dumper() -> type:
    import yaml

    class Dumper(yaml.SafeDumper):
        """Indents lists under their key, as the examples in agents/ do; never uses aliases."""

        def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
            return super().increase_indent(flow, False)

        def ignore_aliases(self, data: Any) -> bool:
            return True

    return Dumper


def _fill_names(document: Any, segments: list[str], keys: Iterator[str]) -> Any:
    if not segments:
        return document
    head, rest = segments[0], segments[1:]
    if head == "<name>":
        return {next(keys): _fill_names(document, rest, keys)}
    if head == "[]":
        return [_fill_names(document[0], rest, keys)]
    return {head: _fill_names(document[head], rest, keys)}


def default_text(node: dict[str, Any]) -> str:
    """The schema's default, or a dash."""
    return _code(node["default"]) if "default" in node else "—"


def spec_reference() -> str:
    """The text of ``docs/reference/spec.md``."""
    schema = load_schema()
    fields = list(walk(schema, schema))
    lines = [
        "# Spec reference",
        "",
        f"<!-- Generated by docs/gen_reference.py from schemas/agent.schema.json: run "
        f"`{REGENERATE}` after changing the schema; CI fails when this file is stale. -->",
        "",
        f"{schema['description']} This page lists every field of the spec language "
        "(version 1), generated from the JSON Schema that `agentrun validate` checks specs "
        "against: `agentrun schema` prints it, and editors with a YAML language server can "
        "use it for completion (the first line `agentrun init` writes points them at it).",
        "",
        "Required at the top: "
        + ", ".join(f"[`{k}`](#{k})" for k in schema["required"])
        + ". Any key not listed here is an error, reported at its line and column with the "
        "closest valid key. Durations are seconds as a number, or a string such as `500ms`, "
        "`90s`, `15m` or `2h`. `<name>` stands for a key you choose, and `[]` for each item "
        "of a list.",
        "",
        "See [the spec](../concepts/spec.md) for how the parts fit together.",
        "",
        "## All fields",
        "",
        "| field | type | default |",
        "|---|---|---|",
    ]
    for field in fields:
        short = type_text(field.node, schema).split(":")[0]
        short = short if len(short) <= 60 else short[:57] + "..."
        lines.append(
            f"| [`{field.dotted}`](#{field.anchor}) | {short.replace('|', '/')} | "
            f"{default_text(field.node)} |"
        )
    parents: dict[tuple[str, ...], Any] = {}
    section = None
    for field in fields:
        top = field.path[0]
        if top != section:
            section = top
        value = example(field, schema, parents)
        parents[field.path] = value
        level = "##" if len(field.path) == 1 else "###"
        lines += ["", f"{level} `{field.dotted}` {{#{field.anchor}}}", ""]
        lines += [field.node.get("description", "").strip(), ""]
        lines.append(f"- **type**: {type_text(field.node, schema)}")
        lines.append(f"- **required**: {'yes' if field.required else 'no'}")
        lines.append(f"- **default**: {default_text(field.node)}")
        found = constraints(field.node)
        if found:
            lines.append(f"- **constraints**: {'; '.join(found)}")
        if value is not None:
            lines += ["", "```yaml", as_yaml(field, value), "```"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# the CLI reference


def _commands(command: Any, context: Any) -> Iterator[tuple[Any, Any]]:
    """``(command, context)`` for ``command`` and every subcommand below it, in order."""
    import click

    yield command, context
    if isinstance(command, click.Group):
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            if sub is None or sub.hidden:
                continue
            child = click.Context(sub, info_name=name, parent=context)
            yield from _commands(sub, child)


def cli_reference() -> str:
    """The text of ``docs/reference/cli.md``."""
    import click

    sys.path.insert(0, str(ROOT))
    from runner.cli import cli

    settings = dict(cli.context_settings)
    settings["terminal_width"] = HELP_WIDTH
    settings["max_content_width"] = HELP_WIDTH
    root = click.Context(cli, info_name="agentrun", **settings)
    entries = list(_commands(cli, root))
    lines = [
        "# CLI reference",
        "",
        "<!-- Generated by docs/gen_reference.py from the commands' --help: run "
        f"`{REGENERATE}` after changing a command; CI fails when this file is stale. -->",
        "",
        "Every `agentrun` command with its `--help`, exactly as the command prints it. "
        "`agentrun run` and `agentrun resume` end with an exit code that says how the run "
        "ended: see [budgets and stop reasons](../concepts/budgets.md#exit-codes). Every "
        "other command exits 0 on success, 1 on an error and 2 on a usage or spec error.",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    for command, context in entries:
        path = context.command_path
        anchor = path.replace(" ", "-")
        summary = command.get_short_help_str(limit=120).replace("|", "/")
        lines.append(f"| [`{path}`](#{anchor}) | {summary} |")
    for command, context in entries:
        path = context.command_path
        anchor = path.replace(" ", "-")
        level = "##" if path.count(" ") <= 1 else "###"
        help_text = command.get_help(context).rstrip()
        lines += ["", f"{level} `{path}` {{#{anchor}}}", "", "```text", help_text, "```"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# the table of built-in tools

#: The page, relative to the docs folder, whose "Built-in tools" table is checked.
TOOLS_PAGE = "concepts/tools.md"


def builtin_tools_problems(page: str) -> list[str]:
    """What the "Built-in tools" table in ``page`` (Markdown) gets wrong against the catalogue.

    The table is written by hand (its columns hold prose, such as a default path), so it is
    checked rather than generated: every catalogued tool has a row whose arguments cell
    names each of its arguments in backticks and whose risk cell starts with its default
    risk, and no row names a tool the catalogue lacks. An empty list when all agree.
    """
    sys.path.insert(0, str(ROOT))
    from runner.spec.builtin_tools import CATALOGUE

    section = page.partition("## Built-in tools")[2].splitlines()
    start = next((i for i, line in enumerate(section) if line.startswith("| tool |")), None)
    if start is None:
        return ["no table under '## Built-in tools' (a header row '| tool | arguments | risk |')"]
    rows: dict[str, list[str]] = {}
    for line in itertools.takewhile(lambda line: line.startswith("|"), section[start + 2 :]):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows[cells[0].strip("`")] = [*cells, "", ""]  # a short row fails, not crashes
    problems = []
    for tool in CATALOGUE:
        cells = rows.pop(tool.key, None)
        if cells is None:
            problems.append(f"no row for the built-in tool {tool.key!r}")
            continue
        missing = [name for name in tool.arguments if f"`{name}`" not in cells[1]]
        if missing:
            problems.append(f"{tool.key!r}: the arguments cell does not name {missing}")
        if not cells[2].startswith(tool.risk):
            problems.append(
                f"{tool.key!r}: risk {cells[2]!r}, the catalogue says {str(tool.risk)!r}"
            )
    problems += [f"a row for {key!r}, which is not a built-in tool" for key in rows]
    return problems


# ---------------------------------------------------------------------------------------------
# entry point


# ---------------------------------------------------------------------------------------------
# the HTTP API reference


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document, from an app built over a throwaway home."""
    import tempfile

    from runner.web.app import create_app

    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        app = create_app(home / "runs.db", home)
        document = app.openapi()
        app.state.web.store.close()
    return document


def _schema_name(reference: str) -> str:
    return reference.rsplit("/", 1)[-1]


def schema_type(node: dict[str, Any]) -> str:
    """A short type for a JSON Schema node: ``string``, ``RunSummary[]``, ``integer | null``."""
    if "$ref" in node:
        name = _schema_name(node["$ref"])
        return f"[{name}](#{name.lower()})"
    if "anyOf" in node:
        return " | ".join(schema_type(option) for option in node["anyOf"])
    kind = node.get("type")
    if kind == "array":
        return schema_type(node.get("items", {})) + "[]"
    if kind == "object" and "additionalProperties" in node:
        return "object"
    if "enum" in node:
        return " | ".join(f"`{value}`" for value in node["enum"])
    return str(kind or "any")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def api_reference(document: dict[str, Any]) -> str:
    """The text of ``docs/reference/api.md``."""
    lines = [
        "# HTTP API reference",
        "",
        f"<!-- generated by {REGENERATE} from the OpenAPI document of runner/web; do not edit -->",
        "",
        "Every endpoint of `/api/v1` as the OpenAPI document the server generates "
        "(`GET /api/v1/openapi.json`; a copy is [openapi.json](openapi.json)) describes it. "
        "Every request needs `Authorization: Bearer TOKEN` or the console's session cookie, "
        "and a change made with the cookie needs the CSRF token too: see "
        '[the console](../console.md). Errors are `{"error": "..."}`.',
        "",
    ]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            lines += [f"## `{method.upper()} {path}`", "", f"**{operation['summary']}.**", ""]
            if operation.get("description"):
                lines += [operation["description"].strip(), ""]
            parameters = operation.get("parameters", [])
            if parameters:
                lines += ["| parameter | in | type | description |", "|---|---|---|---|"]
                for parameter in parameters:
                    required = " (required)" if parameter.get("required") else ""
                    lines.append(
                        f"| `{parameter['name']}`{required} | {parameter['in']} | "
                        f"{_cell(schema_type(parameter.get('schema', {})))} | "
                        f"{_cell(parameter.get('description', ''))} |"
                    )
                lines.append("")
            body = operation.get("requestBody")
            if body:
                [(media, content)] = body["content"].items()
                lines += [f"Body ({media}): {schema_type(content['schema'])}", ""]
            lines += ["| status | answer |", "|---|---|"]
            for status, response in operation["responses"].items():
                shapes = [
                    f"{media}: {schema_type(content['schema'])}" if content.get("schema") else media
                    for media, content in response.get("content", {}).items()
                ]
                answer = _cell(response.get("description", ""))
                shown = _cell(", ".join(shapes))
                lines.append(f"| {status} | {answer}{' — ' if shapes else ''}{shown} |")
            lines.append("")
    lines += ["## Schemas", ""]
    for name, schema in sorted(document["components"]["schemas"].items()):
        lines += [f"### {name}", ""]
        if schema.get("description"):
            lines += [schema["description"].strip(), ""]
        required = set(schema.get("required", []))
        lines += ["| field | type | description |", "|---|---|---|"]
        for field_name, field in schema.get("properties", {}).items():
            mark = "" if field_name in required else " (optional)"
            lines.append(
                f"| `{field_name}`{mark} | {_cell(schema_type(field))} | "
                f"{_cell(field.get('description', ''))} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def generated() -> dict[str, str]:
    """File name (relative to the docs folder) → its generated text."""
    document = openapi_document()
    return {
        "reference/spec.md": spec_reference(),
        "reference/cli.md": cli_reference(),
        "reference/api.md": api_reference(document),
        "reference/openapi.json": json.dumps(document, indent=2, sort_keys=True) + "\n",
    }


def main(argv: list[str] | None = None) -> int:
    """Write the references, or with ``--check`` report the stale ones; the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when a file is out of date"
    )
    parser.add_argument(
        "--docs", type=Path, default=DOCS, help="the docs folder (default: docs/ beside this)"
    )
    options = parser.parse_args(argv)
    stale = []
    for name, text in generated().items():
        target = options.docs / name
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        if options.check:
            stale.append(name)
            diff = difflib.unified_diff(
                (current or "").splitlines(),
                text.splitlines(),
                f"{name} (on disk)",
                f"{name} (generated)",
                lineterm="",
                n=1,
            )
            shown = list(diff)
            print("\n".join(shown[:40]) + ("\n..." if len(shown) > 40 else ""), file=sys.stderr)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target}")
    page = options.docs / TOOLS_PAGE  # absent from a docs folder holding the references only
    wrong = builtin_tools_problems(page.read_text(encoding="utf-8")) if page.exists() else []
    for problem in wrong:
        print(f"docs/{TOOLS_PAGE}, table of built-in tools: {problem}", file=sys.stderr)
    if wrong:
        print(
            f"docs/{TOOLS_PAGE} disagrees with runner/spec/builtin_tools.py: fix the table "
            "(it is written by hand)",
            file=sys.stderr,
        )
    if stale:
        print(
            f"{', '.join(f'docs/{n}' for n in stale)} out of date "
            f"(the schema, a command's --help or the HTTP API changed): run `{REGENERATE}` "
            "and commit the result",
            file=sys.stderr,
        )
        return 1
    if wrong:
        return 1
    if options.check:
        print("docs/reference/ (spec.md, cli.md, api.md, openapi.json) is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
