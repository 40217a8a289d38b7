"""Credits, plans and the single-engine AI jobs (estimated as dry runs, nothing rendered)."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import Account, assert_problem, png_bytes

pytestmark = pytest.mark.ray


def test_plans_are_public(client: httpx.Client) -> None:
    plans = {plan["code"]: plan for plan in client.get("/api/plans").json()}

    assert {"free", "creator", "studio"} <= set(plans)
    assert plans["free"]["price_cents"] == 0


def test_a_new_user_has_the_plans_monthly_grant(client: httpx.Client, account: Account) -> None:
    free = next(p for p in client.get("/api/plans").json() if p["code"] == "free")

    balance = client.get("/api/credits/balance", headers=account.auth).json()

    assert balance == {"available": free["monthly_credits"], "held": 0}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/ai/video-generate", {"prompt": "a lighthouse in fog", "duration_s": 2}),
        ("/api/ai/audio-generate", {"text": "Once upon a time."}),
        ("/api/ai/music-generate", {"mood": "epic", "duration_s": 5}),
    ],
)
def test_engine_jobs_estimate_as_dry_runs(
    client: httpx.Client, account: Account, path: str, body: dict[str, object]
) -> None:
    before = client.get("/api/credits/balance", headers=account.auth).json()

    response = client.post(path, headers=account.auth, json=body | {"dry_run": True})

    assert response.status_code == 200, response.text
    assert response.json()["credits"] >= 0
    assert client.get("/api/credits/balance", headers=account.auth).json() == before


def test_lip_sync_needs_the_users_own_image(
    client: httpx.Client, account: Account, other: Account
) -> None:
    project = client.post(
        "/api/projects/create",
        headers=other.auth,
        json={"title": "t", "spec": {"title": "t", "scenes": [{"prompt": "x", "duration_s": 1}]}},
    ).json()
    asset = client.post(
        f"/api/projects/{project['id']}/assets",
        headers=other.auth,
        files={"file": ("face.png", png_bytes(), "image/png")},
    ).json()

    response = client.post(
        "/api/ai/lip-sync",
        headers=account.auth,
        json={"character": asset["id"], "text": "Hello.", "dry_run": True},
    )

    assert_problem(response, 422, "spec-invalid")


def test_an_engine_request_rejects_unknown_fields(client: httpx.Client, account: Account) -> None:
    response = client.post(
        "/api/ai/video-generate", headers=account.auth, json={"prompt": "x", "engine": "sora"}
    )

    body = assert_problem(response, 422, "validation-error")
    assert body["errors"][0]["loc"] == ["body", "engine"]
