"""The command-line language of ``tools.shell.commands``: patterns, words, what is refused.

The shell tool (:mod:`runner.tools.shell`) and the spec's success checks (a ``command``
check is matched like a shell call, and one that no pattern allows is a spec error) share
these rules, so they live below both. A command line is split into words the way
``shlex.split`` does (quotes group words; nothing is expanded) and the words are matched,
word by word, against the patterns; the raw string is never matched. A pattern is itself
split with ``shlex``; each of its words is an ``fnmatch`` glob for one word of the command
(``*`` in a pattern word also matches ``/``), and a last pattern word that is exactly ``*``
matches any number of further words, none included.

Without an interpreter an unquoted ``;``, ``&``, ``|``, newline, ``<``, ``>``, ``(``, ``)``,
backtick, ``$(``, ``${`` or ``$NAME`` is refused (there is no shell); with one, the simple
commands may be chained with ``;``, ``&&``, ``||``, ``|``, ``&`` and newlines, and every one
must match a pattern on its own. See the shell tool's docstring for the whole story.
"""

from __future__ import annotations

import fnmatch
import shlex

from ..errors import SetupError, ToolError

#: Control operators the interpreter may give meaning to (a newline is shown as ``\n``).
CHAIN_OPERATORS = (";", "&&", "||", "|", "&", "\n")
#: Characters after ``$`` that make a shell expand something.
_EXPANDS_AFTER_DOLLAR = frozenset(
    "({_?$!@*#0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def parse_pattern(pattern: str) -> tuple[str, ...]:
    """The words of one ``commands`` pattern.

    Args:
        pattern: a spec pattern such as ``"git log *"``.

    Returns:
        Its ``shlex`` words; a last word ``*`` means "any further words".

    Raises:
        SetupError: the pattern is empty or its quotes do not balance.
    """
    try:
        words = tuple(shlex.split(pattern))
    except ValueError as error:
        raise SetupError(f"shell command pattern {pattern!r} cannot be parsed: {error}") from None
    if not words:
        raise SetupError("a shell command pattern is empty")
    return words


def matches(words: list[str], pattern: tuple[str, ...]) -> bool:
    """Whether the command ``words`` are allowed by one parsed ``pattern``.

    Each pattern word is an ``fnmatch`` glob (case-sensitive) for the word at the same
    position; the model's words are plain strings, so a ``*`` the model writes matches only
    a pattern glob that accepts a literal ``*``. A last pattern word ``*`` matches zero or
    more further words.

    Args:
        words: the command's words, as parsed.
        pattern: from :func:`parse_pattern`.

    Returns:
        True when every word is accounted for by the pattern.
    """
    open_ended = pattern[-1] == "*"
    fixed = pattern[:-1] if open_ended else pattern
    if len(words) < len(fixed) or (not open_ended and len(words) != len(fixed)):
        return False
    return all(fnmatch.fnmatchcase(word, glob) for word, glob in zip(words, fixed, strict=False))


def split_command_line(line: str, interpreter: bool) -> tuple[list[list[str]], list[str]]:
    """Split ``line`` into simple commands (``shlex`` words) and the operators between them.

    Args:
        line: the model's command line.
        interpreter: whether a shell will run the rebuilt line (operators allowed) or the
            words are executed directly (operators refused).

    Returns:
        ``(commands, operators)``: each command is a non-empty list of words;
        ``operators[i]`` follows ``commands[i]`` (one of :data:`CHAIN_OPERATORS`), so there
        are as many operators as commands, or one fewer when the line does not end with one.

    Raises:
        ToolError: shell syntax that is refused (see the module docstring), unbalanced
            quotes, an empty command, or a NUL byte.
    """
    if "\x00" in line:
        raise ToolError("the command contains a NUL byte")
    texts, operators = _scan(line, interpreter)
    if operators and not interpreter:
        shown = "a newline" if operators[0] == "\n" else repr(operators[0])
        raise ToolError(
            f"there is no shell: the command is run directly, so {shown} cannot chain or pipe "
            "commands; run one command per call (quote the character if an argument needs it)"
        )
    commands: list[list[str]] = []
    for index, text in enumerate(texts):
        try:
            words = shlex.split(text)
        except ValueError as error:
            raise ToolError(f"cannot parse the command: {error} (check the quotes)") from None
        if not words:
            last = index == len(texts) - 1
            if last and index > 0 and operators[-1] in (";", "&", "\n"):
                continue
            raise ToolError("the command line contains an empty command")
        commands.append(words)
    if not commands:
        raise ToolError("the command is empty")
    return commands, operators[: len(commands)]


def _scan(line: str, interpreter: bool) -> tuple[list[str], list[str]]:
    """Cut ``line`` at unquoted control operators, refusing what only a shell would run."""
    texts: list[str] = []
    operators: list[str] = []
    current: list[str] = []
    quote = ""
    index, size = 0, len(line)
    while index < size:
        char = line[index]
        following = line[index + 1 : index + 2]
        if quote == "'":
            current.append(char)
            quote = "" if char == "'" else quote
            index += 1
            continue
        if char == "\\":
            current.append(line[index : index + 2])
            index += 2
            continue
        if quote == '"':
            if char == "`" or (char == "$" and following in _EXPANDS_AFTER_DOLLAR):
                _refuse_expansion(char, following, interpreter)
            quote = "" if char == '"' else quote
            current.append(char)
            index += 1
            continue
        if char in ";&|\n":
            operator = char
            if char in "&|" and following == char:
                operator = char * 2
            elif (char == "|" and following == "&") or (char == ";" and following == ";"):
                raise ToolError(f"{char + following!r} is not allowed in a command")
            texts.append("".join(current))
            operators.append(operator)
            current = []
            index += len(operator)
            continue
        if char in "<>":
            raise ToolError(
                "redirections (< and >) are not allowed; the output is returned to you"
                if interpreter
                else "there is no shell: < and > do not redirect (the command's output is "
                "returned to you); leave them out"
            )
        if char in "()":
            raise ToolError(
                "subshells and grouping with ( ) are not allowed"
                if interpreter
                else "there is no shell: ( and ) have no meaning here; quote them if they "
                "are part of an argument"
            )
        if char == "`" or (char == "$" and following in _EXPANDS_AFTER_DOLLAR):
            _refuse_expansion(char, following, interpreter)
        if char in "'\"":
            quote = char
        current.append(char)
        index += 1
    if quote:
        raise ToolError(f"cannot parse the command: no closing quotation ({quote})")
    texts.append("".join(current))
    return texts, operators


def _refuse_expansion(char: str, following: str, interpreter: bool) -> None:
    if char == "`" or following == "(":
        what = "command substitution ($(...) or backticks)"
        why = "the command inside could not be checked against the allowed commands"
    else:
        what = "variable expansion ($NAME, ${...})"
        why = "write the value itself"
    if interpreter:
        raise ToolError(f"{what} is not allowed: {why}")
    raise ToolError(
        f"there is no shell: {what} is not performed, the text would be passed literally; "
        + ("run that command in its own call" if "substitution" in what else why)
    )


def allowed_commands(
    line: str, patterns: list[tuple[str, ...]], shown: tuple[str, ...], interpreter: bool
) -> tuple[list[list[str]], list[str]]:
    """Split ``line`` (:func:`split_command_line`) and require a pattern for every command.

    Args:
        line: a command line (the model's, or a success check's).
        patterns: the parsed patterns (:func:`parse_pattern`).
        shown: the patterns as written in the spec, for the error message.
        interpreter: whether an interpreter will run the line (operators allowed).

    Returns:
        ``(commands, operators)`` as :func:`split_command_line` returns them.

    Raises:
        ToolError: refused syntax, or a command that matches no pattern.
    """
    commands, operators = split_command_line(line, interpreter)
    for words in commands:
        if not any(matches(words, pattern) for pattern in patterns):
            allowed = ", ".join(repr(p) for p in shown)
            raise ToolError(
                f"command {shlex.join(words)!r} is not allowed; allowed commands: {allowed}"
            )
    return commands, operators
