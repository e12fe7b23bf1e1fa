"""One tool call: parse → decide → approve → execute → outcome.

::

    completed before a resume  → its recorded result, never run again
    unknown tool / bad JSON / arguments that fail the schema → refused, told to the model
    arguments put in canonical form (paths resolved, URLs normalised), once
    ask_human → a question to a person (never an approval; a deny rule refuses it), its
        answer recorded and returned: see ToolCaller._ask_human
    loop detection: a warning appended to the result, then stop with loop_detected
    policy: allow | ask | deny | propose; a call that may have partly happened asks again
    ask → recorded decision, "approve for the run", or the approver (the run's clock stops)
    budget.check_before_tool_call()                 # max_tool_calls, max_duration
    journal entry, then the tool within tool_timeout, its output cut to max_tool_output
    tool errors and bugs → told to the model as the result, never raised

Every outcome is recorded as one :class:`~runner.events.ToolCalled` event, and its text is
what goes back to the model. :class:`~runner.errors.RunStop` (loop detected, a budget, an
approver that ends the run) is the only way out besides that text.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Literal

from .budgets import Budget
from .compiler import CompiledAgent
from .errors import AnswerTimeout, LoopDetected, ToolArgumentError, ToolError
from .events import (
    ApprovalDecided,
    ApprovalRequested,
    Event,
    QuestionAnswered,
    QuestionAsked,
    ToolCalled,
    ToolCallStatus,
    ToolStarted,
)
from .guards import Guards, strictest
from .models import ToolCallRequest
from .policy import Approval, ApprovalRequest, Approver, Decision, Question
from .redact import Redactor
from .resume import IN_FLIGHT_NOTE, RunState
from .sandbox import session as sandbox_session
from .spec import Risk
from .tools import Tool
from .tools.ask_human import AskHuman


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes, saying so when it was cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text

    def note(shown: int) -> str:
        return f"\n[output truncated: {len(data)} bytes, showing the first {shown}]"

    # The note for ``limit`` is the longest one: the text kept plus its own note fit.
    kept = data[: max(limit - len(note(limit).encode()), 0)].decode("utf-8", errors="ignore")
    return kept + note(len(kept.encode("utf-8")))


def _is_json(text: str) -> bool:
    """Whether ``text`` (a tool call's raw arguments; empty means ``{}``) parses as JSON."""
    try:
        json.loads(text.strip() or "{}")
    except json.JSONDecodeError:
        return False
    return True


def repeats(signatures: list[str]) -> int:
    """How often the newest call repeats: the same call in a row, or an A-B-A-B cycle.

    Returns the number of times the repeating unit (one call, or a pair of different
    calls) occurs at the end of ``signatures``; 1 when nothing repeats.
    """
    if not signatures:
        return 0
    run = 1
    while run < len(signatures) and signatures[-1 - run] == signatures[-1]:
        run += 1
    cycle = 0
    if len(signatures) >= 2 and signatures[-1] != signatures[-2]:
        length = 2
        while length < len(signatures) and signatures[-1 - length] == signatures[-1 - length + 2]:
            length += 1
        cycle = length // 2
    return max(run, cycle)


def arguments_sha256(tool: str, arguments: str) -> str:
    """The hash an approval is bound to: the tool name and its exact (canonical) arguments."""
    try:
        canonical = json.dumps(json.loads(arguments), sort_keys=True, separators=(",", ":"))
    except json.JSONDecodeError:
        canonical = arguments
    return hashlib.sha256(f"{tool}\n{canonical}".encode()).hexdigest()


class _Outcome:
    """Records one call's outcome as a :class:`ToolCalled` event; its text for the model."""

    def __init__(
        self, caller: ToolCaller, call: ToolCallRequest, step: int, risk: Risk | Literal[""]
    ) -> None:
        self.caller = caller
        self.call = call
        self.step = step
        self.risk = risk
        self.started = time.monotonic()

    def __call__(
        self, decision: str, status: ToolCallStatus, result: str, error: str | None = None
    ) -> str:
        result = truncate(result, self.caller.agent.spec.budgets.max_tool_output)
        self.caller.emit(
            ToolCalled(
                run_id=self.caller.run_id,
                step=self.step,
                call_id=self.call.id,
                tool=self.call.name,
                arguments=self.call.arguments,
                decision=decision,
                status=status,
                result=result,
                duration_s=time.monotonic() - self.started,
                risk=self.risk,
                error=error,
            )
        )
        return result


class ToolCaller:
    """Takes a run's tool calls one at a time through policy, approval and execution.

    Args:
        run_id: the run the calls belong to.
        agent: the compiled agent (its tools, policy and limits).
        budget: the run's budget: checked before each call, charged for each.
        approver: answers "ask" decisions.
        redactor: the run's redactor (approval hashes are taken over redacted text, so a
            resume, which reads redacted records, computes the same hash).
        emit: sends an event, redacted, to the run's sinks.
        waiting_for_a_person: a context manager the run holds while the approver decides
            (it stops the run's clock and lifts its deadline).
        resumed: the state of a resumed run (its journal, recorded decisions and executed
            calls), or None.

    Attributes:
        proposed: calls recorded as proposals (autonomy ``suggest``), none executed.
        would_refuse: call id -> why the tool would refuse it, for each proposal that would
            not run even if approved (:meth:`~runner.tools.Tool.refusal`).
    """

    def __init__(
        self,
        run_id: str,
        agent: CompiledAgent,
        budget: Budget,
        approver: Approver,
        redactor: Redactor,
        emit: Callable[[Event], None],
        waiting_for_a_person: Callable[[], AbstractContextManager[None]],
        resumed: RunState | None = None,
    ) -> None:
        self.run_id = run_id
        self.agent = agent
        self.budget = budget
        self.approver = approver
        self.redactor = redactor
        self.emit = emit
        self.waiting_for_a_person = waiting_for_a_person
        self.resumed = resumed
        self.signatures: list[str] = list(resumed.signatures) if resumed else []
        self.approved_tools: set[str] = set()
        self.proposed: list[ToolCallRequest] = []
        self.would_refuse: dict[str, str] = {}
        self.guards = Guards(run_id, agent.spec, agent.goal, budget, redactor, emit)

    async def call(
        self, call: ToolCallRequest, reason: str, step: int, cut_off: bool = False
    ) -> str:
        """Decide, execute and record one tool call; the text sent back to the model.

        Args:
            call: the model's request.
            reason: the text of the model's reply that asked for it (shown to approvers).
            step: the model call (step) that asked for it.
            cut_off: the reply ended at its ``max_tokens`` (finish reason ``length``):
                arguments that are not JSON were cut off, and are reported as such.

        Raises:
            RunStop: loop detected, a budget exhausted, or an approver that ends the run.
        """
        # A resumed run never repeats a call that completed: its recorded result is reused.
        journal = self.resumed.journal.get(call.id) if self.resumed else None
        if journal is not None and journal["status"] != ToolCallStatus.RUNNING:
            return str(journal["result"])
        registry = self.agent.tools
        tool = registry.get(call.name)
        outcome = _Outcome(self, call, step, tool.risk if tool else "")
        if tool is None:
            available = ", ".join(registry.names()) or "none"
            return outcome(
                "deny",
                ToolCallStatus.REFUSED,
                f"error: there is no tool named {call.name!r}; available tools: {available}",
                "unknown tool",
            )
        try:
            arguments = registry.parse_arguments(tool, call.arguments)
        except ToolArgumentError as error:
            message = str(error)
            if cut_off and not _is_json(call.arguments):
                message = self._cut_off_message(tool.name)
            return outcome("allow", ToolCallStatus.REFUSED, f"error: {message}", message)
        if isinstance(tool, AskHuman):  # a question to a person: answered, never executed
            return await self._ask_human(outcome, tool, arguments)
        in_flight_since = str(journal["created_at"]) if journal is not None else None
        warning = "" if in_flight_since else self._loop_check(tool.name, arguments)
        risk = outcome.risk = tool.risk_for(arguments)
        decision = self.agent.policy.decide(tool.rule_name, risk, arguments)
        if in_flight_since and risk is not Risk.LOW and decision is not Decision.DENY:
            decision = Decision.ASK  # it may have partly happened: only a person may rerun it
        else:
            in_flight_since = None
        if decision is Decision.ASK:
            # A call its tool would refuse (a path outside its roots, a command or host not
            # on its list) cannot run even if approved: nobody is asked, no guard reviews it.
            why = tool.refusal(arguments)
            if why is not None:
                return outcome("ask", ToolCallStatus.REFUSED, f"error: {why}", why)
        guard_note = ""
        if journal is None and decision in (Decision.ALLOW, Decision.ASK):
            decision, guard_note, refused = await self._guard(outcome, tool, arguments, decision)
            if refused is not None:
                return refused
        refused = await self._refusal(
            outcome, tool, arguments, risk, decision, reason, in_flight_since, guard_note
        )
        if refused is not None:
            return refused
        return await self._execute(outcome, tool, arguments, str(decision), warning)

    def proposals(self) -> str | None:
        """The run's final text under autonomy ``suggest``; None when nothing was proposed.

        Every proposed call, each marked when its tool would refuse it.
        """
        if not self.proposed:
            return None
        listed = "\n".join(
            f"- {c.name} {c.arguments}"
            + (
                f"  [would be refused: {self.would_refuse[c.id]}]"
                if c.id in self.would_refuse
                else ""
            )
            for c in self.proposed
        )
        return f"Proposed tool calls (autonomy 'suggest', none executed):\n{listed}"

    def _cut_off_message(self, tool_name: str) -> str:
        """What the model and the record are told of arguments cut off by ``max_tokens``."""
        limit = self.agent.spec.model.params.get("max_tokens")
        at = f" ({limit} tokens)" if limit is not None else ""
        return (
            f"the arguments of {tool_name} were cut off: the reply reached max_tokens{at} "
            "before they ended; send shorter arguments (or raise model.params.max_tokens "
            "in the spec)"
        )

    async def _guard(
        self, outcome: _Outcome, tool: Tool, arguments: dict[str, Any], decision: Decision
    ) -> tuple[Decision, str, str | None]:
        """The guards' review (:mod:`runner.guards`): ``(decision, note, refused text)``.

        The decision is only ever tightened (allow → ask or deny, ask → deny). A call that
        already has a decision on record (a resumed run: the guards reviewed it before the
        run paused for that approval) is not shown to them again: it asks, and the recorded
        decision, bound to the arguments' hash, answers it. One still pending is shown again,
        so the person asked still sees why a guard asks.
        """
        call = outcome.call
        recorded = self.resumed.approvals.get(call.id) if self.resumed else None
        if recorded is not None and recorded["status"] in ("approved", "denied"):
            return strictest([decision, Decision.ASK]), "", None
        recent = self.signatures[:-1]  # the current call's signature is the last one
        verdict = await self.guards.review(
            call.id, tool.rule_name, arguments, outcome.risk or Risk.HIGH, decision, recent
        )
        if verdict.decision is not Decision.DENY:
            return verdict.decision, verdict.note, None
        names = ", ".join(answer.guard for answer in verdict.by)
        text = f"error: a guard refused this call of {tool.name}: {verdict.note}; try another way"
        refused = outcome("deny", ToolCallStatus.REFUSED, text, f"denied by guard {names}")
        return verdict.decision, verdict.note, refused

    async def _refusal(
        self,
        outcome: _Outcome,
        tool: Tool,
        arguments: dict[str, Any],
        risk: Risk,
        decision: Decision,
        reason: str,
        in_flight_since: str | None,
        guard_note: str = "",
    ) -> str | None:
        """The recorded text of a call that does not run (proposed, denied), else None.

        ``guard_note``: why a guard sent the call to ask (shown to the approver).
        """
        if decision is Decision.PROPOSE:
            self.proposed.append(outcome.call)
            refused = tool.refusal(arguments)
            if refused is None:
                return outcome(
                    "propose", ToolCallStatus.PROPOSED, "not executed: autonomy is 'suggest'"
                )
            self.would_refuse[outcome.call.id] = refused
            return outcome(
                "propose",
                ToolCallStatus.PROPOSED,
                f"not executed: autonomy is 'suggest'; it would be refused: {refused}",
                f"would be refused: {refused}",
            )
        if decision is Decision.DENY:
            return outcome(
                "deny",
                ToolCallStatus.REFUSED,
                f"error: the policy denies this call of {tool.name}; try another way",
                "denied by a rule",
            )
        if decision is Decision.ASK:
            approval = await self._ask(
                outcome.call, tool.name, arguments, risk, reason, in_flight_since, guard_note
            )
            if not approval.approved:
                text = f"error: a person denied this call of {tool.name}"
                if approval.reason:
                    text += f": {approval.reason}"
                return outcome("ask", ToolCallStatus.REFUSED, text, "denied by approver")
        return None

    async def _execute(
        self,
        outcome: _Outcome,
        tool: Tool,
        arguments: dict[str, Any],
        decision: str,
        warning: str,
    ) -> str:
        """Run an allowed call within its limits; its recorded outcome text."""
        self.budget.check_before_tool_call()
        self.budget.charge_tool_call()
        call = outcome.call
        self.emit(
            ToolStarted(
                self.run_id,
                outcome.step,
                call.id,
                call.name,
                call.arguments,
                decision,
                outcome.risk,
            )
        )
        limits = self.agent.spec.budgets
        timeout = limits.tool_timeout
        remaining = self.budget.remaining_time()
        if remaining is not None:
            timeout = min(timeout, max(remaining, 0.001))
        run_sandbox = sandbox_session.current()
        if run_sandbox is not None and tool.source.startswith("mcp:"):
            run_sandbox.serving(tool.source, call.id)  # its server's connections: this call
        try:
            with sandbox_session.calling(call.id):
                async with asyncio.timeout(timeout):  # no extra task per call (wait_for has)
                    output = await tool.call(arguments)
        except TimeoutError:
            message = f"error: {tool.name} did not finish within {timeout:g} s and was stopped"
            return outcome(decision, ToolCallStatus.ERROR, message + warning, "timeout")
        except ToolError as error:
            return outcome(decision, ToolCallStatus.ERROR, f"error: {error}{warning}", str(error))
        except Exception as error:  # a tool bug: the model hears it, the run goes on
            detail = f"{type(error).__name__}: {error}"
            return outcome(
                decision,
                ToolCallStatus.ERROR,
                f"error: {tool.name} failed: {detail}{warning}",
                detail,
            )
        return outcome(
            decision,
            ToolCallStatus.OK,
            truncate(output, limits.max_tool_output - len(warning)) + warning,
        )

    async def _ask(
        self,
        call: ToolCallRequest,
        tool_name: str,
        arguments: dict[str, Any],
        risk: Risk,
        reason: str,
        in_flight_since: str | None = None,
        guard_note: str = "",
    ) -> Approval:
        """Get a decision for one call.

        From a decision recorded while the run was paused, the run's "approve this tool for
        the rest of the run", or the approver. An approval is bound to the hash of the tool
        name and the exact canonical arguments (``arguments``, as parsed): a decision for
        other arguments, or for what the same words meant before, does not apply.

        A call that was running when the run stopped (``in_flight_since``: when it last
        started, UTC ISO-8601) may have partly happened: only a decision asked for after that
        start applies to it, so an approval given before it ran asks again, always.

        ``guard_note`` (why a guard sent the call to ask) is shown to the approver, and such
        a call always reaches it: "approved for the rest of the run" does not answer a guard.
        """
        note = IN_FLIGHT_NOTE if in_flight_since is not None else guard_note
        # Bound to the canonical arguments (paths resolved, URLs normalised): a decision
        # applies to the target it was given for, whatever the spelling, and to no other
        # (a symlink pointed elsewhere since then asks again).
        digest = arguments_sha256(tool_name, self.redactor.text(json.dumps(arguments)))
        recorded = self.resumed.approvals.get(call.id) if self.resumed else None
        if (
            recorded is not None
            and in_flight_since is not None
            and recorded["created_at"] <= in_flight_since
        ):
            recorded = None  # decided before the interrupted attempt started: ask again
        if recorded is not None and recorded["status"] in ("approved", "denied"):
            if recorded["arguments_sha256"] != digest:
                return Approval(
                    False, "the approval was given for different arguments; it does not apply"
                )
            return Approval(recorded["status"] == "approved", recorded.get("decision_reason") or "")
        if tool_name in self.approved_tools and not note:
            return Approval(True, "approved for the rest of the run")
        self.emit(
            ApprovalRequested(
                self.run_id, call.id, tool_name, call.arguments, digest, risk, reason, note
            )
        )
        request = ApprovalRequest(self.run_id, call.id, tool_name, arguments, risk, reason)
        request.note = note
        request.done = self._progress()
        with self.waiting_for_a_person():
            approval = await self.approver.request(request)
        self.emit(
            ApprovalDecided(
                self.run_id,
                call.id,
                approval.approved,
                approval.reason,
                self.approver.name,
            )
        )
        if approval.approved and approval.for_run:
            self.approved_tools.add(tool_name)
        return approval

    async def _ask_human(self, outcome: _Outcome, tool: AskHuman, arguments: dict[str, Any]) -> str:
        """Ask a person the model's question (``ask_human``); the answer is the result.

        Only a ``deny`` rule refuses it: it never asks for an approval, whatever the
        autonomy level (``suggest`` included: a question proposes no action). It counts
        as a tool call (``max_tool_calls``), charged once it has its answer. A resumed
        run first looks at the question recorded for this call: answered (by ``agentrun
        answer``, the API or the console while the run was paused) → that answer, without
        asking again; timed out, or past its ``expires_at`` → the run ends; still waiting
        → asked again through the approver (the record keeps the first question and its
        deadline: one question per call).

        Raises:
            AnswerTimeout: the question's ``answer_timeout`` passed without an answer.
            BudgetExhausted: ``max_tool_calls`` or ``max_duration`` leaves no room for it.
            RunStop: the approver pauses the run (``WaitingInput``) or ends it.
        """
        call = outcome.call
        decision = self.agent.policy.decide(tool.rule_name, tool.risk, arguments)
        if decision is Decision.DENY:
            return outcome(
                "deny",
                ToolCallStatus.REFUSED,
                f"error: the policy denies this call of {tool.name}; try another way",
                "denied by a rule",
            )
        recorded = self.resumed.questions.get(call.id) if self.resumed else None
        question = Question(
            self.run_id,
            call.id,
            str(arguments["question"]),
            str(arguments.get("context") or ""),
            [str(choice) for choice in arguments.get("choices") or []],
            recorded["expires_at"] if recorded is not None else tool.expires_at(),
        )
        if recorded is not None and recorded["status"] == "answered":
            self.budget.charge_tool_call()
            return outcome("allow", ToolCallStatus.OK, str(recorded["answer"]))
        if recorded is not None and (
            recorded["status"] == "timed_out" or question.seconds_left() == 0.0
        ):
            raise AnswerTimeout(
                f"nobody answered the question of call {call.id} by "
                f"{recorded['expires_at']} (the ask_human tool's answer_timeout)"
            )
        # The same question again and again (unattended: deny answers it alike each time)
        # is a loop like any other call's.
        warning = "" if recorded is not None else self._loop_check(tool.name, arguments)
        self.budget.check_before_tool_call()  # a question counts as a tool call
        if recorded is None:
            self.emit(
                QuestionAsked(
                    self.run_id,
                    call.id,
                    question.question,
                    question.context,
                    list(question.choices),
                    question.expires_at,
                )
            )
        with self.waiting_for_a_person():
            answer = await self.approver.answer(question)
        self.emit(QuestionAnswered(self.run_id, call.id, answer, self.approver.name))
        self.budget.charge_tool_call()
        return outcome("allow", ToolCallStatus.OK, answer + warning)

    def _loop_check(self, name: str, arguments: dict[str, Any]) -> str:
        """Record the call's signature; a warning to append, or raise :class:`LoopDetected`."""
        self.signatures.append(name + " " + json.dumps(arguments, sort_keys=True))
        count = repeats(self.signatures)
        thresholds = self.agent.spec.loop_detection
        if count >= thresholds.stop_after:
            raise LoopDetected(
                f"loop detected: the model repeated the same tool calls {count} times "
                f"(stop_after is {thresholds.stop_after})"
            )
        if count >= thresholds.warn_after:
            return (
                f"\n[agentrun: this call repeats {count} times in a row; the result will "
                "not change. Use what you have, try something different, or give your answer. "
                f"The run stops at {thresholds.stop_after} repeats.]"
            )
        return ""

    def _progress(self) -> str:
        usage = self.budget.usage
        return f"{usage.steps} steps, {usage.tool_calls} tool calls, {usage.tokens} tokens so far"
