"""The ``agentrun`` command line: argument parsing and error → exit-code mapping only.

Exit codes (the README has the table): 0 completed, 1 error, 2 invalid spec or usage,
3 budget exhausted, 4 denied, 5 waiting for approval, 6 timed out or cancelled. Library
errors are shown as one line; set ``AGENTRUN_DEBUG=1`` to see the traceback of an
unexpected one. Heavy modules (litellm, the loop, the store) are imported inside the
commands that need them, so ``agentrun --help`` and ``agentrun validate`` stay fast.
(The exception → exit code mapping follows click's ``ClickException``/``UsageError``.)
"""

from __future__ import annotations

import gc
import os
import sys
from typing import NoReturn

import click

from ..errors import AgentrunError, SetupError, SpecError, StopReason, StoreError, UsageError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BUDGET = 3
EXIT_DENIED = 4
EXIT_WAITING = 5
EXIT_TIMEOUT = 6
EXIT_CHECKS = 7

#: Stop reason → exit code (keyed by :class:`StopReason`, which equals its word, so a stop
#: reason read back from the run store as text finds its code too).
STOP_EXIT_CODES: dict[str, int] = {
    StopReason.COMPLETED: EXIT_OK,
    StopReason.PROPOSED: EXIT_OK,
    StopReason.ERROR: EXIT_ERROR,
    StopReason.MODEL_ERROR: EXIT_ERROR,
    StopReason.OUTPUT_INVALID: EXIT_ERROR,
    StopReason.MAX_STEPS: EXIT_BUDGET,
    StopReason.MAX_TOOL_CALLS: EXIT_BUDGET,
    StopReason.MAX_TOKENS: EXIT_BUDGET,
    StopReason.MAX_COST_USD: EXIT_BUDGET,
    StopReason.LOOP_DETECTED: EXIT_BUDGET,
    StopReason.DENIED: EXIT_DENIED,
    StopReason.APPROVAL_REQUIRED: EXIT_DENIED,
    StopReason.WAITING_APPROVAL: EXIT_WAITING,
    StopReason.WAITING_INPUT: EXIT_WAITING,
    StopReason.ESCALATED: EXIT_WAITING,
    StopReason.CHECKS_FAILED: EXIT_CHECKS,
    StopReason.ANSWER_TIMEOUT: EXIT_TIMEOUT,
    StopReason.MAX_DURATION: EXIT_TIMEOUT,
    StopReason.CANCELLED: EXIT_TIMEOUT,
    StopReason.INTERRUPTED: EXIT_TIMEOUT,
}


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"agentrun: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="agentrun", prog_name="agentrun")
def cli() -> None:
    """Run declarative YAML agents inside the rails their spec sets.

    A spec names the goal, the model, the tools and their limits. `agentrun run SPEC` runs
    it once; `agentrun validate` checks specs like a compiler.
    """


def _short(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _count(number: int, noun: str) -> str:
    """``1 step``, ``2 steps``, ``1 tool call``: a count with its noun, plural when not 1."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


# ---------------------------------------------------------------------------------------------
# entry point


def _fast_exit() -> None:
    """Spare the interpreter's teardown a walk over every object a heavy import made.

    Once litellm (or the openai SDK, or the local model's runtime) is imported (litellm
    alone makes about 300,000 objects), the garbage collector's passes at exit
    took 1.3-1.4 s after the run was recorded (issue 19); moving everything to the permanent
    generation first (:func:`gc.freeze`) takes exit to about 0.06 s. Output is flushed and
    ``atexit`` handlers still run.
    """
    if any(name in sys.modules for name in ("litellm", "openai", "cyllama", "llama_cpp")):
        gc.freeze()


def main(argv: list[str] | None = None) -> None:
    """The console script: run the CLI, mapping every error to a message and an exit code."""
    try:
        _run(argv)
    finally:
        _fast_exit()


def _run(argv: list[str] | None) -> None:
    try:
        cli.main(args=argv, prog_name="agentrun", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", EXIT_TIMEOUT)
    except click.ClickException as error:
        error.show()
        sys.exit(EXIT_USAGE if isinstance(error, click.UsageError) else error.exit_code)
    except SpecError as error:
        for diagnostic in error.diagnostics:
            click.echo(diagnostic.render(), err=True)
        sys.exit(EXIT_USAGE)
    except UsageError as error:
        _fail(str(error), EXIT_USAGE)
    except (SetupError, StoreError, AgentrunError) as error:
        _fail(str(error), EXIT_ERROR)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_TIMEOUT)
    except Exception as error:
        if os.environ.get("AGENTRUN_DEBUG"):
            raise
        _fail(
            f"unexpected error: {type(error).__name__}: {error} "
            "(set AGENTRUN_DEBUG=1 for the traceback)",
            EXIT_ERROR,
        )
    sys.exit(EXIT_OK)
