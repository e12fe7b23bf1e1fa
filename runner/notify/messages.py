"""What a notification says: a title and a plain-text body for each event (pure).

A message says what happened, to which agent and run, what is asked (the tool, its
arguments, shortened, as the run store has them: already redacted by the loop, and the
risk and reason; or the model's question with its context and choices), and links: the run's
console page, and for a waiting call or question the signed decision links, when the
console is reachable. Nothing else of the run goes out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The most characters of a call's arguments a message carries.
MAX_ARGUMENTS_CHARS = 500
#: The most characters of a question, its context or a run's message a message carries.
MAX_TEXT_CHARS = 1000


@dataclass(frozen=True)
class Message:
    """One notification's content.

    Attributes:
        title: one line (an email's subject, a chat message's bold first line).
        body: plain text, one line per line of text.
    """

    title: str
    body: str


@dataclass
class Links:
    """The links a message carries; each None when the console is not reachable.

    Attributes:
        run: the run's console page.
        approve: the signed link that approves the waiting call.
        deny: the signed link that denies it.
        answer: the signed link that opens the question's answer form.
    """

    run: str | None = None
    approve: str | None = None
    deny: str | None = None
    answer: str | None = None


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in ``…`` when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def approval_waiting(agent: str, entry: dict[str, Any], links: Links) -> Message:
    """A call waits for a person's approval (an ``approval_requested`` log entry)."""
    run_id, tool = entry["run_id"], entry.get("tool", "?")
    lines = [
        f"Agent {agent}, run {run_id}: the call of {tool} waits for approval.",
        "",
        f"Tool: {tool}",
        f"Risk: {entry.get('risk', '?')}",
        f"Arguments: {shorten(str(entry.get('arguments', '')), MAX_ARGUMENTS_CHARS)}",
    ]
    if entry.get("reason"):
        lines.append(f"Why it asks: {shorten(str(entry['reason']), MAX_TEXT_CHARS)}")
    if entry.get("note"):
        lines.append(f"Note: {shorten(str(entry['note']), MAX_TEXT_CHARS)}")
    if links.approve and links.deny:
        lines += ["", f"Approve: {links.approve}", f"Deny: {links.deny}"]
    elif not links.run:
        lines += ["", f"Decide with: agentrun approve {run_id} / agentrun deny {run_id}"]
    return _message(f"[agentrun] {agent}: approval waiting for {tool}", lines, links)


def question_waiting(agent: str, entry: dict[str, Any], links: Links) -> Message:
    """The model asks a person a question (a ``question_asked`` log entry)."""
    run_id = entry["run_id"]
    lines = [
        f"Agent {agent}, run {run_id} asks a question:",
        "",
        shorten(str(entry.get("question", "")), MAX_TEXT_CHARS),
    ]
    if entry.get("context"):
        lines += ["", f"Context: {shorten(str(entry['context']), MAX_TEXT_CHARS)}"]
    choices = entry.get("choices") or []
    if choices:
        lines.append("Choices: " + ", ".join(str(choice) for choice in choices))
    if links.answer:
        lines += ["", f"Answer: {links.answer}"]
    elif not links.run:
        lines += ["", f"Answer with: agentrun answer {run_id} TEXT"]
    return _message(f"[agentrun] {agent}: question waiting", lines, links)


def run_ended(event: str, agent: str, entry: dict[str, Any], links: Links) -> Message:
    """A run ended: ``run_escalated``, ``run_failed`` or ``run_completed``."""
    run_id, reason = entry["run_id"], str(entry.get("stop_reason", "?"))
    if event == "run_escalated":
        cause = entry.get("escalated_from") or reason
        headline = f"escalated ({cause}): a person decides whether it continues"
        title = f"[agentrun] {agent}: run escalated ({cause})"
    elif event == "run_failed":
        headline = f"failed: {reason}"
        title = f"[agentrun] {agent}: run failed ({reason})"
    else:
        headline = "completed"
        title = f"[agentrun] {agent}: run completed"
    lines = [f"Agent {agent}, run {run_id} {headline}."]
    if entry.get("message"):
        lines += ["", shorten(str(entry["message"]), MAX_TEXT_CHARS)]
    usage = [
        f"{entry[key]} {label}"
        for key, label in (("steps", "steps"), ("tool_calls", "tool calls"))
        if entry.get(key) is not None
    ]
    if entry.get("cost_usd") is not None:
        usage.append(f"${float(entry['cost_usd']):.4f}")
    if usage:
        lines += ["", "Used: " + ", ".join(usage)]
    if event == "run_escalated" and not links.run:
        lines += ["", f"Continue with: agentrun resume {run_id} --add max_steps=N"]
    return _message(title, lines, links)


def _message(title: str, lines: list[str], links: Links) -> Message:
    if links.run:
        lines = [*lines, "", f"Run: {links.run}"]
    return Message(title, "\n".join(lines))
