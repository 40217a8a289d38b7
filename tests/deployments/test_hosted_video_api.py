"""`final` renders through the API with the hosted video engines (Runway, Luma) against the local
fake of their APIs, on the embedded Serve config with the provider's key set: the film decodes
with the provider's frames in it, the job records the engine and what the provider charged; a
failed, timed-out or rate-limited generation fails the job with the provider's reason and gives
the credits back; a cut download resumes without a second generation."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
from pydantic import SecretStr
from ray import serve

from db.migrate import upgrade
from db.models import Project
from db.session import session_scope
from deployments.engines import build_engine_app
from pipeline.publish.disclosure import synthetic_engines
from tests.api.conftest import Account, Api, app_settings, deploy, register, undeploy
from tests.deployments.test_final_render_api import check_film, engines_of, render
from tests.fakes.hosted_video import LUMA_KEY, RUNWAY_KEY, FakeHostedVideo

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("cpu_engines")]

PROVIDERS = ("runway", "luma")
# Fast polls and retries, and a short wait for a generation that never ends.
ENGINE_OPTIONS = {"poll_s": 0.05, "backoff_s": 0.01, "max_retries": 2, "generation_timeout_s": 3}


@pytest.fixture(scope="module")
def hosted_apis(
    serve_http: str,
    hosted_video_server: FakeHostedVideo,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Api]]:
    """Per provider, an ingress whose settings hold only that provider's key (so that final
    renders choose it), and the provider's engine application pointed at the fake."""
    tmp = tmp_path_factory.mktemp("hosted-api")
    database_url = f"sqlite:///{tmp / 'studio.db'}"
    upgrade(database_url)
    port = int(serve_http.rsplit(":", 1)[1])
    keys = {"runway": RUNWAY_KEY, "luma": LUMA_KEY}
    apis = {}
    for provider in PROVIDERS:
        settings = app_settings(
            tmp / "var",
            database_url,
            port=port,
            **{
                f"{provider}_api_key": SecretStr(keys[provider]),
                f"{provider}_base_url": hosted_video_server.url,
            },
        )
        app = build_engine_app("video", provider, settings, ENGINE_OPTIONS)
        serve.run(app, name=f"video-{provider}", route_prefix=None)
        apis[provider] = deploy(f"api-{provider}", settings, serve_http)
    yield apis
    undeploy(*apis.values())
    for provider in PROVIDERS:
        serve.delete(f"video-{provider}")


def project(client: httpx.Client, account: Account) -> str:
    spec = {
        "title": "Hosted",
        "aspect_ratio": "1:1",
        "resolution": 144,
        "fps": 12,
        "seed": 3,
        "music": {"style": "none"},
        "scenes": [
            {"narration": "The harbour sleeps.", "prompt": "a harbour at night", "duration_s": 1},
            {"narration": "Boats drift.", "prompt": "boats drifting", "duration_s": 1},
        ],
    }
    created = client.post(
        "/api/projects/create", headers=account.auth, json={"title": "H", "spec": spec}
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def balance(client: httpx.Client, account: Account) -> Any:
    return client.get("/api/credits/balance", headers=account.auth).json()


def film_colours(client: httpx.Client, account: Account, project_id: str) -> np.ndarray:
    """The mean colour of the top-left quarter of every decoded frame of the project's film
    (away from captions)."""
    assets = client.get(f"/api/projects/{project_id}/assets", headers=account.auth).json()
    film = next(a for a in assets["items"] if a["filename"] == "film.mp4")
    link = client.get(f"/api/assets/{film['id']}/download", headers=account.auth).json()
    data = httpx.get(link["url"], timeout=60).content
    colours = []
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            h, w = rgb.shape[:2]
            colours.append(rgb[: h // 4, : w // 4].reshape(-1, 3).mean(axis=0))
    return np.array(colours)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_final_render_with_a_hosted_engine_decodes_with_its_frames_and_its_cost(
    hosted_apis: dict[str, Api], fake_video: FakeHostedVideo, provider: str, tmp_path: Path
) -> None:
    fake_video.cut_downloads = 1  # the first clip's download is cut half-way
    api = hosted_apis[provider]
    with api.client() as client:
        account = register(client)
        project_id = project(client, account)
        before = balance(client, account)
        job = render(client, account, project_id)
        check_film(client, account, project_id, job, tmp_path)
        assert engines_of(job)["video"] == provider
        assert job["engines"]["video"]["licence"] == f"{provider}-terms"
        assert job["engines"]["video"]["use"] == "commercial"

        # The provider's clips are in the film: the fake's blue-violet, not the animatic's.
        colours = film_colours(client, account, project_id)
        middle = colours[len(colours) // 4]
        assert abs(middle[1] - 120) < 20 and abs(middle[2] - 200) < 20, middle

        # One generation per scene, the cut download resumed: the provider charged once each.
        assert fake_video.created(provider) == 2
        ranged = [r for r in fake_video.requests if r.headers.get("range")]
        assert len(ranged) == 1
        costs = job["output"]["provider_costs"]
        assert [c["scene"] for c in sorted(costs, key=lambda c: c["scene"])] == [0, 1]
        assert all(c["provider"] == provider and c["seconds"] == 5 for c in costs)
        assert all(c["amount"] > 0 for c in costs)
        after = balance(client, account)
        spent = before["available"] - after["available"]
        assert spent == job["output"]["credits_used"] > 0 and after["held"] == 0

    # Publishing this film would label it as synthetic content (tests/youtube/test_disclosure).
    with session_scope(api.database_url) as session:
        made = session.get(Project, uuid.UUID(project_id))
        assert made is not None
        assert synthetic_engines(session, made, "film.mp4") == [f"video: {provider}"]


@pytest.mark.parametrize(
    ("provider", "outcome", "reason"),
    [
        ("runway", "fail", "SAFETY.INPUT.IMAGE"),
        ("runway", "hang", "did not finish in 3 s"),
        ("runway", "rate", "429: "),
        ("luma", "fail", "flagged by moderation"),
        ("luma", "hang", "did not finish in 3 s"),
        ("luma", "rate", "429: "),
    ],
)
def test_a_provider_failure_fails_the_job_with_its_reason_and_releases_the_credits(
    hosted_apis: dict[str, Api],
    fake_video: FakeHostedVideo,
    provider: str,
    outcome: str,
    reason: str,
) -> None:
    if outcome == "rate":
        fake_video.rate_limited = True
    else:
        fake_video.outcome = outcome
    api = hosted_apis[provider]
    with api.client() as client:
        account = register(client)
        project_id = project(client, account)
        before = balance(client, account)
        job = render(client, account, project_id)
        assert job["status"] == "failed", job
        assert provider in job["error"] and reason in job["error"], job["error"]
        assert balance(client, account) == before
        state = client.get(f"/api/projects/{project_id}", headers=account.auth).json()
        assert state["status"] == "failed"
    if outcome == "hang":
        assert fake_video.generations and all(g.cancelled for g in fake_video.generations.values())
