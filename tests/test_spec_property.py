"""Property tests: whatever a spec file holds, the loader returns a spec or located errors.

``check_spec`` must return ``(spec, diagnostics)`` — a spec exactly when no diagnostic is an
error — or raise :class:`SpecError`; never any other exception. Every diagnostic of a file
that could be read points at a real line (1-based) and column, and diagnostics come in file
order.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import Diagnostic, SpecError
from runner.spec import check_spec
from runner.spec.schema import schema

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "agents" / "hello.yaml"

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# A valid spec that uses every part of the language, so mutations reach every check.
RICH_SPEC = """\
version: 1
name: rich-agent
description: Uses every part of the spec language.
model:
  id: openai/gpt-4o-mini
  params: {temperature: 0.2, max_tokens: 512, top_p: 1, seed: 7, stop: [END]}
  fallbacks: [anthropic/claude-haiku-4-5]
  api_base: http://127.0.0.1:8000/v1
  api_key_env: OPENAI_API_KEY
  timeout: 90s
  pricing: {input_per_mtok: 0.15, output_per_mtok: 0.6}
inputs:
  folder: {type: path, default: docs, description: Folder to read.}
  count: {type: integer, default: 3}
  ratio: {type: number, default: 0.5}
  loud: {type: boolean, default: false}
  level: {type: enum, values: [low, high], default: low}
  tags: {type: array, default: [a, b]}
  extra: {type: object, default: {k: v}}
  title: {type: string}
instructions: |
  You are careful. Level: {{ level }}.
  {% if loud %}Shout.{% endif %}
goal: >
  Read {{ folder }} and list {{ count }} things ({{ ratio }}, {{ tags }},
  {{ extra }}, {{ title }}).
tools:
  read_file: {paths: [docs, README.md], risk: low}
  list_dir: {paths: [docs]}
  write_file: {paths: [out]}
  edit_file: {paths: [out], risk: medium}
  shell: {commands: ["git status", "git log *"], cwd: ., risk: high}
  http_request:
    hosts: [api.github.com]
    methods: [GET, POST]
    max_bytes: 65536
    headers_env: {Authorization: GITHUB_AUTH_HEADER}
  mcp:
    time: {command: mcp-server-time, args: [--local-timezone, UTC], env: [HOME], allow: ["*"],
           trusted: true, startup_timeout: 10s}
    remote: {url: "http://127.0.0.1:3001/mcp", headers_env: {Authorization: MCP_AUTH},
             allow: [search]}
  functions:
    word_count: {function: "mytools.text:word_count", risk: low}
rules:
  allow: ["shell:argv=git status*", read_file, "time.*"]
  ask: ["write_file:path=out/**"]
  deny: ["http_request:method=DELETE", remote.search]
autonomy: approve-risky
unattended: queue
budgets:
  max_steps: 10
  max_tool_calls: 30
  max_tokens: 200000
  max_cost_usd: 0.5
  max_duration: 15m
  tool_timeout: 60s
  max_tool_output: 32768
loop_detection: {warn_after: 3, stop_after: 5}
output:
  schema: {type: object, required: [ok], properties: {ok: {type: boolean}}}
  max_retries: 2
triggers:
  - cron: "0 6 * * 1-5"
    timezone: Europe/Berlin
    catchup: all
    catchup_max: 24
  - watch:
      paths: [inbox]
      patterns: ["*.md", "*.txt"]
      ignore: ["*.tmp"]
      events: [created, modified]
      debounce: 2s
      max_wait: 30s
      poll: false
  - manual: true
  - webhook:
      path: /hooks/rich
      secret_env: WEBHOOK_SECRET
      inputs: {title: issue.title}
      max_body: 262144
concurrency: queue
workdir: ..
env: [HOME, LANG]
"""

# Keys of the spec language at every level, so mutations often produce near-valid specs.
SPEC_KEYS = sorted(
    {
        key
        for node in (schema(), *schema()["$defs"].values())
        for key in (node.get("properties", {}) if isinstance(node, dict) else {})
    }
    | {"instuctions", "tool", "path", "on", "<<", "1"}
)
# Values that mean something somewhere in a spec.
MEANINGFUL = st.sampled_from(
    [
        "",
        "*",
        "**",
        "[abc",
        "../x",
        "/abs",
        "90s",
        "10 minutes",
        "0 6 * * *",
        "61 * * * *",
        "@daily",
        "Europe/Berln",
        "{{ nope }}",
        "{% if %}",
        "{{ folder }}",
        "shell:argv=git*",
        "nope:arg=x",
        "local/smollm2",
        "acme/unknown-model",
        "approve-all",
        "HOME",
        "$HOME",
        "yes",
        "1:30",
        "2024-02-30",
        "=",
        "<<",
        "a\x00b",
        "{{ " + "(" * 400 + "x" + ")" * 400 + " }}",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | MEANINGFUL
)
KEYS = st.sampled_from(SPEC_KEYS) | st.text(max_size=10)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(KEYS | st.integers() | st.booleans(), children, max_size=5)
    ),
    max_leaves=25,
)
SPEC_LIKE = st.dictionaries(KEYS, DOCUMENTS, max_size=8)

# Pieces of YAML syntax, for text that is often nearly YAML.
FRAGMENTS = st.sampled_from(
    [
        "version: 1\n",
        "name: demo\n",
        "model: local/smollm2\n",
        "goal: {{ x }}\n",
        "inputs:\n  x: {type: string}\n",
        "  ",
        "\t",
        "- ",
        ": ",
        "? ",
        "[",
        "]",
        "{",
        "}",
        ",",
        "&a ",
        "*a",
        "<<: ",
        "'",
        '"',
        "\\",
        "# c\n",
        "\n",
        "\r\n",
        "---\n",
        "...\n",
        "!!str ",
        "!tag ",
        "%YAML 1.1\n",
        "|\n",
        ">-\n",
        "\x07",
        "\ufeff",
        "\u2028",
    ]
)
YAMLISH_TEXT = st.lists(FRAGMENTS | st.text(max_size=5), max_size=30).map("".join)


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("property-specs")


def check_text(folder: Path, text: str) -> list[Diagnostic]:
    """Write ``text`` as a spec file, load it, and check the loader's promises."""
    path = folder / "spec.yaml"
    path.write_bytes(text.encode("utf-8"))
    try:
        spec, diagnostics = check_spec(path)
    except SpecError as error:  # only for files that cannot be read at all
        return error.diagnostics
    errors = [d for d in diagnostics if d.severity == "error"]
    assert (spec is None) == bool(errors), diagnostics
    assert diagnostics == sorted(diagnostics, key=lambda d: (d.line, d.column))
    lines = re.split("\r\n|[\r\n\x85\u2028\u2029]", text)
    for diagnostic in diagnostics:
        assert diagnostic.severity in ("error", "warning")
        assert diagnostic.line >= 1, diagnostic
        assert diagnostic.column >= 1, diagnostic
        assert diagnostic.line <= max(len(lines), 1), diagnostic
        assert diagnostic.message
        assert "Traceback" not in diagnostic.message
        assert diagnostic.render().startswith(diagnostic.headline())
        json.dumps(diagnostic.as_dict())
    return diagnostics


def dump(document: Any, flow: bool, width: int) -> str:
    return yaml.safe_dump(
        document, default_flow_style=flow, allow_unicode=True, sort_keys=False, width=width
    )


# ---------------------------------------------------------------------------------------------
# (a) arbitrary YAML documents and arbitrary text


@SETTINGS
@given(document=DOCUMENTS | SPEC_LIKE, flow=st.booleans(), width=st.sampled_from([20, 80, 1000]))
def test_any_yaml_document_gives_a_spec_or_located_errors(
    spec_dir: Path, document: Any, flow: bool, width: int
) -> None:
    check_text(spec_dir, dump(document, flow, width))


@SETTINGS
@given(text=st.text(max_size=300) | YAMLISH_TEXT)
def test_any_text_gives_a_spec_or_located_errors(spec_dir: Path, text: str) -> None:
    check_text(spec_dir, text)


# ---------------------------------------------------------------------------------------------
# (b) mutated valid specs

BASES = {"hello": HELLO.read_text(encoding="utf-8"), "rich": RICH_SPEC}


def test_the_base_specs_are_valid(spec_dir: Path) -> None:
    for name, text in BASES.items():
        diagnostics = check_text(spec_dir, text)
        assert diagnostics == [], name


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _parent(document: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        document = document[part]
    return document


@st.composite
def mutated_specs(draw: st.DrawFn) -> Any:
    document = copy.deepcopy(yaml.safe_load(BASES[draw(st.sampled_from(sorted(BASES)))]))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _parent(document, path), path[-1]
        operation = draw(st.sampled_from(["delete", "rename", "replace", "replace", "wrap"]))
        if operation == "delete":
            del parent[last]
        elif operation == "rename" and isinstance(parent, dict):
            new_key = draw(KEYS)
            parent[new_key] = parent.pop(last)
        elif operation == "wrap":
            parent[last] = draw(st.sampled_from([[parent[last]], {"value": parent[last]}]))
        else:
            parent[last] = draw(SCALARS | st.lists(SCALARS, max_size=3) | DOCUMENTS)
    return document


@SETTINGS
@given(document=mutated_specs(), flow=st.booleans())
def test_mutated_valid_specs_give_a_spec_or_located_errors(
    spec_dir: Path, document: Any, flow: bool
) -> None:
    check_text(spec_dir, dump(document, flow, 80))


@SETTINGS
@given(
    base=st.sampled_from(sorted(BASES)),
    edits=st.lists(
        st.tuples(st.floats(min_value=0, max_value=1), st.integers(0, 3), FRAGMENTS), max_size=4
    ),
)
def test_spec_text_with_edits_gives_a_spec_or_located_errors(
    spec_dir: Path, base: str, edits: list[tuple[float, int, str]]
) -> None:
    text = BASES[base]
    for where, remove, fragment in edits:
        at = int(where * len(text))
        text = text[:at] + fragment + text[at + remove :]
    check_text(spec_dir, text)
