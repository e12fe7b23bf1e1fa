"""Questions to a person (the ``ask_human`` tool): `agentrun questions` and `agentrun answer`.

Both go through :mod:`runner.decisions` (:func:`~runner.decisions.waiting_questions`,
:func:`~runner.decisions.answer`), the operations the API and the console call too.
"""

from __future__ import annotations

import click

from .base import _short, cli


@cli.command()
def questions() -> None:
    """List questions waiting for a person's answer, across runs."""
    from ..decisions import waiting_questions
    from ..store import RunStore

    waiting = waiting_questions(RunStore.default())
    if not waiting:
        click.echo("no questions waiting")
        return
    # Call ids are printed whole: `agentrun answer RUN CALL TEXT` needs them exactly as stored.
    width = max(len("CALL"), *(len(row["call_id"]) for row in waiting))
    click.echo(f"{'RUN':<26}  {'CALL':<{width}}  {'ANSWER BY (UTC)':<19}  QUESTION")
    for row in waiting:
        until = (row["expires_at"] or "-")[:19].replace("T", " ")
        click.echo(
            f"{row['run_id']:<26}  {row['call_id']:<{width}}  {until:<19}  "
            f"{_short(row['question'], 70)}"
        )
        if row["context"]:
            click.echo(f"{'':<28}context: {_short(row['context'], 70)}")
        if row["choices"]:
            click.echo(f"{'':<28}choices: {' | '.join(row['choices'])}")


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.argument("words", metavar="[CALL] TEXT", nargs=-1, required=True)
def answer(run_id: str, words: tuple[str, ...]) -> None:
    """Answer a paused run's question (CALL may be left out when only one waits).

    The answer goes back to the model as the ask_human call's result when the run
    continues: a daemon continues its own runs by itself, a run of `agentrun run` with
    `agentrun resume RUN`. When the question has choices, TEXT must be one of them.
    """
    from ..decisions import answer as record_answer
    from ..errors import UsageError
    from ..store import RunStore
    from .running import _continued_by_a_daemon

    if len(words) > 2:
        raise UsageError(
            f"expected RUN [CALL] TEXT, got {len(words) + 1} arguments; quote an answer of "
            'several words: agentrun answer RUN "the answer"'
        )
    call_id, text = (words[0], words[1]) if len(words) == 2 else (None, words[0])
    store = RunStore.default()
    answered = record_answer(store, run_id, call_id, text, by="cli")
    run = answered.run
    if _continued_by_a_daemon(run.trigger):
        then = "the daemon continues the run"
    else:
        then = f"continue with: agentrun resume {run.id}"
    click.echo(f"answered call {answered.question['call_id']} of run {run.id}; {then}")
