"""The run loop: model call → policy → tools → results back, until one stop reason.

::

    messages = [instructions, goal]
    loop:
        budget.check_before_model_call(estimate)   # max_steps, max_tokens, max_cost_usd, time
        reply = model.complete(messages, tools)    # retries and fallbacks inside the model
        budget.charge_model_call(reply.usage)
        no tool calls → validate against output.schema (retry with the errors) → completed
        for each tool call:
            unknown tool / bad JSON / bad arguments → refusal sent back as the tool result
            loop detection: warn, then stop with loop_detected
            policy: allow | ask (approver) | deny | propose (suggest)
            budget.check_before_tool_call()         # max_tool_calls, time
            result = tool(arguments) within tool_timeout, cut to max_tool_output
            tool errors → sent back as the tool result, never raised

Every exception is sorted (the habit comes from smolagents and pydantic-ai): errors the
model caused go back to it as tool results; :class:`~runner.errors.RunStop` signals end the
run with their stop reason; anything else is an internal error: stop reason ``error``, the
traceback in the run store, one line on the screen. Every event passes through the
:class:`~runner.redact.Redactor` before any sink sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .budgets import Budget
from .budgets import Usage as BudgetUsage
from .compiler import CompiledAgent
from .errors import BudgetExhausted, RunStop, SetupError, ToolArgumentError, ToolError
from .events import (
    ApprovalDecided,
    ApprovalRequested,
    Event,
    Heartbeat,
    MessageAdded,
    ModelCalled,
    RunFinished,
    RunNotice,
    RunResumed,
    RunStarted,
    StopReason,
    ToolCalled,
    ToolStarted,
)
from .models import Model, ModelReply, ToolCallRequest, Usage, cost_usd
from .policy import Approval, ApprovalRequest, Approver, Decision, UnattendedApprover
from .redact import Redactor
from .store import HEARTBEAT_S, new_run_id

Sink = Callable[[Event], None]
#: Receives ``(run_id, seq, message)``: the unredacted form of a conversation message that
#: redaction changed, kept so a resumed run continues with the model's exact words
#: (:meth:`runner.store.RunStore.seal_message`).
Sealer = Callable[[str, int, dict[str, Any]], None]
#: The signals that cancel a run in ``agentrun run``: stop reason ``cancelled``, resumable.
CANCEL_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes, saying so when it was cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    note = f"\n[output truncated: {len(data)} bytes, showing the first {limit}]"
    return data[: max(limit - len(note.encode()), 0)].decode("utf-8", errors="ignore") + note


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


_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


def parse_json_answer(content: str) -> Any:
    """The JSON value in a final answer (a bare value, or one inside a ```json fence).

    Raises:
        ValueError: when the answer holds no JSON value.
    """
    match = _FENCE.match(content)
    text = match.group(1) if match else content.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"the answer is not JSON ({error.msg} at character {error.pos})") from None


def arguments_sha256(tool: str, arguments: str) -> str:
    """The hash an approval is bound to: the tool name and its exact (canonical) arguments."""
    try:
        canonical = json.dumps(json.loads(arguments), sort_keys=True, separators=(",", ":"))
    except json.JSONDecodeError:
        canonical = arguments
    return hashlib.sha256(f"{tool}\n{canonical}".encode()).hexdigest()


@dataclass
class RunState:
    """Where a paused or interrupted run stopped, rebuilt from the run store.

    Attributes:
        messages: the conversation as the model saw it: the recorded (redacted) messages
            with the sealed, unredacted form put back where redaction changed one.
        step: the last step (model call) made.
        usage: budget usage so far.
        active_s: run time so far in seconds (waits for approval excluded).
        journal: call id → ``{"status", "result", "risk", "decision"}`` of calls that started.
        approvals: call id → the newest approval row (``status``, ``arguments_sha256``, ...).
        signatures: executed calls, for loop detection.
    """

    messages: list[dict[str, Any]]
    step: int
    usage: BudgetUsage
    active_s: float
    journal: dict[str, dict[str, Any]] = field(default_factory=dict)
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)
    signatures: list[str] = field(default_factory=list)


IN_FLIGHT_NOTE = "this call was running when the run was interrupted: it may have partly happened"


class Run:
    """One execution of a compiled agent.

    Args:
        agent: the compiled agent.
        model: the model to call.
        sinks: receive every (redacted) event as it happens (the store, the console).
        approver: answers "ask" decisions; default: the spec's ``unattended`` choice.
        run_id: a given id (scheduled runs derive theirs), else a new ULID.
        trigger: what started the run (``cli``, ``cron``, ...), recorded.
        first_tool_choice: OpenAI ``tool_choice`` for the first model call only (for
            example ``"required"`` or ``{"type": "function", "function": {"name": ...}}``);
            later calls use ``"auto"`` so the model can finish.
        resume: the state of a paused or interrupted run to continue (``run_id`` must be
            that run's id).
        sealer: receives the unredacted form of every message that redaction changed (the
            store keeps it encrypted until the run can no longer be resumed); None to keep
            nothing (a resume then continues with the redacted words).

    ``max_duration`` is enforced here, whatever started the run: a model call or tool call
    in flight when the run's time runs out is cancelled and the run stops with stop reason
    ``max_duration`` (time spent waiting for a person does not count).
    """

    def __init__(
        self,
        agent: CompiledAgent,
        model: Model,
        sinks: list[Sink] | None = None,
        approver: Approver | None = None,
        run_id: str | None = None,
        trigger: str = "cli",
        first_tool_choice: str | dict[str, Any] | None = None,
        resume: RunState | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self.agent = agent
        self.sealer = sealer
        self.resumed = resume
        self.model = model
        self.sinks = sinks or []
        self.approver = approver or UnattendedApprover(agent.spec.unattended)
        self.run_id = run_id or new_run_id()
        self.trigger = trigger
        self.first_tool_choice = first_tool_choice
        self.budget = Budget(
            agent.spec.budgets,
            usage=resume.usage if resume else None,
            already_elapsed=resume.active_s if resume else 0.0,
        )
        spec = agent.spec
        secret_names = [*spec.env, *([spec.model.api_key_env] if spec.model.api_key_env else [])]
        secret_names += [t.webhook.secret_env for t in spec.triggers if t.webhook]
        if spec.tools.http_request is not None:
            secret_names += spec.tools.http_request.headers_env.values()
        for server in spec.tools.mcp.values():
            secret_names += server.headers_env.values()
        self.redactor = Redactor(secret_names)
        self.messages: list[dict[str, Any]] = list(resume.messages) if resume else []
        self.step = resume.step if resume else 0
        self.proposed: list[ToolCallRequest] = []
        self.signatures: list[str] = list(resume.signatures) if resume else []
        self.approved_tools: set[str] = set()
        self.cancel_reason = StopReason.CANCELLED
        self.output_retries = 0
        self.final: str | None = None
        self.result: Any = None
        self._task: asyncio.Task[Any] | None = None
        self._deadline: asyncio.Timeout | None = None

    def cancel(self, reason: StopReason = StopReason.CANCELLED) -> None:
        """End the run from outside with ``reason`` (``cancelled`` or ``interrupted``).

        Safe to call from a signal handler on the run's event loop; a no-op before
        :meth:`execute` starts or after it ends. The run records its stop reason and returns.
        """
        self.cancel_reason = reason
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def emit(self, event: Event) -> None:
        """Send ``event``, redacted, to every sink."""
        clean = self.redactor.event(event)
        for sink in self.sinks:
            sink(clean)

    def add_message(self, message: dict[str, Any]) -> None:
        """Append to the conversation and record it (the state a resume continues from).

        The record is redacted; when that changed the message, its exact form goes to the
        sealer first, so a resume gives the model back its own words.
        """
        self.messages.append(message)
        seq = len(self.messages) - 1
        event = MessageAdded(self.run_id, seq, message)
        clean = self.redactor.event(event)
        if self.sealer is not None and clean.message is not message:
            self.sealer(self.run_id, seq, message)
        for sink in self.sinks:
            sink(clean)

    async def _open_mcp_servers(self, stack: contextlib.AsyncExitStack) -> None:
        """Start the spec's MCP servers; their allowed tools join the registry for this run.

        Raises:
            SetupError: a server that does not start (named, with its stderr tail).
        """
        from dataclasses import replace

        from .tools import ToolRegistry
        from .tools.mcp import open_mcp_tools

        tools, warnings = await open_mcp_tools(self.agent.spec, stack)
        for warning in warnings:
            self.emit(RunNotice(self.run_id, self.agent.spec.name, warning))
        self.agent = replace(self.agent, tools=ToolRegistry([*self.agent.tools, *tools]))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            self.emit(Heartbeat(self.run_id, self.budget.elapsed()))

    async def execute(self) -> RunFinished:
        """Run to a stop reason; the :class:`RunFinished` event (also sent to the sinks)."""
        spec = self.agent.spec
        started = time.monotonic()
        if self.resumed is None:
            self.emit(
                RunStarted(
                    run_id=self.run_id,
                    agent=spec.name,
                    model=spec.model.id,
                    spec_path=str(spec.path),
                    spec_sha256=spec.source_sha256,
                    inputs=self.agent.inputs,
                    goal=self.agent.goal,
                    trigger=self.trigger,
                )
            )
            if self.agent.instructions:
                self.add_message({"role": "system", "content": self.agent.instructions})
            self.add_message({"role": "user", "content": self.agent.goal})
        else:
            self.emit(RunResumed(self.run_id))
        self._task = asyncio.current_task()
        heartbeat = asyncio.create_task(self._heartbeat())
        servers = contextlib.AsyncExitStack()
        stop, message, trace = StopReason.ERROR, "", None
        try:
            prepare = getattr(self.model, "prepare", None)
            if prepare is not None:  # import litellm, start a local model: errors come first
                if getattr(self.model, "prepare_is_quick", False):
                    prepare()
                else:
                    await asyncio.to_thread(prepare)
            if spec.tools.mcp:
                await self._open_mcp_servers(servers)
            stop = await self._loop_within_max_duration()
        except SetupError as error:
            stop, message = StopReason.ERROR, str(error)
        except RunStop as signal:
            stop, message = StopReason(signal.stop_reason), str(signal)
        except asyncio.CancelledError:
            stop = self.cancel_reason
            what = "interrupted" if stop is StopReason.INTERRUPTED else "cancelled"
            message = f"the run was {what} (continue it with: agentrun resume {self.run_id})"
        except Exception as error:  # an internal error: recorded, never shown as a traceback
            stop, message = StopReason.ERROR, f"internal error: {type(error).__name__}: {error}"
            trace = traceback.format_exc()
        finally:
            self._task = None
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await servers.aclose()  # MCP servers stop on every exit path
        self.emit(Heartbeat(self.run_id, self.budget.elapsed()))
        usage = self.budget.usage
        finished = RunFinished(
            run_id=self.run_id,
            stop_reason=stop,
            final=self.final,
            steps=usage.steps,
            tool_calls=usage.tool_calls,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=usage.cost_usd if usage.cost_known else None,
            duration_s=time.monotonic() - started,
            message=message,
            traceback=trace,
            result=self.result,
        )
        self.emit(finished)
        return self.redactor.event(finished)

    def _pending_calls(self) -> tuple[list[ToolCallRequest], str]:
        """Tool calls of the last assistant message that have no result yet (a resume)."""
        answered = {m.get("tool_call_id") for m in self.messages if m.get("role") == "tool"}
        for message in reversed(self.messages):
            if message.get("role") == "assistant":
                calls = [
                    ToolCallRequest(
                        c["id"], c["function"]["name"], c["function"].get("arguments") or ""
                    )
                    for c in message.get("tool_calls") or []
                ]
                pending = [c for c in calls if c.id not in answered]
                return pending, str(message.get("content") or "")
            if message.get("role") == "user" and self.step == 0:
                break
        return [], ""

    async def _loop_within_max_duration(self) -> StopReason:
        """:meth:`_loop` under ``max_duration``: whatever is in flight when time runs out stops.

        The budget refuses calls that start after the limit; this deadline also ends a model
        call or tool call that hangs past it. It is lifted while a person is asked
        (:meth:`_waiting_for_a_person`), as the budget's clock is.

        Raises:
            BudgetExhausted: ``max_duration``, when the deadline passed.
        """
        try:
            async with asyncio.timeout(None) as deadline:
                self._deadline = deadline
                self._arm_deadline()
                return await self._loop()
        except TimeoutError:
            if not deadline.expired():
                raise
            limit = self.agent.spec.budgets.max_duration or 0.0
            raise BudgetExhausted("max_duration", self.budget.elapsed(), limit) from None
        finally:
            self._deadline = None

    def _arm_deadline(self) -> None:
        remaining = self.budget.remaining_time()
        if self._deadline is not None and remaining is not None:
            self._deadline.reschedule(asyncio.get_running_loop().time() + max(remaining, 0.0))

    @contextlib.contextmanager
    def _waiting_for_a_person(self) -> Iterator[None]:
        """Stop the run's clock and lift its deadline while a person decides."""
        self.budget.pause()
        if self._deadline is not None:
            self._deadline.reschedule(None)
        try:
            yield
        finally:
            self.budget.resume()
            self._arm_deadline()

    async def _loop(self) -> StopReason:
        tools = self.agent.tools.openai_schemas()
        if self.resumed is not None:
            pending, reason = self._pending_calls()
            if pending:
                done = await self._run_tool_calls(pending, reason)
                if done is not None:
                    return done
        while True:
            self._check_budget_before_model_call(tools)
            self.step += 1
            reply = await self._call_model(tools)
            self.add_message(reply.as_message())
            if not reply.tool_calls:
                done = self._final_answer(reply.content or "")
                if done is not None:
                    return done
                continue
            done = await self._run_tool_calls(reply.tool_calls, reply.content or "")
            if done is not None:
                return done

    async def _run_tool_calls(self, calls: list[ToolCallRequest], reason: str) -> StopReason | None:
        """Execute one reply's tool calls in order; a stop reason when the run should end."""
        for call in calls:
            result = await self._tool_call(call, reason)
            self.add_message({"role": "tool", "tool_call_id": call.id, "content": result})
        if self.proposed:
            listed = "\n".join(f"- {c.name} {c.arguments}" for c in self.proposed)
            self.final = f"Proposed tool calls (autonomy 'suggest', none executed):\n{listed}"
            return StopReason.PROPOSED
        notes = self.budget.warnings()
        if notes:
            self.add_message({"role": "user", "content": "Budget note: " + "; ".join(notes) + "."})
        return None

    def _check_budget_before_model_call(self, tools: list[dict[str, Any]]) -> None:
        """Estimate the next call (prompt tokens + its maximum output) and check the budget."""
        limits = self.agent.spec.budgets
        tokens, cost = 0, 0.0
        if limits.max_tokens is not None or limits.max_cost_usd is not None:
            counter = getattr(self.model, "count_prompt_tokens", None)
            prompt = int(counter(self.messages, tools)) if counter else 0
            output = int(getattr(self.model, "max_output_tokens", 0) or 0)
            tokens = prompt + output
            # The dearest of the model and its fallbacks: whichever answers, the cap holds.
            pricing = getattr(self.model, "estimate_pricing", None) or getattr(
                self.model, "pricing", None
            )
            cost = cost_usd(pricing, Usage(prompt, output)) or 0.0
        self.budget.check_before_model_call(tokens, cost)

    def _final_answer(self, content: str) -> StopReason | None:
        """Accept the final answer, or ask for a corrected one (``output.schema``)."""
        self.final = content
        output = self.agent.spec.output
        if output.schema is None:
            return StopReason.COMPLETED
        from jsonschema import Draft202012Validator

        try:
            value = parse_json_answer(content)
            problems = [
                (f"{'/'.join(map(str, e.absolute_path))}: " if e.absolute_path else "") + e.message
                for e in Draft202012Validator(output.schema).iter_errors(value)
            ]
        except ValueError as error:
            problems = [str(error)]
        if not problems:
            self.result = value
            return StopReason.COMPLETED
        if self.output_retries >= output.max_retries:
            raise _output_invalid(problems)
        self.output_retries += 1
        self.add_message(
            {
                "role": "user",
                "content": "Your answer must be a single JSON value that satisfies this JSON "
                f"Schema:\n{json.dumps(output.schema)}\nProblems: {'; '.join(problems[:5])}. "
                "Answer again with only the corrected JSON.",
            }
        )
        return None

    async def _call_model(self, tools: list[dict[str, Any]]) -> ModelReply:
        started = time.monotonic()
        choice = self.first_tool_choice if self.step == 1 and tools else None
        reply = await self.model.complete(self.messages, tools, choice)
        self.budget.charge_model_call(
            reply.usage.input_tokens, reply.usage.output_tokens, reply.cost_usd
        )
        self.emit(
            ModelCalled(
                run_id=self.run_id,
                step=self.step,
                model=reply.model or self.model.name,
                input_tokens=reply.usage.input_tokens,
                output_tokens=reply.usage.output_tokens,
                cost_usd=reply.cost_usd,
                duration_s=time.monotonic() - started,
                content=reply.content,
                tool_calls=[
                    {"id": c.id, "name": c.name, "arguments": c.arguments} for c in reply.tool_calls
                ],
                error="; ".join(reply.failed_attempts) or None,
            )
        )
        return reply

    def _loop_check(self, name: str, arguments: dict[str, Any]) -> str:
        """Record the call's signature; a warning to append, or raise ``loop_detected``."""
        self.signatures.append(name + " " + json.dumps(arguments, sort_keys=True))
        count = repeats(self.signatures)
        thresholds = self.agent.spec.loop_detection
        if count >= thresholds.stop_after:
            stop = RunStop(
                f"loop detected: the model repeated the same tool calls {count} times "
                f"(stop_after is {thresholds.stop_after})"
            )
            stop.stop_reason = StopReason.LOOP_DETECTED
            raise stop
        if count >= thresholds.warn_after:
            return (
                f"\n[agentrun: this call repeats {count} times in a row; the result will "
                "not change. Use what you have, try something different, or give your answer. "
                f"The run stops at {thresholds.stop_after} repeats.]"
            )
        return ""

    async def _ask(
        self,
        call: ToolCallRequest,
        tool_name: str,
        arguments: dict[str, Any],
        risk: str,
        reason: str,
        in_flight_since: str | None = None,
    ) -> Approval:
        """Get a decision for one call.

        From a decision recorded while the run was paused, the run's "approve this tool for
        the rest of the run", or the approver. An approval is bound to the hash of the tool
        name and the exact canonical arguments (``arguments``, as parsed): a decision for
        other arguments, or for what the same words meant before, does not apply.

        A call that was running when the run stopped (``in_flight_since``: when it last
        started, UTC ISO-8601) may have partly happened: only a decision asked for after that
        start applies to it, so an approval given before it ran asks again, always.
        """
        note = IN_FLIGHT_NOTE if in_flight_since is not None else ""
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
        with self._waiting_for_a_person():
            approval = await self.approver.request(request)
        self.emit(
            ApprovalDecided(
                self.run_id,
                call.id,
                approval.approved,
                approval.reason,
                getattr(self.approver, "name", "approver"),
            )
        )
        if approval.approved and approval.for_run:
            self.approved_tools.add(tool_name)
        return approval

    def _progress(self) -> str:
        usage = self.budget.usage
        return f"{usage.steps} steps, {usage.tool_calls} tool calls, {usage.tokens} tokens so far"

    async def _tool_call(self, call: ToolCallRequest, reason: str) -> str:
        """Decide, execute and record one tool call; the text sent back to the model."""
        started = time.monotonic()
        registry = self.agent.tools
        tool = registry.get(call.name)
        risk = tool.risk if tool else ""
        decision_text = "allow"

        def record(decision: str, status: str, result: str, error: str | None = None) -> str:
            result = truncate(result, self.agent.spec.budgets.max_tool_output)
            self.emit(
                ToolCalled(
                    run_id=self.run_id,
                    step=self.step,
                    call_id=call.id,
                    tool=call.name,
                    arguments=call.arguments,
                    decision=decision,
                    status=status,
                    result=result,
                    duration_s=time.monotonic() - started,
                    risk=risk,
                    error=error,
                )
            )
            return result

        # A resumed run never repeats a call that completed: its recorded result is reused.
        journal = self.resumed.journal.get(call.id) if self.resumed else None
        if journal is not None and journal["status"] != "running":
            return str(journal["result"])
        in_flight = journal is not None
        in_flight_since = str(journal["created_at"]) if journal is not None else None

        if tool is None:
            available = ", ".join(registry.names()) or "none"
            return record(
                "deny",
                "refused",
                f"error: there is no tool named {call.name!r}; available tools: {available}",
                "unknown tool",
            )
        try:
            arguments = registry.parse_arguments(tool, call.arguments)
        except ToolArgumentError as error:
            return record("allow", "refused", f"error: {error}", str(error))
        warning = "" if in_flight else self._loop_check(tool.name, arguments)
        risk_for = getattr(tool, "risk_for", None)
        risk = str(risk_for(arguments)) if risk_for else tool.risk

        # Rules name MCP tools as SERVER.TOOL; the model sees SERVER__TOOL.
        rule_name = getattr(tool, "qualified_name", tool.name)
        decision = self.agent.policy.decide(rule_name, risk, arguments)
        if in_flight and risk != "low" and decision is not Decision.DENY:
            # It may have partly happened: only a person may run it again.
            decision = Decision.ASK
        else:
            in_flight_since = None
        decision_text = str(decision)
        if decision is Decision.PROPOSE:
            self.proposed.append(call)
            return record("propose", "proposed", "not executed: autonomy is 'suggest'")
        if decision is Decision.DENY:
            return record(
                "deny",
                "refused",
                f"error: the policy denies this call of {tool.name}; try another way",
                "denied by a rule",
            )
        if decision is Decision.ASK:
            approval = await self._ask(call, tool.name, arguments, risk, reason, in_flight_since)
            if not approval.approved:
                text = f"error: a person denied this call of {tool.name}"
                if approval.reason:
                    text += f": {approval.reason}"
                return record("ask", "refused", text, "denied by approver")

        self.budget.check_before_tool_call()
        self.budget.charge_tool_call()
        self.emit(
            ToolStarted(
                self.run_id, self.step, call.id, call.name, call.arguments, decision_text, risk
            )
        )
        limits = self.agent.spec.budgets
        timeout = limits.tool_timeout
        remaining = self.budget.remaining_time()
        if remaining is not None:
            timeout = min(timeout, max(remaining, 0.001))
        try:
            async with asyncio.timeout(timeout):  # no extra task per call, unlike wait_for
                output = await tool.call(arguments)
        except TimeoutError:
            message = f"error: {tool.name} did not finish within {timeout:g} s and was stopped"
            return record(decision_text, "error", message + warning, "timeout")
        except ToolError as error:
            return record(decision_text, "error", f"error: {error}{warning}", str(error))
        except Exception as error:  # a tool bug: the model hears it, the run goes on
            detail = f"{type(error).__name__}: {error}"
            return record(
                decision_text, "error", f"error: {tool.name} failed: {detail}{warning}", detail
            )
        return record(
            decision_text, "ok", truncate(output, limits.max_tool_output - len(warning)) + warning
        )


def _output_invalid(problems: list[str]) -> RunStop:
    stop = RunStop("the final answer does not satisfy output.schema: " + "; ".join(problems[:3]))
    stop.stop_reason = StopReason.OUTPUT_INVALID
    return stop


async def run_agent(
    agent: CompiledAgent,
    model: Model | None = None,
    store: Any = None,
    sinks: list[Sink] | None = None,
    approver: Approver | None = None,
    trigger: str = "cli",
    first_tool_choice: str | dict[str, Any] | None = None,
    run_id: str | None = None,
    resume: RunState | None = None,
    cancel_on: tuple[signal.Signals, ...] = (),
) -> RunFinished:
    """Run ``agent`` to a stop reason, recording every event in ``store`` when given.

    Args:
        agent: from :func:`runner.compiler.compile_agent`.
        model: default: the spec's model through litellm.
        store: a :class:`runner.store.RunStore`, or None to record nothing.
        sinks: more event receivers (the console printer).
        approver: answers "ask"; default: the spec's ``unattended`` choice.
        trigger: what started the run, recorded.
        first_tool_choice: ``tool_choice`` of the first model call (see :class:`Run`).
        run_id: the run's id (given for scheduled runs and resumes), else a new ULID.
        resume: continue a paused or interrupted run from this state
            (:func:`restore_state`).
        cancel_on: signals that cancel the run while it executes (``agentrun run`` passes
            :data:`CANCEL_SIGNALS`): it stops with stop reason ``cancelled``, recorded and
            resumable. Only from the main thread (the loop's signal handlers).

    A model that cannot be reached at all (a missing extra or key variable) ends the run
    with stop reason ``error`` and the reason as its message, recorded like any other.
    """
    if model is None:
        from .models import LiteLLMModel

        model = LiteLLMModel(agent.spec.model)
    all_sinks: list[Sink] = []
    if store is not None:
        all_sinks.append(store.record)
    all_sinks.extend(sinks or [])
    run = Run(
        agent,
        model,
        all_sinks,
        approver,
        run_id=run_id,
        trigger=trigger,
        first_tool_choice=first_tool_choice,
        resume=resume,
        sealer=store.seal_message if store is not None else None,
    )
    loop = asyncio.get_running_loop()
    for signum in cancel_on:
        loop.add_signal_handler(signum, run.cancel, StopReason.CANCELLED)
    try:
        return await run.execute()
    finally:
        for signum in cancel_on:
            loop.remove_signal_handler(signum)


def restore_state(store: Any, run_id: str) -> RunState:
    """Rebuild where run ``run_id`` stopped from the run store (see :class:`RunState`).

    Usage is summed from the recorded model calls and executed tool calls, so a resumed
    run continues with its budgets exactly as they were. The conversation is the recorded
    one with the sealed (unredacted) messages put back: pending calls resume with exactly
    the arguments the model sent.

    Raises:
        StoreError: a sealed message cannot be opened (its key is missing or was replaced).
    """
    model_calls = store.model_calls(run_id)
    tool_rows = store.tool_calls(run_id)
    executed = [t for t in tool_rows if t["status"] in ("ok", "error", "running")]
    usage = BudgetUsage(
        steps=len(model_calls),
        tool_calls=len(executed),
        input_tokens=sum(c["input_tokens"] for c in model_calls),
        output_tokens=sum(c["output_tokens"] for c in model_calls),
        cost_usd=sum(c["cost_usd"] or 0.0 for c in model_calls),
        cost_known=all(c["cost_usd"] is not None for c in model_calls),
    )
    journal: dict[str, dict[str, Any]] = {}
    for row in tool_rows:
        journal[row["call_id"]] = row
    approvals: dict[str, dict[str, Any]] = {}
    for row in store.approvals(run_id, status=None):
        approvals[row["call_id"]] = row
    signatures = []
    for row in executed:
        try:
            canonical = json.dumps(json.loads(row["arguments"] or "{}"), sort_keys=True)
        except json.JSONDecodeError:
            canonical = row["arguments"]
        signatures.append(f"{row['tool']} {canonical}")
    messages = store.messages(run_id)
    for seq, message in store.sealed_messages(run_id).items():
        if seq < len(messages):
            messages[seq] = message
    return RunState(
        messages=messages,
        step=max((c["step"] for c in model_calls), default=0),
        usage=usage,
        active_s=store.active_seconds(run_id),
        journal=journal,
        approvals=approvals,
        signatures=signatures,
    )
