"""A render through the API on the embedded default: the engines on Serve beside the API, the
job run by the scheduler, the film downloaded through its signed URL — while the API keeps
answering. Bad specs are refused at submit with a 4xx, nothing charged."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from pipeline.render.assemble import inspect_film
from tests.api.conftest import (
    Account,
    Api,
    assert_problem,
    create_project,
    film_spec,
    png_bytes,
    put_on_plan,
)

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("cpu_engines")]


def test_a_render_completes_while_the_api_keeps_answering(
    api: Api, client: httpx.Client, account: Account, tmp_path: Path
) -> None:
    spec = {
        "scenes": [
            {"narration": "The sun rises.", "prompt": "a hill at dawn", "camera": "zoom_in"},
            {"narration": "Birds wake in the trees.", "prompt": "birds", "transition": "fade"},
            {"narration": "The valley fills with light.", "prompt": "a valley", "duration_s": 4},
        ],
        "resolution": 360,
        "fps": 24,
    }
    put_on_plan(api, account.id, "studio")  # its rate limit allows polling twice a second
    project = create_project(client, account, **spec)
    before = client.get("/api/credits/balance", headers=account.auth).json()
    response = client.post(f"/api/projects/{project['id']}/render", headers=account.auth, json={})
    assert response.status_code == 202, response.text
    job = response.json()
    latencies = []
    polls_while_running = 0
    deadline = time.monotonic() + 600
    while True:
        started = time.monotonic()
        balance = client.get("/api/credits/balance", headers=account.auth)
        latencies.append(time.monotonic() - started)
        assert balance.status_code == 200
        state = client.get(f"/api/jobs/{job['id']}", headers=account.auth).json()
        if state["status"] in ("succeeded", "failed", "cancelled"):
            break
        polls_while_running += state["status"] == "running"
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    assert state["status"] == "succeeded", state
    assert polls_while_running >= 3, "the API answered while the render was running"
    latencies.sort()
    assert latencies[len(latencies) // 2] < 1.0, f"median balance latency {latencies}"

    after = client.get("/api/credits/balance", headers=account.auth).json()
    assert after["held"] == 0
    assert after["available"] == before["available"] - state["output"]["credits_used"]
    assets = client.get(f"/api/projects/{project['id']}/assets", headers=account.auth).json()
    film = next(a for a in assets["items"] if a["filename"] == "film.mp4")
    link = client.get(f"/api/assets/{film['id']}/download", headers=account.auth).json()
    path = tmp_path / "film.mp4"
    path.write_bytes(httpx.get(link["url"], timeout=60).content)
    info = inspect_film(path)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert abs(info.duration_s - state["output"]["duration_s"]) < 0.1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"scenes": []}, "scenes"),
        ({"resolution": 4320}, "resolution"),
        ({"scenes": [{"narration": "word " * 10_000, "prompt": "x"}]}, "scenes.0.narration"),
        ({"scenes": [{"narration": "hi", "prompt": "x", "voice": {"language": "english!"}}]},
         "scenes.0.voice.language"),
    ],
)  # fmt: skip
def test_bad_specs_are_refused_when_the_project_is_made(
    client: httpx.Client, account: Account, change: dict[str, object], field: str
) -> None:
    response = client.post(
        "/api/projects/create",
        headers=account.auth,
        json={"title": "bad", "spec": film_spec(**change)},
    )
    assert response.status_code == 422
    places = [".".join(map(str, error["loc"])) for error in response.json()["errors"]]
    assert any(place.endswith(field) for place in places), places


def test_an_unknown_voice_is_refused_at_submit_and_charges_nothing(
    client: httpx.Client, account: Account
) -> None:
    project = create_project(
        client, account,
        scenes=[{"narration": "Hello.", "prompt": "x", "voice": {"language": "xx"}}],
    )  # fmt: skip
    before = client.get("/api/credits/balance", headers=account.auth).json()
    response = client.post(f"/api/projects/{project['id']}/render", headers=account.auth, json={})
    body = assert_problem(response, 422, "spec-invalid")
    assert "voice" in body["detail"]
    assert client.get("/api/credits/balance", headers=account.auth).json() == before


def test_a_corrupt_uploaded_image_is_refused_at_submit(
    client: httpx.Client, account: Account
) -> None:
    project = create_project(client, account)
    corrupt = png_bytes()[:40] + b"\x00" * 64
    upload = client.post(
        f"/api/projects/{project['id']}/assets", headers=account.auth,
        files={"file": ("keyframe.png", corrupt, "image/png")},
    )  # fmt: skip
    if upload.status_code != 201:
        assert upload.status_code in (400, 415, 422), upload.text
        return
    asset = upload.json()["id"]
    spec = film_spec(scenes=[{"narration": "Hi.", "image": asset}])
    edited = client.patch(
        f"/api/projects/{project['id']}", headers=account.auth, json={"spec": spec}
    )
    assert edited.status_code == 200, edited.text
    response = client.post(f"/api/projects/{project['id']}/render", headers=account.auth, json={})
    body = assert_problem(response, 422, "spec-invalid")
    assert "not a readable image" in body["detail"]
