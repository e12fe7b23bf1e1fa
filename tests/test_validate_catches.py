"""`agentrun validate` catches what would fail later (issue 18).

Two files with one agent name, a provider or local model that does not exist, settings the
local model ignores: errors at file:line:column. Key variables the model needs and the
shell lacks: warnings. The single-file cases are also in ``tests/spec_corpus/model_*.yaml``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.spec import check_spec
from tests.helpers import invoke, write_spec


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment without any provider key (every ``*_API_KEY``, ``*_AUTH_TOKEN``)."""
    for name in list(os.environ):
        if name.endswith(("_API_KEY", "_AUTH_TOKEN")):
            monkeypatch.delenv(name)


def spec_text(name: str, model: str) -> str:
    return f"""
    version: 1
    name: {name}
    model: {model}
    goal: Say hello.
    """


# ---------------------------------------------------------------------------------------------
# two files, one name


def test_two_files_with_one_agent_name_are_an_error_in_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write_spec(tmp_path, spec_text("notes", "local/smollm2"), "first.yaml")
    second = write_spec(tmp_path, spec_text("notes", "local/smollm2"), "second.yaml")
    write_spec(tmp_path, spec_text("other", "local/smollm2"), "third.yaml")
    code, out, err = invoke(["validate", str(tmp_path)], capsys)
    assert code == 2
    for path in (first, second):
        assert (
            f"{path}:2:7: agent name 'notes' is used by {first} and {second}; the daemon "
            "loads one of them and rejects the others; give each agent its own name"
        ) in err
    assert "third.yaml: ok (other)" in out
    assert "1 of 3 specs valid" in err


def test_one_file_named_twice_is_not_a_duplicate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, spec_text("notes", "local/smollm2"))
    code, out, err = invoke(["validate", str(spec), str(tmp_path)], capsys)
    assert code == 0, err
    assert out.count("ok (notes)") == 1


def test_a_file_with_errors_of_its_own_takes_no_name(tmp_path: Path) -> None:
    from runner.spec import check_specs

    good = write_spec(tmp_path, spec_text("notes", "local/smollm2"), "good.yaml")
    broken = write_spec(tmp_path, spec_text("notes", "local/smollm2") + "nope: 1\n", "bad.yaml")
    [(_, kept, kept_diagnostics), (_, refused, refused_diagnostics)] = check_specs([good, broken])
    assert kept is not None and kept_diagnostics == []
    assert refused is None
    assert [d.message for d in refused_diagnostics] == ["unknown key 'nope' in the spec"]


# ---------------------------------------------------------------------------------------------
# models that do not exist, settings a model cannot use


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("foobar/x", "unknown model provider 'foobar' in 'foobar/x'"),
        ("local/llama3", "unknown local model 'local/llama3' (available: local/smollm2)"),
        ("house-model-7b", "model 'house-model-7b' names no provider"),
    ],
)
def test_validate_refuses_a_model_that_does_not_exist(
    tmp_path: Path, model: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, spec_text("demo", model))
    code, _, err = invoke(["validate", str(spec)], capsys)
    assert code == 2
    assert f"{spec}:3:8: {message}" in err


def test_validate_refuses_api_key_env_on_the_local_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(
        tmp_path,
        """
        version: 1
        name: demo
        model:
          id: local/smollm2
          api_key_env: OPENAI_API_KEY
        goal: Say hello.
        """,
    )
    code, _, err = invoke(["validate", str(spec)], capsys)
    assert code == 2
    assert f"{spec}:5:3: 'api_key_env' does not apply to the embedded model" in err


@pytest.mark.parametrize(
    "model",
    [
        "openai/gpt-4o-mini",
        "anthropic/claude-haiku-4-5",
        "gemini/gemini-2.0-flash",
        "vertex_ai/gemini-2.0-flash",
        "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
        "azure/my-deployment",
        "ollama/llama3",
        "ollama_chat/llama3",
        "groq/llama-3.1-8b-instant",
        "mistral/mistral-small-latest",
        "openrouter/meta-llama/llama-3-8b-instruct",
        "together_ai/meta-llama/Llama-3-8b-chat-hf",
        "deepseek/deepseek-chat",
        "xai/grok-2",
        "hosted_vllm/my-model",
        "gpt-4o-mini",
        "local/smollm2",
    ],
)
def test_real_providers_and_models_are_accepted(tmp_path: Path, model: str) -> None:
    spec, diagnostics = check_spec(write_spec(tmp_path, spec_text("demo", f"'{model}'")))
    assert spec is not None, [d.headline() for d in diagnostics]
    assert diagnostics == []


def test_any_prefix_with_an_api_base_is_an_openai_compatible_server(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        """
        version: 1
        name: demo
        model:
          id: my-server/house-model
          api_base: http://127.0.0.1:8000/v1
          fallbacks: [my-server/smaller-model]
        goal: Say hello.
        """,
    )
    spec, diagnostics = check_spec(path)
    assert spec is not None and diagnostics == []


def test_the_shipped_provider_list_is_litellms() -> None:
    """``litellm_providers.txt`` is ``litellm.provider_list`` of the installed litellm."""
    from runner.spec.prices import providers

    listed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import litellm; print('\\n'.join(str(getattr(p, 'value', p)) "
            "for p in litellm.provider_list))",
        ],
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert set(listed.stdout.split()) == providers()


def test_the_local_models_named_for_the_checks_are_the_ones_that_exist() -> None:
    from runner.models.local import MODELS
    from runner.spec.prices import LOCAL_MODELS

    assert set(LOCAL_MODELS) == set(MODELS)


# ---------------------------------------------------------------------------------------------
# key variables: warnings, only when asked, only from the environment given


def test_a_missing_provider_key_is_a_warning_not_an_error(
    tmp_path: Path, no_keys: None, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, spec_text("demo", "openai/gpt-4o-mini"))
    code, out, _ = invoke(["validate", str(spec)], capsys)
    assert code == 0
    assert (
        f"{spec}:3:8: warning: model 'openai/gpt-4o-mini' reads its key from OPENAI_API_KEY, "
        "which is not set"
    ) in out
    assert f"{spec}: ok (demo)" in out


def test_a_set_provider_key_is_no_warning(
    tmp_path: Path,
    no_keys: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    spec = write_spec(tmp_path, spec_text("demo", "openai/gpt-4o-mini"))
    code, out, err = invoke(["validate", str(spec)], capsys)
    assert (code, out, err) == (0, f"{spec}: ok (demo)\n", "")


def test_an_unset_api_key_env_is_a_warning_at_its_line(tmp_path: Path, no_keys: None) -> None:
    path = write_spec(
        tmp_path,
        """
        version: 1
        name: demo
        model:
          id: anthropic/claude-haiku-4-5
          api_key_env: MY_TEAM_KEY
          fallbacks: [openai/gpt-4o-mini, anthropic/claude-sonnet-4-5]
        goal: Say hello.
        """,
    )
    spec, diagnostics = check_spec(path, environ={})
    assert spec is not None
    assert [(d.severity, d.line, d.column, d.message) for d in diagnostics] == [
        (
            "warning",
            5,
            16,
            "environment variable 'MY_TEAM_KEY' (model.api_key_env) is not set; model "
            "'anthropic/claude-haiku-4-5' cannot be called without it",
        ),
        (
            "warning",
            6,
            15,
            "model 'openai/gpt-4o-mini' reads its key from OPENAI_API_KEY, which is not set",
        ),
    ]
    spec, diagnostics = check_spec(path, environ={"MY_TEAM_KEY": "k", "OPENAI_API_KEY": "k"})
    assert spec is not None and diagnostics == []


@pytest.mark.parametrize(
    "model",
    [
        "local/smollm2",
        "ollama/llama3",
        "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
        "{id: openai/house, api_base: 'http://127.0.0.1:8000/v1'}",
    ],
)
def test_models_that_need_no_key_variable_get_no_warning(tmp_path: Path, model: str) -> None:
    spec, diagnostics = check_spec(write_spec(tmp_path, spec_text("demo", model)), environ={})
    assert spec is not None and diagnostics == []


def test_without_an_environment_the_result_depends_on_the_file_alone(tmp_path: Path) -> None:
    spec, diagnostics = check_spec(write_spec(tmp_path, spec_text("demo", "openai/gpt-4o-mini")))
    assert spec is not None and diagnostics == []
