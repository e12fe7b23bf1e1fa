"""The one ``[...]`` scanner shared by the spec checks and the watch filter.

A module of its own so that ``agentrun validate`` can check a rule's or a watch trigger's
glob without importing the watch machinery.
"""

from __future__ import annotations


def bracket_end(pattern: str, start: int) -> int:
    """Index of the ``]`` closing the ``[`` at ``start``, or -1.

    ``fnmatch``'s rules: a ``]`` right after ``[`` or ``[!`` is a member, not the end.
    """
    close = start + 1
    if close < len(pattern) and pattern[close] == "!":
        close += 1
    if close < len(pattern) and pattern[close] == "]":
        close += 1
    return pattern.find("]", close)
