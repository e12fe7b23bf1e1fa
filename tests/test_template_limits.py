"""Spec templates are bounded, their sandbox escapes are found by `validate`, and input
names the template language reserves are refused at load time (issue 16, items 11 and 12).

Nothing here measures memory or time: a template over a limit must stop with a
``UsageError`` (or a located spec error) naming the limit and the value, instead of a
``MemoryError``; the time limit is driven by a fake clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import cli, main
from runner.compiler import compile_agent, render
from runner.errors import UsageError
from runner.spec import check_spec, load_spec
from runner.spec.templates import (
    MAX_LOOP_ITERATIONS,
    MAX_OUTPUT_BYTES,
    MAX_RANGE,
    MAX_RENDER_SECONDS,
    render_template,
)
from tests.helpers import write_spec

NESTED_RANGES = (
    "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}"
)


def spec_with(folder: Path, body: str) -> Path:
    """A valid spec's head (version, name, model) followed by ``body``."""
    return write_spec(folder, "version: 1\nname: templated\nmodel: openai/gpt-4o-mini\n" + body)


def location(path: Path, line: int, text: str, word: str, occurrence: int = 0) -> str:
    """``path:line:col`` of match ``occurrence`` of ``word`` in source line ``text``."""
    column = -1
    for _ in range(occurrence + 1):
        column = text.index(word, column + 1)
    return f"{path}:{line}:{column + 1}"


# ---------------------------------------------------------------------------------------------
# rendering: limits that stop with a clear error


def test_repeating_a_string_two_billion_times_stops_before_it_is_made() -> None:
    with pytest.raises(UsageError) as raised:
        render("{{ 'a' * 2000000000 }}", {}, "goal")
    message = str(raised.value)
    assert message.startswith("cannot render 'goal': repeating 'a' 2000000000 times")
    assert f"over the limit of {MAX_OUTPUT_BYTES}" in message


def test_nested_range_loops_stop_at_the_output_limit() -> None:
    with pytest.raises(UsageError) as raised:
        render(NESTED_RANGES, {}, "goal")
    assert f"over the limit of {MAX_OUTPUT_BYTES} bytes" in str(raised.value)


def test_nested_loops_that_print_nothing_stop_at_the_iteration_limit() -> None:
    template = "{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}"
    with pytest.raises(UsageError) as raised:
        render(template, {"n": 100000}, "instructions")
    assert str(raised.value).startswith(
        f"cannot render 'instructions': its loops ran more than {MAX_LOOP_ITERATIONS} iterations"
    )


def test_range_over_its_limit_names_the_call() -> None:
    with pytest.raises(UsageError, match=rf"range\(200000\) would make 200000 items.*{MAX_RANGE}"):
        render("{{ range(n)|length }}", {"n": 200000}, "goal")


@pytest.mark.parametrize(
    ("template", "inputs", "what"),
    [
        ("{{ x * n }}", {"x": [1, 2], "n": 10**9}, "repeating [1, 2] 1000000000 times"),
        ("{{ 2 ** n }}", {"n": 10**9}, "2 ** 1000000000"),
        ("{{ '%*d' % (n, 1) }}", {"n": 10**9}, "with a width of 1000000000"),
        ("{{ '{:>{w}}'.format(1, w=n) }}", {"n": 10**9}, "with a width of 1000000000"),
        ("{{ 'a'.ljust(n) }}", {"n": 10**9}, "str.ljust with a width of 1000000000"),
        ("{{ 'a'|center(n) }}", {"n": 10**9}, "the center filter with a width of 1000000000"),
        ("{{ x|replace('a', x) }}", {"x": "a" * 2000}, "replacing 'a' with a text of 2000"),
        ("{{ x.join(range(1000)) }}", {"x": "a" * 3000}, "joining 1000 items"),
    ],
)
def test_operations_that_make_far_more_than_they_get_are_refused_first(
    template: str, inputs: dict[str, object], what: str
) -> None:
    with pytest.raises(UsageError) as raised:
        render(template, inputs, "goal")
    assert what in str(raised.value)


@pytest.mark.parametrize(
    "template",
    [
        # doubling a string with ~ in a loop (a namespace carries it across iterations)
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        # a list grown in place
        "{% set l = [1] %}{% for i in range(40) %}{{ l.extend(l) or '' }}{% endfor %}",
        # text captured in a set block, never printed whole
        "{% set x %}{% for i in range(1000) %}{{ big }}{% endfor %}{% endset %}{{ x|length }}",
    ],
)
def test_growth_out_of_sight_of_the_output_is_bounded(template: str) -> None:
    with pytest.raises(UsageError, match=f"over the limit of {MAX_OUTPUT_BYTES}"):
        render(template, {"big": "z" * 10_000}, "goal")


def test_output_of_exactly_the_limit_renders_and_one_byte_more_does_not() -> None:
    text = "é" * (MAX_OUTPUT_BYTES // 2)  # two bytes each in UTF-8
    assert render("{{ text }}", {"text": text}, "goal") == text
    with pytest.raises(UsageError, match=f"over the limit of {MAX_OUTPUT_BYTES} bytes"):
        render("{{ text }}!", {"text": text}, "goal")


def test_rendering_stops_at_the_time_limit_on_a_fake_clock() -> None:
    def clock() -> Iterator[float]:
        now = 0.0
        while True:
            yield now
            now += 1.0  # every check of the clock sees one more second

    ticks = clock()
    with pytest.raises(UsageError, match=f"took longer than {MAX_RENDER_SECONDS:g} s"):
        render_template(
            "{% for x in xs %}{{ x }}{% endfor %}", {"xs": list(range(20))}, clock=ticks.__next__
        )
    fresh = clock()
    assert render_template("{{ x }}", {"x": "ok"}, clock=fresh.__next__) == "ok"


def test_ordinary_templates_render_as_before() -> None:
    template = (
        "{% for p in paths %}{{ loop.index }}. {{ p }}{% if not loop.last %}, {% endif %}"
        "{% endfor %} | {{ paths|join(' ') }} | {{ '%05d' % n }} | {{ '{:>4}'.format(n) }}"
        " | {{ 'a' ~ 'b' }} | {{ range(3)|list }} | {{ data.key }} | {{ data._links.self }}"
    )
    inputs = {"paths": ["a", "b"], "n": 7, "data": {"key": "v", "_links": {"self": "/x"}}}
    assert render(template, inputs, "goal") == (
        "1. a, 2. b | a b | 00007 |    7 | ab | [0, 1, 2] | v | /x"
    )


def test_escapes_are_still_refused_when_rendering() -> None:
    with pytest.raises(UsageError, match="'__class__'.*unsafe"):
        render("{{ x.__class__ }}", {"x": ""}, "goal")


def test_an_input_named_self_reaches_rendering_as_data_not_as_a_keyword() -> None:
    # The root cause of item 12: inputs were passed as keyword arguments to render(self, ...).
    assert render("Hello {{ name }}", {"self": "me", "name": "you"}, "goal") == "Hello you"


def test_a_limit_crossed_through_an_input_is_a_compile_error_of_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_file = spec_with(
        tmp_path,
        "inputs:\n  times: {type: integer, default: 3}\ngoal: \"{{ 'a' * times }}\"\n",
    )
    spec = load_spec(spec_file)
    assert compile_agent(spec, {"times": "3"}).goal == "aaa"
    with pytest.raises(UsageError, match="cannot render 'goal': repeating 'a' 2000000000 times"):
        compile_agent(spec, {"times": "2000000000"})
    with pytest.raises(SystemExit) as exited:
        main(["run", str(spec_file), "--input", "times=2000000000"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert "cannot render 'goal'" in err and str(MAX_OUTPUT_BYTES) in err
    assert "MemoryError" not in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# validate: sandbox checks at file:line:col


def test_validate_reports_nested_range_loops_and_an_escape_where_they_are(tmp_path: Path) -> None:
    loop_line = "  " + NESTED_RANGES
    escape_line = "instructions: \"Be {{ ''.__class__ }}\""
    spec_file = spec_with(tmp_path, f"{escape_line}\ngoal: |\n  Count.\n{loop_line}\n")
    result = CliRunner().invoke(cli, ["validate", str(spec_file)])
    assert result.exit_code == 2, result.output
    assert (
        f"{location(spec_file, 4, escape_line, '__class__')}: template 'instructions' reads "
        "attribute '__class__', which the sandbox refuses; templates may only read the inputs' "
        "data, not Python internals"
    ) in result.output
    assert (
        f"{location(spec_file, 7, loop_line, 'range', occurrence=1)}: template 'goal' runs nested "
        f"loops over range() 10000000000 times, over the limit of {MAX_LOOP_ITERATIONS} loop "
        "iterations for a template; loop over fewer items"
    ) in result.output
    caret = " " * (loop_line.index("range", loop_line.index("range") + 1)) + "^"
    assert f"    7 | {loop_line}\n      | {caret}" in result.output


@pytest.mark.parametrize(
    ("template", "word", "message"),
    [
        ("{{ 'a' * 2000000000 }}", "*", "would fail to render: repeating 'a' 2000000000 times"),
        ("{{ range(200000)|length }}", "range", "would fail to render: range(200000) would make"),
        ("{{ x['__globals__'] }}", "__globals__", "reads attribute '__globals__'"),
        ("{{ x|attr('__class__') }}", "__class__", "reads attribute '__class__'"),
        ("{{ '{0.__class__}'.format(x) }}", "__class__", "reads attribute '__class__' in a format"),
        (
            "{{ 'a'|center(9999999999) }}",
            "center",
            "would fail to render: the center filter with a width of 9999999999",
        ),
    ],
)
def test_check_spec_locates_each_construct_refused_whatever_the_inputs(
    tmp_path: Path, template: str, word: str, message: str
) -> None:
    goal_line = f'goal: "{template}"'
    inputs = "inputs:\n  x: {type: string, default: ''}\n" if "x" in template else ""
    spec_file = spec_with(tmp_path, inputs + goal_line + "\n")
    spec, diagnostics = check_spec(spec_file)
    assert spec is None
    [error] = [d for d in diagnostics if d.severity == "error"]
    line = spec_file.read_text().splitlines().index(goal_line) + 1
    assert error.location() == location(spec_file, line, goal_line, word)
    assert error.message.startswith(f"template 'goal' {message}")


def test_a_loop_over_an_input_is_left_to_render_time(tmp_path: Path) -> None:
    spec_file = spec_with(
        tmp_path,
        "inputs:\n  items: {type: array, default: []}\n"
        "goal: '{% for a in items %}{% for b in range(100000) %}{% endfor %}{% endfor %}'\n",
    )
    spec, diagnostics = check_spec(spec_file)
    assert spec is not None, [d.headline() for d in diagnostics]


# ---------------------------------------------------------------------------------------------
# reserved input names


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("self", "Jinja2 gives it its own meaning inside templates"),
        ("loop", "Jinja2 gives it its own meaning inside templates"),
        ("range", "it is a function templates can call"),
        ("namespace", "it is a function templates can call"),
        ("none", "it is a constant in templates"),
        ("_hidden", "names starting with '_' are reserved"),
    ],
)
def test_a_reserved_input_name_is_refused_at_load_time_where_it_is(
    tmp_path: Path, name: str, reason: str
) -> None:
    spec_file = spec_with(
        tmp_path, f"inputs:\n  {name}: {{type: string, default: x}}\ngoal: Say hello.\n"
    )
    spec, diagnostics = check_spec(spec_file)
    assert spec is None
    [error] = [d for d in diagnostics if d.severity == "error"]
    assert (error.line, error.column) == (5, 3)
    assert error.message.startswith(f"input name {name!r} is reserved: {reason}")
    assert error.hint == f"rename it, for example to {name.strip('_') + '_input'!r}"


def test_validate_refuses_an_input_named_self(tmp_path: Path) -> None:
    spec_file = spec_with(tmp_path, "inputs:\n  self: {type: string}\ngoal: 'Hello {{ self }}'\n")
    result = CliRunner().invoke(cli, ["validate", str(spec_file)])
    assert result.exit_code == 2, result.output
    assert f"{spec_file}:5:3: input name 'self' is reserved" in result.output
    assert "    5 |   self: {type: string}\n      |   ^" in result.output
