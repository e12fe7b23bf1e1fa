"""Webhook triggers: GitHub-compatible signatures, replay protection, payload -> inputs."""

from __future__ import annotations

import hashlib
import hmac
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.triggers import PayloadPathError, ReplayGuard, inputs_from_payload, verify_signature

# GitHub's documented test vector ("Validating webhook deliveries")
GITHUB_SECRET = b"It's a Secret to Everybody"
GITHUB_PAYLOAD = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_github_test_vector() -> None:
    assert verify_signature(GITHUB_SECRET, GITHUB_PAYLOAD, GITHUB_SIGNATURE)


@pytest.mark.parametrize(
    ("secret", "body", "header"),
    [
        (b"It's a secret to everybody", GITHUB_PAYLOAD, GITHUB_SIGNATURE),  # wrong secret
        (GITHUB_SECRET, b"Hello, World?", GITHUB_SIGNATURE),  # tampered body
        (GITHUB_SECRET, GITHUB_PAYLOAD + b"\n", GITHUB_SIGNATURE),  # re-encoded body
        (GITHUB_SECRET, GITHUB_PAYLOAD, None),  # no header
        (GITHUB_SECRET, GITHUB_PAYLOAD, ""),
        (GITHUB_SECRET, GITHUB_PAYLOAD, GITHUB_SIGNATURE.removeprefix("sha256=")),  # no scheme
        (GITHUB_SECRET, GITHUB_PAYLOAD, GITHUB_SIGNATURE.replace("sha256", "sha1")),
        (GITHUB_SECRET, GITHUB_PAYLOAD, GITHUB_SIGNATURE[:-2]),  # truncated
        (GITHUB_SECRET, GITHUB_PAYLOAD, GITHUB_SIGNATURE + "00"),
        (GITHUB_SECRET, GITHUB_PAYLOAD, GITHUB_SIGNATURE[:-1] + "é"),  # not ASCII
        (b"", GITHUB_PAYLOAD, "sha256=" + hmac.new(b"", GITHUB_PAYLOAD, "sha256").hexdigest()),
    ],
)
def test_bad_signatures_are_rejected(secret: bytes, body: bytes, header: str | None) -> None:
    assert not verify_signature(secret, body, header)


def test_signature_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert verify_signature(GITHUB_SECRET, GITHUB_PAYLOAD, GITHUB_SIGNATURE)
    assert not verify_signature(GITHUB_SECRET, b"x", GITHUB_SIGNATURE)
    assert len(calls) == 2


@given(secret=st.binary(min_size=1, max_size=64), body=st.binary(max_size=512), flip=st.integers(0))
def test_signatures_round_trip_and_any_changed_byte_fails(
    secret: bytes, body: bytes, flip: int
) -> None:
    header = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    assert verify_signature(secret, body, header)
    assert verify_signature(secret, body, header.upper().replace("SHA256=", "sha256="))
    if body:
        index = flip % len(body)
        changed = body[:index] + bytes([body[index] ^ 1]) + body[index + 1 :]
        assert not verify_signature(secret, changed, header)


# -- replays -----------------------------------------------------------------------------------


def test_replay_guard_rejects_a_delivery_seen_before() -> None:
    stored: list[str] = []
    guard = ReplayGuard(capacity=3, seen=["old-1"], on_new=stored.append)
    assert not guard.accept("old-1")  # loaded from the store
    assert guard.accept("d-1")
    assert not guard.accept("d-1")
    assert not guard.accept(None) and not guard.accept("")
    assert guard.accept("d-2") and guard.accept("d-3")
    assert stored == ["d-1", "d-2", "d-3"]
    # bounded: the oldest id is forgotten first
    assert len(guard) == 3 and "old-1" not in guard and "d-1" in guard
    assert guard.accept("d-4") and "d-1" not in guard


def test_replay_guard_does_not_remember_what_it_could_not_store() -> None:
    def broken(_: str) -> None:
        raise OSError("disk full")

    guard = ReplayGuard(on_new=broken)
    with pytest.raises(OSError, match="disk full"):
        guard.accept("d-1")
    assert "d-1" not in guard
    with pytest.raises(ValueError, match="capacity"):
        ReplayGuard(capacity=0)


def test_replay_guard_accepts_a_delivery_once_across_threads() -> None:
    guard = ReplayGuard()
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def deliver() -> None:
        barrier.wait()
        results.append(guard.accept("same-delivery"))

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


# -- inputs from the payload -------------------------------------------------------------------

ISSUE_EVENT = {
    "action": "opened",
    "issue": {
        "number": 42,
        "title": "Crash on start",
        "labels": [{"name": "bug"}, {"name": "p1"}],
        "user": {"login": "octocat"},
        "body": None,
    },
    "repository": {"full_name": "octo/agentrun"},
}


def test_inputs_from_payload_walks_keys_and_indexes() -> None:
    mapping = {
        "title": "issue.title",
        "number": "issue.number",
        "first_label": "issue.labels.0.name",
        "second_label": "issue.labels.1.name",
        "repo": "repository.full_name",
        "user": "issue.user",
        "body": "issue.body",
    }
    assert inputs_from_payload(mapping, ISSUE_EVENT) == {
        "title": "Crash on start",
        "number": 42,
        "first_label": "bug",
        "second_label": "p1",
        "repo": "octo/agentrun",
        "user": {"login": "octocat"},
        "body": None,
    }
    assert inputs_from_payload({}, ISSUE_EVENT) == {}
    assert inputs_from_payload({"x": "0.a"}, [{"a": 1}]) == {"x": 1}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "issue.titel",
            "payload has no 'issue.titel': issue has no key 'titel'; did you mean 'title'?",
        ),
        (
            "pull_request.title",
            "the payload has no key 'pull_request' (it has: action, issue, repository)",
        ),
        ("issue.labels.2.name", "issue.labels has 2 item(s), so there is no index 2"),
        ("issue.labels.first.name", "issue.labels is a list; 'first' must be an index like 0"),
        ("issue.labels.-1.name", "issue.labels is a list; '-1' must be an index like 0"),
        ("issue.title.length", "issue.title is str 'Crash on start', not an object or a list"),
        ("issue.body.text", "issue.body is NoneType None, not an object or a list"),
        ("issue..title", "'issue..title' is not a dotted path"),
        ("", "'' is not a dotted path"),
    ],
)
def test_a_missing_path_is_a_clear_error(path: str, message: str) -> None:
    with pytest.raises(PayloadPathError) as caught:
        inputs_from_payload({"x": path}, ISSUE_EVENT)
    assert str(caught.value).startswith("webhook input 'x': ")
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)
