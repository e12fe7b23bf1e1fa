"""The catalogue of built-in tools and its factories agree, and each tool matches its entry.

:mod:`runner.spec.builtin_tools` holds the data (the spec layer may not import tools);
:mod:`runner.tools.catalogue` holds the factories, keyed by the same names.
"""

from __future__ import annotations

from pathlib import Path

from runner.compiler import build_tools
from runner.spec import BUILTIN_TOOLS, ToolsSpec, load_spec
from runner.spec.builtin_tools import BY_KEY, CATALOGUE
from runner.spec.schema import property_schema
from runner.tools.catalogue import FACTORIES
from tests.helpers import write_spec

EVERY_BUILTIN = """
version: 1
name: everything
model: openai/gpt-4o-mini
goal: use every built-in tool
tools:
  read_file: {paths: [data]}
  list_dir: {paths: [data]}
  write_file: {paths: [data]}
  edit_file: {paths: [data]}
  shell: {commands: ["ls *"]}
  http_request: {hosts: [example.com]}
  ask_human: {answer_timeout: 1h}
"""


def test_every_catalogued_tool_has_a_factory_and_every_factory_an_entry() -> None:
    assert sorted(FACTORIES) == sorted(BUILTIN_TOOLS)
    assert list(BY_KEY) == list(BUILTIN_TOOLS) == [tool.key for tool in CATALOGUE]


def test_every_catalogued_tool_is_a_key_of_the_spec_and_of_the_schema() -> None:
    for key in BUILTIN_TOOLS:
        assert getattr(ToolsSpec(), key) is None  # a field, unset when the spec omits the key
        assert property_schema("#/$defs/tools", key), key  # KeyError when the schema lacks it


def test_each_built_tool_has_the_name_arguments_and_risk_of_its_entry(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    spec = load_spec(write_spec(tmp_path, EVERY_BUILTIN))
    assert spec.tools.builtin_names() == list(BUILTIN_TOOLS)  # the test declares them all
    built = list(build_tools(spec))
    assert [tool.name for tool in built] == list(BUILTIN_TOOLS)  # offered in catalogue order
    for tool in built:
        entry = BY_KEY[tool.name]
        assert tuple(tool.parameters["properties"]) == entry.arguments, tool.name
        assert tool.risk == entry.risk, tool.name
        assert tool.source == "builtin"


def test_a_spec_risk_overrides_the_catalogue_default(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    text = EVERY_BUILTIN.replace("{paths: [data]}", "{paths: [data], risk: high}").replace(
        '{commands: ["ls *"]}', '{commands: ["ls *"], risk: low}'
    )
    spec = load_spec(
        write_spec(tmp_path, text.replace("[example.com]}", "[example.com], risk: low}"))
    )
    risks = {tool.name: tool.risk for tool in build_tools(spec)}
    assert risks == {
        "read_file": "high",
        "list_dir": "high",
        "write_file": "high",
        "edit_file": "high",
        "shell": "low",
        "http_request": "low",
        "ask_human": "low",  # it has no risk option: asking acts on nothing
    }
