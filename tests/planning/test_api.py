"""Planning through the API: a project from a story, planned again, edited; bad text refused
with a problem naming it and nothing charged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from db.migrate import upgrade
from pipeline.ledger.pricing import planning_estimate
from pipeline.planning.text import word_count
from tests.api.conftest import (
    Account,
    Api,
    app_settings,
    assert_problem,
    deploy,
    register,
    undeploy,
)
from tests.fakes.chat_completions import API_KEY, FakeChat
from tests.planning.conftest import story
from tests.planning.test_llm import model_spec

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def api(serve_http: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data_dir = tmp_path_factory.mktemp("api-planning")
    database_url = f"sqlite:///{data_dir / 'studio.db'}"
    upgrade(database_url)
    api = deploy("api-planning", app_settings(data_dir, database_url), serve_http)
    yield api
    undeploy(api)


@pytest.fixture
def client(api: Api) -> Iterator[httpx.Client]:
    with api.client() as client:
        yield client


@pytest.fixture
def account(client: httpx.Client) -> Account:
    return register(client)


def create(client: httpx.Client, account: Account, **body: Any) -> httpx.Response:
    return client.post("/api/projects/create", headers=account.auth, json=body)


def balance(client: httpx.Client, account: Account) -> Any:
    return client.get("/api/credits/balance", headers=account.auth).json()


def test_a_project_from_a_story_holds_the_plan_as_its_spec(
    client: httpx.Client, account: Account
) -> None:
    before = balance(client, account)
    response = create(client, account, story=story("three_bears"), style={"resolution": 144})
    assert response.status_code == 201, response.text
    project = response.json()
    assert project["title"] == "The Story of the Three Bears"
    assert project["plan"] == {"planner": "cpu", "kind": "prose", "warnings": [], "credits": 0}
    assert project["story"] == story("three_bears")
    spec = project["spec"]
    assert spec["resolution"] == 144
    assert [c["name"] for c in spec["characters"]] == ["Father Bear", "Mother Bear", "Baby Bear"]
    assert balance(client, account) == before, "planning on CPU is free"


def test_plan_again_with_another_style_then_edit_before_rendering(
    client: httpx.Client, account: Account
) -> None:
    project = create(client, account, story=story("fox_and_crow")).json()
    url = f"/api/projects/{project['id']}"
    again = client.post(f"{url}/plan", headers=account.auth, json={"style": {"seed": 4}})
    assert again.status_code == 200, again.text
    replanned = again.json()["spec"]
    assert replanned["seed"] == 4
    assert [s["camera"] for s in replanned["scenes"]] != [
        s["camera"] for s in project["spec"]["scenes"]
    ]
    replanned["scenes"][0]["narration"] = "Once, in a forest, a Fox saw a Crow."
    edited = client.patch(url, headers=account.auth, json={"spec": replanned})
    assert edited.status_code == 200, edited.text
    assert edited.json()["spec"]["scenes"][0]["narration"] == "Once, in a forest, a Fox saw a Crow."
    kept = client.post(f"{url}/plan", headers=account.auth).json()["spec"]
    assert kept["seed"] == 4, "the stored style is planned again"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "the story is empty"),
        ("word " * 3001, "3001 words; a plan takes at most 3000"),
        ("\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f PNG", "binary"),
        ("INT. ROOM - DAY\n\nJOHN\n\nMARY\n", "no lines to speak"),
    ],
)
def test_unplannable_text_is_a_problem_and_costs_nothing(
    client: httpx.Client, account: Account, text: str, says: str
) -> None:
    before = balance(client, account)
    response = create(client, account, story=text)
    body = assert_problem(response, 422, "story-invalid")
    assert says in body["detail"]
    assert balance(client, account) == before
    listed = client.get("/api/projects", headers=account.auth).json()
    assert listed["items"] == []


def test_a_spec_and_a_story_together_are_refused(client: httpx.Client, account: Account) -> None:
    spec = {"title": "t", "scenes": [{"narration": "Hi.", "prompt": "p"}]}
    response = create(client, account, title="t", spec=spec, story="Once upon a time.")
    body = assert_problem(response, 422, "validation-error")
    assert "either a spec or a story" in str(body["errors"])


def test_a_project_without_a_story_cannot_be_planned(
    client: httpx.Client, account: Account
) -> None:
    spec = {"title": "t", "scenes": [{"narration": "Hi.", "prompt": "p"}]}
    project = create(client, account, title="t", spec=spec).json()
    response = client.post(f"/api/projects/{project['id']}/plan", headers=account.auth)
    assert_problem(response, 409, "conflict")


@pytest.fixture(scope="module")
def model_chat() -> Iterator[FakeChat]:
    fake = FakeChat()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def model_api(
    serve_http: str, tmp_path_factory: pytest.TempPathFactory, model_chat: FakeChat
) -> Iterator[Api]:
    """The API planning with a model (the chat-completions fake)."""
    data_dir = tmp_path_factory.mktemp("api-planning-llm")
    database_url = f"sqlite:///{data_dir / 'studio.db'}"
    upgrade(database_url)
    model = {"llm_base_url": model_chat.url, "llm_model": "gpt-4o-mini", "llm_api_key": API_KEY}
    settings = app_settings(data_dir, database_url, **model)
    api = deploy("api-planning-llm", settings, serve_http)
    yield api
    undeploy(api)


def test_planning_with_a_model_is_charged_and_a_fallback_is_not(
    model_api: Api, model_chat: FakeChat
) -> None:
    with model_api.client() as client:
        account = register(client)
        before = balance(client, account)["available"]
        model_chat.reply(model_spec())
        planned = create(client, account, story=story("three_bears")).json()
        assert planned["plan"]["planner"] == "llm", planned["plan"]
        charged = planned["plan"]["credits"]
        assert charged == planning_estimate(word_count(story("three_bears")), False).credits // 2
        assert balance(client, account) == {"available": before - charged, "held": 0}

        model_chat.reply("{not json", "{not json either")
        replanned = client.post(f"/api/projects/{planned['id']}/plan", headers=account.auth)
        assert replanned.json()["plan"]["planner"] == "cpu"
        assert replanned.json()["plan"]["credits"] == 0
        assert balance(client, account)["available"] == before - charged
