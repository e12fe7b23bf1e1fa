"""One canonical form per path and URL argument: rules and confinement see what is done.

Issue 16, item 3: a deny on ``data/secrets/*`` let ``./data/secrets/x``, ``data//secrets/x``,
``data/./secrets/x``, the absolute path and a symlink alias through, and a URL deny let
``HTTP://``, ``//`` and percent-escapes through. And: a hard link inside the allowed folder
read a file outside it.
"""

from __future__ import annotations

import asyncio
import json
import os
import string
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.canonical import (
    CanonicalPath,
    canonical_path,
    canonical_path_glob,
    canonical_url_glob,
)
from runner.compiler import CompiledAgent, compile_agent
from runner.errors import ToolError
from runner.events import Event, StopReason, ToolCalled
from runner.loop import Run
from runner.policy import Decision, Policy
from runner.spec import HttpToolSpec, RulesSpec, load_spec
from runner.testing import ScriptedModel, call, text
from runner.tools import ToolRegistry
from runner.tools.builtin import ListDir, PathJail
from runner.tools.http import HttpTool, canonical_url
from tests.helpers import write_spec
from tests.test_tools_http import Server, server  # noqa: F401  (the loopback server fixture)

SECRET = "the secret\n"
#: Fixed examples, the same on every run: modest counts for two shared cores.
PROPERTY = settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


# -- paths, through the real loop ----------------------------------------------------------


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """``work/data`` is the allowed folder; ``data/secrets/x`` the denied target.

    ``data/alias`` is a symlink to ``data/secrets``; ``outside/secret.txt`` is outside every
    allowed path; ``work-link`` (beside ``work``) is a symlink to the workdir itself.
    """
    work = tmp_path / "work"
    (work / "data" / "secrets").mkdir(parents=True)
    (work / "data" / "public").mkdir()
    (work / "data" / "secrets" / "x").write_text(SECRET)
    (work / "data" / "alias").symlink_to("secrets", target_is_directory=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text(SECRET)
    (tmp_path / "work-link").symlink_to(work, target_is_directory=True)
    return work


def agent_for(work: Path, rules: str, unattended: str = "fail") -> CompiledAgent:
    """An autonomous agent with the file tools on ``data`` and ``rules`` (YAML lines)."""
    body = f"""\
version: 1
name: canonical
model: openai/scripted
goal: Write the file.
autonomy: autonomous
unattended: {unattended}
tools:
  read_file: {{paths: [data]}}
  write_file: {{paths: [data]}}
  edit_file: {{paths: [data]}}
  list_dir: {{paths: [data]}}
rules:
{rules}"""
    return compile_agent(load_spec(write_spec(work, body)))


def one_call(agent: CompiledAgent, tool: str, arguments: dict[str, str]) -> ToolCalled:
    """Run ``agent`` through the loop with one scripted call; that call's record."""
    events: list[Event] = []
    model = ScriptedModel([call(tool, arguments), text("done")])
    finished = asyncio.run(Run(agent, model, [events.append]).execute())
    assert finished.stop_reason is StopReason.COMPLETED, finished.message
    [called] = [e for e in events if isinstance(e, ToolCalled)]
    return called


def secrets_untouched(work: Path) -> bool:
    folder = work / "data" / "secrets"
    return (folder / "x").read_text() == SECRET and sorted(os.listdir(folder)) == ["x"]


DENY_SECRETS = "  deny: ['write_file:path=data/secrets/*', 'read_file:path=data/secrets/*']\n"


def spellings(work: Path) -> dict[str, str]:
    return {
        "dot-slash": "./data/secrets/x",
        "double-slash": "data//secrets/x",
        "dot-segment": "data/./secrets/x",
        "absolute": str(work / "data" / "secrets" / "x"),
        "symlink-alias": "data/alias/x",
        "symlinked-workdir": str(work.parent / "work-link" / "data" / "secrets" / "x"),
        "trailing-slash": "data/secrets/x/",
    }


@pytest.mark.parametrize(
    "spelling",
    [
        "dot-slash",
        "double-slash",
        "dot-segment",
        "absolute",
        "symlink-alias",
        "symlinked-workdir",
        "trailing-slash",
    ],
)
def test_a_deny_rule_holds_for_every_spelling_of_the_path(work: Path, spelling: str) -> None:
    path = spellings(work)[spelling]
    agent = agent_for(work, DENY_SECRETS)
    written = one_call(agent, "write_file", {"path": path, "content": "pwned\n"})
    assert (written.decision, written.status) == ("deny", "refused")
    read = one_call(agent, "read_file", {"path": path})
    assert (read.decision, read.status) == ("deny", "refused")
    assert SECRET not in read.result
    assert secrets_untouched(work)


def test_the_tool_writes_where_the_canonical_path_points(work: Path) -> None:
    """The same spellings outside the denied folder are written, to the one canonical file."""
    agent = agent_for(work, DENY_SECRETS)
    (work / "data" / "public-alias").symlink_to("public", target_is_directory=True)
    for number, path in enumerate(
        ["./data/public/y", "data//public/./y", str(work / "data/public/y"), "data/public-alias/y"]
    ):
        called = one_call(agent, "write_file", {"path": path, "content": f"{number}\n"})
        assert (called.decision, called.status) == ("allow", "ok"), called.result
        assert called.result.startswith("replaced data/public/y") or number == 0
        assert (work / "data" / "public" / "y").read_text() == f"{number}\n"
    assert sorted(os.listdir(work / "data" / "public")) == ["y"]


@pytest.mark.parametrize(
    "rule",
    ["./data/secrets/*", "data//secrets/*", "data/secrets/./*", "{work}/data/secrets/*"],
)
def test_a_rule_spelled_another_way_names_the_same_files(work: Path, rule: str) -> None:
    agent = agent_for(work, f"  deny: ['write_file:path={rule.format(work=work)}']\n")
    called = one_call(agent, "write_file", {"path": "data/secrets/x", "content": "pwned\n"})
    assert (called.decision, called.status) == ("deny", "refused")
    assert secrets_untouched(work)


def test_an_ask_rule_asks_for_every_spelling(work: Path) -> None:
    agent = agent_for(work, "  ask: ['write_file:path=data/secrets/*']\n", unattended="deny")
    for path in spellings(work).values():
        called = one_call(agent, "write_file", {"path": path, "content": "pwned\n"})
        assert (called.decision, called.status) == ("ask", "refused"), path
    assert secrets_untouched(work)


def test_list_dir_without_a_path_is_decided_on_the_folder_it_lists(work: Path) -> None:
    jail = PathJail(work, ("data",))
    tool = ListDir(jail)
    assert ToolRegistry([tool]).parse_arguments(tool, "{}") == {"path": "."}
    agent = agent_for(work, "  deny: ['list_dir:path=data/secrets']\n")
    called = one_call(agent, "list_dir", {"path": "data/alias/"})
    assert (called.decision, called.status) == ("deny", "refused")


# -- hard links ----------------------------------------------------------------------------


def test_a_hard_link_to_a_file_outside_is_not_read(work: Path) -> None:
    outside = work.parent / "outside" / "secret.txt"
    os.link(outside, work / "data" / "public" / "hard.txt")
    agent = agent_for(work, "  deny: []\n")
    read = one_call(agent, "read_file", {"path": "data/public/hard.txt"})
    assert read.status == "error"
    assert SECRET not in read.result
    assert "2 hard links" in read.result and "cp, not ln" in read.result
    edited = one_call(
        agent, "edit_file", {"path": "data/public/hard.txt", "old": "secret", "new": "x"}
    )
    assert edited.status == "error" and "hard links" in edited.result
    assert outside.read_text() == SECRET


def test_a_hard_link_is_replaced_by_write_file_and_then_readable(work: Path) -> None:
    """write_file replaces the name by a rename: the other name keeps its content."""
    outside = work.parent / "outside" / "secret.txt"
    os.link(outside, work / "data" / "public" / "hard.txt")
    agent = agent_for(work, "  deny: []\n")
    written = one_call(agent, "write_file", {"path": "data/public/hard.txt", "content": "mine\n"})
    assert written.status == "ok"
    read = one_call(agent, "read_file", {"path": "data/public/hard.txt"})
    assert (read.status, read.result) == ("ok", "mine\n")
    assert outside.read_text() == SECRET


# -- the canonical path form ---------------------------------------------------------------


def test_canonical_paths(work: Path) -> None:
    outside = Path(os.path.realpath(work.parent / "outside"))
    assert canonical_path(work, "data/alias/../public") == "data/alias/../public"  # refused
    assert canonical_path(work, "") == ""
    assert canonical_path(work, ".") == "."
    assert canonical_path(work, str(work) + "/") == "."
    assert canonical_path(work, f"/{work}/data//alias/./x/") == "data/secrets/x"
    assert canonical_path(work, str(outside / "secret.txt")) == str(outside / "secret.txt")
    found = canonical_path(work, "data/public")
    assert isinstance(found, CanonicalPath) and found.workdir == str(work)
    assert canonical_path(work, found) == found  # idempotent
    assert canonical_path_glob("data/alias/*", str(work)) == "data/secrets/*"
    assert canonical_path_glob(f"{work}/*.env", str(work)) == "*.env"
    assert canonical_path_glob("data/*/../x", str(work)) == "data/*/../x"


# -- URLs: policy and tool, over the loopback server ---------------------------------------


def http_tool(hosts: tuple[str, ...]) -> HttpTool:
    spec = HttpToolSpec(hosts=hosts, methods=("GET",), max_bytes=4096)
    return HttpTool(spec, 30.0)


def decide(policy: Policy, tool: HttpTool, url: str) -> tuple[Decision, str]:
    """What the loop does with a call of ``tool``: parse (canonical form), then decide."""
    arguments = ToolRegistry([tool]).parse_arguments(tool, json.dumps({"url": url}))
    return policy.decide(tool.name, tool.risk_for(arguments), arguments), arguments["url"]


@pytest.mark.parametrize(
    "spelling",
    [
        "HTTP://127.0.0.1:{port}/admin/x",
        "http://127.0.0.1:{port}//admin/x",
        "http://127.0.0.1:{port}/admin//x",
        "http://127.0.0.1:{port}/%61dmin/x",
        "http://127.0.0.1:{port}/%61%64%6D%69%6E/%78",
        "http://127.0.0.1:{port}/public/../admin/x",
        "http://127.0.0.1:{port}/public/%2e%2E/admin/x",
        "http://127.0.0.1:{port}/./admin/x#top",
    ],
)
def test_a_url_deny_holds_for_every_spelling(server: Server, spelling: str) -> None:  # noqa: F811
    tool = http_tool(("127.0.0.1",))
    url = spelling.format(port=server.port)
    policy = Policy("autonomous", RulesSpec(deny=(f"http_request:url={server.base}/admin/*",)))
    decision, canonical = decide(policy, tool, url)
    assert decision is Decision.DENY
    assert canonical == f"{server.base}/admin/x"
    # What was decided on is what would be sent: the canonical URL reaches /admin/x.
    allowed = Policy("autonomous", RulesSpec())
    assert decide(allowed, tool, url)[0] is Decision.ALLOW
    tool.run({"url": canonical})
    assert server.paths() == ["/admin/x"]


@pytest.mark.parametrize(
    "spelling",
    [
        "https://API.Example.COM/admin/x",
        "https://api.example.com:443/admin/x",
        "HTTPS://api.example.com./admin/x",
        "https://api.example.com/admin/%78",
        "https://api.example.com/admin/x?",
    ],
)
def test_a_url_deny_holds_for_host_case_default_port_and_escapes(spelling: str) -> None:
    tool = http_tool(("api.example.com",))
    rule = "http_request:url=https://api.example.com/admin/*"
    assert decide(Policy("autonomous", RulesSpec(deny=(rule,))), tool, spelling) == (
        Decision.DENY,
        "https://api.example.com/admin/x",
    )


def test_a_url_rule_spelled_another_way_names_the_same_urls() -> None:
    tool = http_tool(("api.example.com",))
    rule = "http_request:url=HTTPS://API.example.com:443//%61dmin/./*"
    policy = Policy("autonomous", RulesSpec(deny=(rule,)))
    assert decide(policy, tool, "https://api.example.com/admin/x")[0] is Decision.DENY
    assert canonical_url_glob("HTTPS://API.example.com:443//%61dmin/./*") == (
        "https://api.example.com/admin/*"
    )


def test_a_url_with_user_information_is_refused_before_anything_is_sent(
    server: Server,  # noqa: F811
) -> None:
    tool = http_tool(("127.0.0.1",))
    for url in (f"http://user:pw@127.0.0.1:{server.port}/admin/x", f"http://u@{server.base[7:]}/"):
        arguments = ToolRegistry([tool]).parse_arguments(tool, json.dumps({"url": url}))
        assert arguments["url"] == url  # refused on its text: no canonical form
        with pytest.raises(ToolError, match="user information"):
            tool.run(arguments)
    assert server.received == []


# -- properties: every generated spelling of the target ------------------------------------


@dataclass(frozen=True)
class PathSpelling:
    """A generated spelling of ``data/secrets/x`` (``case``: some letters' case changed)."""

    text: str
    dotdot: bool
    case: bool


@st.composite
def path_spellings(draw: st.DrawFn, work: Path) -> PathSpelling:
    """``data/secrets/x`` written with ``./``, ``//``, ``/./``, ``..`` back in, an absolute
    prefix, symlink aliases, changed case and a trailing slash, in any combination."""
    folders = draw(
        st.sampled_from(
            [
                ["data", "secrets"],
                ["data", "alias"],
                ["data", "secrets", "..", "secrets"],
                ["data", "public", "..", "alias"],
            ]
        )
    )
    parts = [*folders, "x"]
    case = draw(st.booleans()) and draw(st.booleans())
    if case:
        index = draw(st.integers(0, len(parts) - 1))
        parts[index] = parts[index].upper()
    separators = [draw(st.sampled_from(["/", "//", "/./", "/././", "///"])) for _ in parts[1:]]
    body = parts[0] + "".join(s + p for s, p in zip(separators, parts[1:], strict=True))
    start = draw(st.sampled_from(["", "./", "././", "absolute", "absolute-link", "absolute//"]))
    if start.startswith("absolute"):
        base = work.parent / "work-link" if start == "absolute-link" else work
        prefix = str(base) + ("//" if start.endswith("//") else "/")
    else:
        prefix = start
    trailing = draw(st.sampled_from(["", "/", "//", "/."]))
    return PathSpelling(prefix + body + trailing, ".." in parts, case)


def case_sensitive(folder: Path) -> bool:
    """Whether ``folder``'s filesystem tells ``probe`` from ``PROBE`` (Linux's do)."""
    (folder / "probe").write_text("")
    try:
        return not (folder / "PROBE").exists()
    finally:
        (folder / "probe").unlink()


@PROPERTY
@given(data=st.data())
def test_property_a_path_deny_holds_for_every_spelling(work: Path, data: st.DataObject) -> None:
    """Every spelling of the denied target is denied, or refused by confinement (``..``).

    On a case-sensitive filesystem a spelling with changed case names another file: the deny
    does not apply to it and the target stays untouched; on a case-insensitive one it names
    the target and is denied.
    """
    agent = agent_for(work, DENY_SECRETS)
    sensitive = case_sensitive(work)
    spelling = data.draw(path_spellings(work))
    called = one_call(agent, "write_file", {"path": spelling.text, "content": "pwned\n"})
    assert secrets_untouched(work), spelling
    if spelling.dotdot:
        assert called.status in ("refused", "error"), spelling
        assert called.status == "refused" or "'..'" in called.result, spelling
    elif not (spelling.case and sensitive):
        assert (called.decision, called.status) == ("deny", "refused"), spelling


_UNRESERVED = string.ascii_letters + string.digits + "-._~"


@dataclass(frozen=True)
class URLSpelling:
    text: str
    userinfo: bool


def _escape(draw: st.DrawFn, segment: str) -> str:
    """``segment`` with some characters percent-escaped, hex digits in either case."""
    out = []
    for character in segment:
        if draw(st.booleans()) and draw(st.booleans()):
            escaped = f"%{ord(character):02X}"
            out.append(escaped.lower() if draw(st.booleans()) else escaped)
        else:
            out.append(character)
    return "".join(out)


def _recase(draw: st.DrawFn, word: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c for c in word)


@st.composite
def url_spellings(draw: st.DrawFn) -> URLSpelling:
    """``https://api.example.com/admin/users`` written with changed case, escapes, default
    ports, ``//``, dot segments, a trailing host dot, a fragment and user information."""
    scheme = _recase(draw, "https")
    host = _recase(draw, "api.example.com") + draw(st.sampled_from(["", "."]))
    port = draw(st.sampled_from(["", ":443"]))
    userinfo = draw(st.sampled_from(["", "", "", "user@", "user:secret@", "api.example.com@"]))
    segments = ["admin", "users"]
    path = ""
    for segment in segments:
        if draw(st.booleans()) and draw(st.booleans()):
            path += draw(st.sampled_from(["/other/..", "/./", "/x/%2E%2e", "/"]))
        path += draw(st.sampled_from(["/", "//", "///"])) + _escape(draw, segment)
    fragment = draw(st.sampled_from(["", "#top", "#"]))
    return URLSpelling(f"{scheme}://{userinfo}{host}{port}{path}{fragment}", bool(userinfo))


@settings(max_examples=150, derandomize=True, deadline=None)
@given(spelling=url_spellings())
def test_property_a_url_deny_holds_for_every_spelling(spelling: URLSpelling) -> None:
    """Denied, or (user information) refused by the tool before anything is sent; and the
    canonical text is what httpx sends, unchanged by a second canonicalisation."""
    tool = http_tool(("api.example.com",))
    rule = "http_request:url=https://api.example.com/admin/*"
    decision, canonical = decide(Policy("autonomous", RulesSpec(deny=(rule,))), tool, spelling.text)
    if spelling.userinfo:
        with pytest.raises(ToolError, match="user information"):
            tool.check_url(canonical)
        return
    assert decision is Decision.DENY, spelling
    assert canonical == "https://api.example.com/admin/users"
    assert str(httpx.URL(canonical)) == canonical
    assert canonical_url(canonical) == canonical
