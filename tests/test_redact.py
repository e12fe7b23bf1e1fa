"""Redaction: every credential shape masked, and text without an anchor never searched."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.redact import ANCHORS, CREDENTIALS, MASK, Redactor

SAMPLES = [
    "sk-proj-" + "a" * 20,
    "ghp_" + "b" * 36,
    "github_pat_" + "c" * 45,
    "AKIA" + "D" * 16,
    "xoxb-" + "1" * 12,
    "eyJ" + "a" * 10 + "." + "b" * 10 + "." + "c" * 10,
    "BeArEr " + "t" * 20,
    "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----",
]


def test_each_credential_shape_has_a_sample_and_its_anchors_are_in_every_sample() -> None:
    assert len(SAMPLES) == len(CREDENTIALS)
    for (pattern, anchors), sample in zip(CREDENTIALS, SAMPLES, strict=True):
        assert re.fullmatch(pattern, sample), pattern
        assert not anchors or any(anchor in sample for anchor in anchors), pattern


@pytest.mark.parametrize("sample", SAMPLES)
def test_each_shape_is_masked_inside_text(sample: str) -> None:
    redactor = Redactor()
    assert redactor.text(f"before {sample} after") == f"before {MASK} after"


def test_a_secret_value_is_an_anchor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOUSE_TOKEN", "plain-words-secret")
    redactor = Redactor(["HOUSE_TOKEN"])
    assert redactor.may_hold_secret("x plain-words-secret y")
    assert redactor.text("x plain-words-secret y") == f"x {MASK} y"


def test_text_without_an_anchor_is_not_searched(monkeypatch: pytest.MonkeyPatch) -> None:
    redactor = Redactor()
    searched: list[str] = []

    class Spy:
        def __init__(self, pattern: re.Pattern[str]) -> None:
            self.pattern = pattern

        def search(self, value: str) -> re.Match[str] | None:
            searched.append(value)
            return self.pattern.search(value)

        def sub(self, mask: str, value: str) -> str:
            return self.pattern.sub(mask, value)

    redactor._pattern = Spy(redactor._pattern)  # type: ignore[assignment]
    clean = "a long tool result with nothing secret in it\n" * 1000
    assert redactor.text(clean) is clean and searched == []
    assert redactor.text(clean + "sk-but-short") and len(searched) == 1


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("skghpouAIKSxbeyJBEGINRarv-_. \n0123456789abcdefXYZ")),
        max_size=80,
    )
)
def test_the_anchor_check_never_skips_a_match(text: str) -> None:
    """Sound: whenever the full pattern finds a credential, the anchor check said maybe."""
    redactor = Redactor(extra_values=["secret-value-1"])
    for candidate in (text, text + "secret-value-1", *(text + s for s in SAMPLES)):
        if redactor._pattern.search(candidate):
            assert redactor.may_hold_secret(candidate)
    assert all(anchor for anchor in ANCHORS)
