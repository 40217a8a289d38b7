"""Items 3, 6 and 12 of issue 24, generalised over every JSON request body of `/openapi.json`:
every string is bounded (the schema says so, and one character more is refused), no string takes
a NUL whatever the content type says, and numbers and booleans are taken only as such.

Each probe is answered 422 naming the field it changed (`errors[].loc`), never 2xx or 5xx; the
film spec's own fields (scenes, characters) are probed inside a project. Every test reports how
many inputs it tried (`-rA` or `-s` shows them)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from db.models import Role
from tests.api.conftest import (
    Account,
    Api,
    assert_problem,
    film_spec,
    insert_queued_job,
    set_user,
)
from tests.security.conftest import (
    MB,
    fill_path,
    json_body,
    operations,
    replica_rss,
    resolve,
)

pytestmark = pytest.mark.ray

CONTENT_TYPES = [
    "application/json",
    "Application/JSON",
    "application/json; charset=utf-8",
    "application/merge-patch+json",
    "application/vnd.studio+json",
    None,
]
LEAVES = ("format", "enum", "const")


def unbounded_strings(
    document: dict[str, Any], schema: dict[str, Any], where: str, seen: set[str]
) -> Iterator[str]:
    """Where a string of the schema (at any depth) has no maxLength (nor a format or enum)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return
        seen.add(name)
        yield from unbounded_strings(document, resolve(document, schema), name, seen)
        return
    for key in ("anyOf", "oneOf", "allOf"):
        for member in schema.get(key, []):
            yield from unbounded_strings(document, member, where, seen)
    bounded = "maxLength" in schema or any(key in schema for key in LEAVES)
    if schema.get("type") == "string" and not bounded:
        yield where
    for name, member in schema.get("properties", {}).items():
        yield from unbounded_strings(document, member, f"{where}.{name}", seen)
    if isinstance(schema.get("additionalProperties"), dict):
        yield from unbounded_strings(document, schema["additionalProperties"], where, seen)
    if "items" in schema:
        yield from unbounded_strings(document, schema["items"], f"{where}[]", seen)


def body_operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, resolved body schema) of every operation taking a JSON object."""
    found = []
    for method, path, operation in operations(document):
        schema = json_body(document, operation)
        if schema is not None and "properties" in schema:
            found.append((method, path, schema))
    return found


def kind(document: dict[str, Any], schema: dict[str, Any]) -> str | None:
    return resolve(document, schema).get("type")


@pytest.fixture
def ids(api: Api, client: httpx.Client, account: Account, project: str) -> dict[str, str]:
    """Path parameters filled with the account's own objects, so every body is read."""
    job = insert_queued_job(api, account.id, project)
    return {
        "project_id": project,
        "job_id": str(job.id),
        "user_id": str(account.id),
        "payment_id": str(uuid.uuid4()),
        "flag_id": str(uuid.uuid4()),
    }


@pytest.fixture
def prober(api: Api, client: httpx.Client, account: Account) -> Account:
    """The account, made an admin so that the admin routes read their bodies too."""
    set_user(api, account.id, role=Role.admin)
    return account


def send(
    client: httpx.Client,
    account: Account,
    method: str,
    path: str,
    body: dict[str, Any],
    content_type: str | None = "application/json",
) -> httpx.Response:
    headers = dict(account.auth)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.request(method, path, headers=headers, content=json.dumps(body).encode())


def refused_naming(response: httpx.Response, field: str) -> bool:
    if response.status_code != 422:
        return False
    locs = [error["loc"] for error in response.json().get("errors") or []]
    return any(field in loc for loc in locs)


def test_every_string_of_every_request_body_is_bounded(openapi: dict[str, Any]) -> None:
    unbounded: list[str] = []
    for method, path, operation in operations(openapi):
        content = operation.get("requestBody", {}).get("content", {})
        schema = content.get("application/json", {}).get("schema")
        if schema is not None:
            found = unbounded_strings(openapi, schema, f"{method} {path}", set())
            unbounded += list(found)
    assert unbounded == []


def test_one_character_over_any_bound_is_refused(
    openapi: dict[str, Any], client: httpx.Client, prober: Account, ids: dict[str, str]
) -> None:
    tried, missed = 0, []
    for method, path, schema in body_operations(openapi):
        for name, field in schema["properties"].items():
            field = resolve(openapi, field)
            if field.get("type") != "string" or "maxLength" not in field:
                continue
            body = {name: "x" * (field["maxLength"] + 1)}
            response = send(client, prober, method, fill_path(path, ids), body)
            tried += 1
            if not refused_naming(response, name):
                missed.append((method, path, name, response.status_code))
    print(f"oversized text: {tried} inputs")
    assert tried > 20 and missed == []


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_no_string_takes_a_nul_whatever_the_content_type(
    openapi: dict[str, Any],
    client: httpx.Client,
    prober: Account,
    ids: dict[str, str],
    content_type: str | None,
) -> None:
    tried, missed = 0, []
    for method, path, schema in body_operations(openapi):
        for name, field in schema["properties"].items():
            if kind(openapi, field) != "string":
                continue
            response = send(
                client, prober, method, fill_path(path, ids), {name: "t\x00x"}, content_type
            )
            tried += 1
            if not refused_naming(response, name):
                missed.append((method, path, name, response.status_code))
    print(f"NUL with content type {content_type}: {tried} inputs")
    assert tried > 20 and missed == []


def test_numbers_and_booleans_are_not_taken_from_strings(
    openapi: dict[str, Any], client: httpx.Client, prober: Account, ids: dict[str, str]
) -> None:
    wrong = {"integer": ["100", True, "1e2"], "number": ["1.5", False], "boolean": ["true", 1]}
    tried, missed = 0, []
    for method, path, schema in body_operations(openapi):
        for name, field in schema["properties"].items():
            for value in wrong.get(kind(openapi, field) or "", []):
                response = send(client, prober, method, fill_path(path, ids), {name: value})
                tried += 1
                if not refused_naming(response, name):
                    missed.append((method, path, name, value, response.status_code))
    print(f"loose numbers and booleans: {tried} inputs")
    assert tried > 10 and missed == []


def spec_fields(openapi: dict[str, Any], model: str) -> list[tuple[str, dict[str, Any]]]:
    schema = openapi["components"]["schemas"][model]
    return [(name, resolve(openapi, field)) for name, field in schema["properties"].items()]


def test_every_text_of_the_film_spec_is_bounded_and_nul_free(
    openapi: dict[str, Any], client: httpx.Client, account: Account
) -> None:
    scene = film_spec()["scenes"][0]
    places = {
        "FilmSpec": lambda name, value: film_spec(**{name: value}),
        "Scene": lambda name, value: film_spec(scenes=[scene | {name: value}]),
        "Character": lambda name, value: film_spec(characters=[{"name": "Ann"} | {name: value}]),
    }
    tried, missed = 0, []
    for model, place in places.items():
        for name, field in spec_fields(openapi, model):
            if field.get("type") != "string" or "maxLength" not in field:
                continue
            for value in ("x" * (field["maxLength"] + 1), "t\x00x"):
                spec = place(name, value)
                response = client.post(
                    "/api/projects/create", headers=account.auth, json={"title": "t", "spec": spec}
                )
                tried += 1
                if not refused_naming(response, name):
                    missed.append((model, name, response.status_code))
    print(f"film spec texts: {tried} inputs")
    assert tried > 10 and missed == []


def test_a_long_narration_is_refused_in_characters_within_the_memory_budget(
    api: Api, client: httpx.Client, account: Account
) -> None:
    """One 100,000-character "word" passed the word count and exhausted the voice stage."""
    word = "a" * 100_000
    idle = replica_rss(api)
    spec = film_spec(scenes=[{"narration": word, "prompt": "a hill"}])
    created = client.post(
        "/api/projects/create", headers=account.auth, json={"title": "t", "spec": spec}
    )
    assert refused_naming(created, "narration"), created.text
    story = client.post("/api/projects/create", headers=account.auth, json={"story": word})
    assert refused_naming(story, "story"), story.text
    spoken = client.post("/api/ai/audio-generate", headers=account.auth, json={"text": word})
    assert refused_naming(spoken, "text"), spoken.text
    grown = replica_rss(api) - idle
    print(f"API replica RSS: idle {idle / MB:.0f} MB, grown by {grown / MB:.1f} MB")
    assert grown < 100 * MB


@pytest.mark.parametrize("content_type", ["Application/JSON", "application/merge-patch+json"])
def test_a_nul_title_is_not_stored(
    client: httpx.Client, account: Account, project: str, content_type: str
) -> None:
    response = send(
        client, account, "PATCH", f"/api/projects/{project}", {"title": "t\x00x"}, content_type
    )
    assert_problem(response, 422, "validation-error")
    assert client.get(f"/api/projects/{project}", headers=account.auth).json()["title"] == "My film"


@pytest.mark.parametrize("credits", ["100", True])
def test_a_credit_pack_is_a_number(client: httpx.Client, account: Account, credits: Any) -> None:
    response = client.post("/api/credits/topup", headers=account.auth, json={"credits": credits})
    assert refused_naming(response, "credits"), response.text
