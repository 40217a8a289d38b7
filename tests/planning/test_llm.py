"""The LLM planner against a local chat-completions fake: structured output, one repair, and the
CPU planner as the fallback."""

from __future__ import annotations

import json

import pytest

from cluster.settings import Settings
from pipeline.errors import InsufficientCredits
from pipeline.ledger.pricing import planning_estimate
from pipeline.ledger.store import DatabaseLedger
from pipeline.planning.llm import Payer, plan_text
from pipeline.planning.planner import PlanStyle, plan_story
from pipeline.planning.text import word_count
from pipeline.render.spec import FilmSpec
from tests.billing.conftest import new_user
from tests.fakes.chat_completions import FakeChat
from tests.planning.conftest import story

IDEA = "Three bears come home to find their porridge eaten"
BAD_JSON = "Sure! Here is your film: {title: The Bears"
BAD_SPEC = json.dumps(
    {"title": "The Bears", "scenes": [{"narration": "Once.", "camera": "wobble"}]}
)


def model_spec() -> str:
    """A spec as a model would write it: valid, with its own size and seed."""
    spec = plan_story(story("three_bears")).spec
    return json.dumps(spec.model_dump(mode="json") | {"resolution": 1080, "seed": 99})


def test_without_a_model_the_cpu_plans(settings: Settings) -> None:
    plan = plan_text(settings, story("fox_and_crow"))
    assert plan.planner == "cpu"
    assert plan.spec == plan_story(story("fox_and_crow")).spec


def test_the_model_plans_with_structured_output_and_the_users_style(
    llm_settings: Settings, chat: FakeChat
) -> None:
    chat.reply(model_spec())
    plan = plan_text(llm_settings, story("three_bears"), PlanStyle(resolution=144, seed=3))
    assert plan.planner == "llm"
    assert plan.warnings == []
    assert (plan.spec.resolution, plan.spec.seed) == (144, 3)
    [request] = chat.requests
    assert request.headers["authorization"] == "Bearer sk-chat-test-789"
    assert request.body["response_format"]["type"] == "json_schema"
    assert request.body["response_format"]["json_schema"]["schema"] == FilmSpec.json_schema()
    assert "Father Bear" in request.body["messages"][-1]["content"]


def test_an_invalid_answer_is_repaired_once_with_its_problems(
    llm_settings: Settings, chat: FakeChat
) -> None:
    chat.reply(BAD_SPEC, model_spec())
    plan = plan_text(llm_settings, story("three_bears"))
    assert plan.planner == "llm"
    assert plan.warnings == ["the model's first answer was repaired"]
    repair = chat.requests[1].body["messages"]
    assert repair[-2] == {"role": "assistant", "content": BAD_SPEC}
    assert "scenes.0.camera" in repair[-1]["content"]


def test_a_model_wrong_twice_falls_back_to_the_cpu_with_a_warning(
    llm_settings: Settings, chat: FakeChat
) -> None:
    chat.reply(BAD_JSON, BAD_SPEC)
    plan = plan_text(llm_settings, story("three_bears"))
    assert plan.planner == "cpu"
    assert plan.spec == plan_story(story("three_bears")).spec
    assert plan.warnings[0].startswith("planned on CPU: the model's plan was invalid twice")
    assert len(chat.requests) == 2


def test_an_unreachable_model_falls_back_to_the_cpu(llm_settings: Settings, chat: FakeChat) -> None:
    chat.fail_next(503)
    plan = plan_text(llm_settings, story("fox_and_crow"))
    assert plan.planner == "cpu"
    assert "answered 503" in plan.warnings[0]


def test_a_wrong_key_is_reported_and_the_cpu_plans(llm_settings: Settings, chat: FakeChat) -> None:
    wrong = llm_settings.model_copy(update={"llm_api_key": None})
    plan = plan_text(wrong, story("fox_and_crow"))
    assert plan.planner == "cpu"
    assert "answered 401" in plan.warnings[0]


def test_an_idea_is_expanded_into_a_story_then_planned(
    llm_settings: Settings, chat: FakeChat
) -> None:
    chat.reply(story("three_bears"), model_spec())
    plan = plan_text(llm_settings, IDEA, PlanStyle(target_duration_s=60))
    assert plan.planner == "llm"
    assert plan.story == story("three_bears")
    expand, spec = chat.requests
    assert IDEA in expand.body["messages"][0]["content"]
    assert "about 150 words" in expand.body["messages"][0]["content"]
    assert "response_format" not in expand.body
    assert "Goldilocks" in spec.body["messages"][-1]["content"]


@pytest.fixture
def payer(database_url: str) -> Payer:
    """A user with 100 credits, paying through the ledger on the database (SQLite, PostgreSQL)."""
    ledger = DatabaseLedger(database_url)
    user = new_user(database_url)
    ledger.credit(user.id, 100, "grant", f"grant:{user.id}", "test")
    return Payer(ledger, user.id)


def test_model_planning_is_charged_per_answer_used(
    llm_settings: Settings, chat: FakeChat, payer: Payer
) -> None:
    text = story("three_bears")
    price = planning_estimate(word_count(text), idea=False)
    per_answer = price.breakdown["plan"] // 2
    chat.reply(model_spec())
    assert plan_text(llm_settings, text, payer=payer).credits == per_answer
    chat.reply(BAD_SPEC, model_spec())
    assert plan_text(llm_settings, text, payer=payer).credits == 2 * per_answer
    balance = payer.ledger.balance(payer.user_id)
    assert (balance.available, balance.held) == (100 - 3 * per_answer, 0)


def test_a_plan_that_falls_back_to_the_cpu_costs_nothing(
    llm_settings: Settings, chat: FakeChat, payer: Payer
) -> None:
    chat.reply(BAD_JSON, BAD_SPEC)
    plan = plan_text(llm_settings, story("three_bears"), payer=payer)
    assert (plan.planner, plan.credits) == ("cpu", 0)
    balance = payer.ledger.balance(payer.user_id)
    assert (balance.available, balance.held) == (100, 0)


def test_an_idea_pays_for_its_story_and_its_plan(
    llm_settings: Settings, chat: FakeChat, payer: Payer
) -> None:
    chat.reply(story("three_bears"), model_spec())
    style = PlanStyle(target_duration_s=60)
    plan = plan_text(llm_settings, IDEA, style, payer)
    price = planning_estimate(150, idea=True)
    assert plan.credits == price.breakdown["story"] + price.breakdown["plan"] // 2
    assert payer.ledger.balance(payer.user_id).available == 100 - plan.credits


def test_without_the_credits_to_reserve_the_model_is_not_asked(
    llm_settings: Settings, chat: FakeChat, database_url: str
) -> None:
    poor = Payer(DatabaseLedger(database_url), new_user(database_url).id)
    with pytest.raises(InsufficientCredits):
        plan_text(llm_settings, story("three_bears"), payer=poor)
    assert chat.requests == []
