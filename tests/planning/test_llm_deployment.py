"""The planning model on Serve: a tiny random Qwen2 in the Hugging Face folder format, loaded by
transformers and answering the chat-completions protocol that the LLM planner speaks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ray import serve

from cluster.settings import Settings
from deployments.llm import ChatGenerator, ChatRequest, app_builder, authorized
from pipeline.planning.llm import plan_text
from tests.planning.conftest import story
from tests.planning.tiny_llm import build_tiny_llm


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))


def test_the_generator_answers_a_chat_completion(tiny_llm: Path) -> None:
    generator = ChatGenerator(str(tiny_llm), "tiny", max_new_tokens=8)
    request = ChatRequest(model="tiny", messages=[{"role": "user", "content": "the fox said"}])
    answer = generator.complete(request)
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert answer["usage"]["completion_tokens"] <= 8
    assert generator.complete(request)["choices"] == answer["choices"], "greedy: repeatable"


KEY = "sk-served-planner-123"


def builder_args(tiny_llm: Path, **settings: Any) -> dict[str, Any]:
    """The args a Serve config gives the builder: the folder under the models folder."""
    settings = {"models_dir": str(tiny_llm.parent), **settings}
    return {"folder": tiny_llm.name, "name": "tiny", "max_new_tokens": 16, "settings": settings}


@pytest.fixture(scope="module")
def served_llm(serve_http: str, tiny_llm: Path) -> Iterator[str]:
    app = app_builder(builder_args(tiny_llm, llm_api_key=KEY))
    serve.run(app, name="planning-llm", route_prefix="/planning-llm")
    yield f"{serve_http}/planning-llm/v1"
    serve.delete("planning-llm")


def test_without_a_key_the_model_answers_nobody() -> None:
    for header in (None, "", "Bearer ", "Bearer None"):
        assert not authorized(header, None)
    digest = hashlib.sha256(KEY.encode()).digest()
    assert authorized(f"Bearer {KEY}", digest) and not authorized(f"Basic {KEY}", digest)


@pytest.mark.ray
def test_the_served_model_answers_only_its_key(served_llm: str) -> None:
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": KEY}):
        refused = httpx.get(f"{served_llm}/models", headers=headers, timeout=30)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.ray
def test_the_planner_reaches_the_served_model_and_falls_back_on_its_nonsense(
    served_llm: str, tmp_path: Path
) -> None:
    key = {"Authorization": f"Bearer {KEY}"}
    models = httpx.get(f"{served_llm}/models", headers=key, timeout=30).json()
    assert models["data"][0]["id"] == "tiny"
    settings = Settings(
        data_dir=tmp_path / "var", llm_base_url=served_llm, llm_model="tiny", llm_api_key=KEY,
        _env_file=None,
    )  # fmt: skip
    plan = plan_text(settings, story("fox_and_crow"))
    assert plan.planner == "cpu"
    assert plan.warnings[0].startswith("planned on CPU: the model's plan was invalid twice")
