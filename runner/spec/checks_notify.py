"""Semantic checks of a spec's ``notify:`` channels (what JSON Schema cannot say), located.

- every ``${NAME}`` in a channel's URL is in the spec's ``env`` list (a secret comes from the
  environment the spec declares, like an MCP server's variables), and is well formed;
- the URL's scheme is a notification service Apprise knows (``json``, ``mailto``,
  ``slack``, ...; Apprise's plugin catalogue is read only for a spec with channels);
- the same URL twice is an error (its events belong in one entry).

The events themselves are checked by the schema (an enum).
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from ..errors import Diagnostic
from .types import AgentSpec
from .yamlpos import Located

#: ``${NAME}`` in a channel URL: an environment variable's name.
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HINT = "see docs/concepts/notifications.md"


def known_schemes() -> frozenset[str]:
    """The URL schemes Apprise knows (``json``, ``mailto``, ``slack``, ...).

    Reads Apprise's plugin catalogue (about a second the first time): for validating.
    """
    import warnings

    with warnings.catch_warnings():  # Apprise 2.2's e-mail plugin imports imghdr (deprecated)
        warnings.filterwarnings("ignore", "'imghdr' is deprecated", DeprecationWarning)
        from apprise.manager_plugins import NotificationManager

        manager: Any = NotificationManager()  # type: ignore[no-untyped-call]
        schemes = manager.schemas()  # loads the plugins
    return frozenset(str(name).lower() for name in schemes)


def url_scheme(url: str) -> str:
    """The scheme of a channel URL (``slack`` of ``slack://...``), lowercase; "" if none."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep and head.replace("+", "").isalnum() else ""


def scheme_problem(url: str, schemes: frozenset[str]) -> tuple[str, str] | None:
    """What is wrong with ``url``'s scheme, and a hint; None when Apprise knows it."""
    found = url_scheme(url)
    if not found:
        return (
            f"the notification channel {url!r} is not a URL",
            "write an Apprise URL such as json://host/path or slack://${SLACK_TOKEN}; " + _HINT,
        )
    if found in schemes:
        return None
    close = difflib.get_close_matches(found, sorted(schemes), n=1)
    return (
        f"{found!r} is not a notification service Apprise knows",
        (f"did you mean {close[0]!r}? " if close else "")
        + "the services: https://github.com/caronc/apprise/wiki",
    )


def notify_checks(spec: AgentSpec, located: Located, file: str) -> list[Diagnostic]:
    """Every problem of the spec's ``notify`` channels, located at the channel's URL."""
    if not spec.notify:
        return []
    out: list[Diagnostic] = []
    allowed = set(spec.env)
    schemes = known_schemes()
    seen: set[str] = set()
    for index, channel in enumerate(spec.notify):
        pos = located.value_pos(("notify", index, "url"))
        for name in dict.fromkeys(PLACEHOLDER.findall(channel.url)):
            if name not in allowed:
                out.append(
                    located.diagnostic(
                        file,
                        pos,
                        f"notification channel {index + 1} uses ${{{name}}}, which is not in "
                        "the spec's 'env' allowlist",
                        f"add {name!r} to 'env' (its value is read when a message is sent)",
                    )
                )
        leftover = PLACEHOLDER.sub("", channel.url)
        if "${" in leftover:
            out.append(
                located.diagnostic(
                    file,
                    pos,
                    f"notification channel {index + 1} has a malformed placeholder in "
                    f"{channel.url!r}",
                    "write ${NAME} with NAME a variable's name (letters, digits, _)",
                )
            )
        problem = scheme_problem(channel.url, schemes)
        if problem is not None:
            out.append(located.diagnostic(file, pos, *problem))
        if channel.url in seen:
            out.append(
                located.diagnostic(
                    file,
                    pos,
                    f"notification channel {channel.url!r} is listed twice",
                    "list its events in one entry",
                )
            )
        seen.add(channel.url)
    return out
