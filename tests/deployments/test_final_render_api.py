"""`final` renders through the API on the shipped GPU config, on CPU (GPU fractions set to zero,
tiny models): the engine of each stage is chosen by the user's plan's licences from the config's
order, and the job shows it. A Creator gets the commercial-use engines (Wan, Kokoro, MuseTalk,
thumbnails drawn by the diffusers image engine), and LTX-2 when Wan is gone; a plan of
non-commercial engines gets LTX-Video and Wav2Lip, and FOMM character animation for the scene
with an uploaded driving video; a plan allowing none of the deployed engines is refused at
submit, naming them. Films are checked by decoding."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from ray import serve
from sqlmodel import select

from cluster.runtime import deploy as deploy_engines
from db.migrate import upgrade
from db.models import Plan
from db.session import session_scope
from models.neural.driving import head_motion
from models.registry import LICENCES, Use
from pipeline.render.assemble import inspect_film
from pipeline.render.stage_cache import array_from_image
from pipeline.render.thumbnails import THUMBNAIL_SIZE
from tests.api.conftest import (
    Account,
    Api,
    app_settings,
    assert_problem,
    deploy,
    put_on_plan,
    register,
    undeploy,
)
from tests.deployments.conftest import EXAMPLES, GPU_CONFIG, derived_config
from tests.media import encode_mp4

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("cpu_engines")]

NEURAL = (
    "video-wan", "video-ltx-2", "video-ltx", "image-diffusers", "voice-kokoro",
    "lipsync-musetalk", "lipsync-wav2lip", "lipsync-fomm",
)  # fmt: skip
LIGHT = {
    name: {"ray_actor_options": {"num_cpus": 0.25}, "graceful_shutdown_timeout_s": 1}
    for name in NEURAL
}
FOLDERS = (
    "wan", "wan-i2v", "ltx-2", "ltx-video", "keyframes", "kokoro", "musetalk", "wav2lip", "fomm"
)  # fmt: skip
CPU_LICENCES = ["MIT", "BSD-3-Clause", "GPL-3.0-or-later"]
ASTRONAUT = (EXAMPLES / "assets" / "astronaut.png").read_bytes()
# A driving video: the astronaut's head nodding (the studio's head-motion template), 1 s.
NOD = encode_mp4(head_motion(array_from_image(ASTRONAUT)[:256, 96:352], 12, 12), 12)
NON_COMMERCIAL = [name for name, terms in LICENCES.items() if terms.use is Use.non_commercial]


@pytest.fixture(scope="module")
def final_api(
    serve_http: str,
    tiny_models: Callable[[Iterable[str]], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Api]:
    """The ingress on its own SQLite database, choosing from the GPU config (CPU-only copy) in
    which the tiny neural engines are deployed beside the CPU ones."""
    tmp = tmp_path_factory.mktemp("final-api")
    database_url = f"sqlite:///{tmp / 'studio.db'}"
    upgrade(database_url)
    settings = app_settings(
        tmp / "var",
        database_url,
        models_dir=tiny_models(FOLDERS),
        # A quarter of a logical CPU each (the config asks up to 1): the session's Ray has 8,
        # which the other apps share, and the render's own tasks need some of them.
        serve_config=derived_config(GPU_CONFIG, tmp / "serve_config.yaml", deployment=LIGHT),
        port=int(serve_http.rsplit(":", 1)[1]),
    )
    deploy_engines(settings, set(NEURAL))
    api = deploy("api-final", settings, serve_http)
    yield api
    undeploy(api)
    for name in NEURAL:
        serve.delete(name)


def project_with_character(
    client: httpx.Client, account: Account, driving_video: bytes | None = None
) -> str:
    """A project whose second scene's astronaut talks; with `driving_video`, a third scene
    where that video moves the astronaut."""
    created = client.post(
        "/api/projects/create",
        headers=account.auth,
        json={"title": "Final", "spec": spec()},
    )
    assert created.status_code == 201, created.text
    project = created.json()["id"]
    picture = upload(client, account, project, "astronaut.png", ASTRONAUT, "image/png")
    driving = None
    if driving_video is not None:
        driving = upload(client, account, project, "nod.mp4", driving_video, "video/mp4")
    patched = client.patch(
        f"/api/projects/{project}",
        headers=account.auth,
        json={"spec": spec(character=picture, driving_video=driving)},
    )
    assert patched.status_code == 200, patched.text
    return str(project)


def upload(
    client: httpx.Client, account: Account, project: str, name: str, data: bytes, kind: str
) -> str:
    uploaded = client.post(
        f"/api/projects/{project}/assets",
        headers=account.auth,
        files={"file": (name, data, kind)},
    )
    assert uploaded.status_code == 201, uploaded.text
    return str(uploaded.json()["id"])


def spec(character: str | None = None, driving_video: str | None = None) -> dict[str, Any]:
    speaker: dict[str, Any] = {"narration": "I am ready.", "prompt": "an astronaut speaks",
                               "duration_s": 1}  # fmt: skip
    if character is not None:
        speaker["character"] = character
    scenes = [
        {"narration": "The lake wakes.", "prompt": "a lake at dawn", "duration_s": 1},
        speaker,
    ]
    if driving_video is not None:
        scenes.append({**speaker, "narration": "I nod.", "driving_video": driving_video})
    return {
        "title": "Tiny Final",
        "logline": "An astronaut wakes by a lake.",
        "aspect_ratio": "1:1",
        "resolution": 144,
        "fps": 12,
        "seed": 5,
        "music": {"style": "none"},
        "scenes": scenes,
    }


def render(client: httpx.Client, account: Account, project: str) -> dict[str, Any]:
    response = client.post(
        f"/api/projects/{project}/render", headers=account.auth, json={"quality": "final"}
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    deadline = time.monotonic() + 900
    while True:
        state: dict[str, Any] = client.get(f"/api/jobs/{job_id}", headers=account.auth).json()
        if state["status"] in ("succeeded", "failed", "cancelled"):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(1)


def check_film(
    client: httpx.Client, account: Account, project: str, job: dict[str, Any], tmp_path: Path
) -> None:
    assert job["status"] == "succeeded", job
    path = tmp_path / "film.mp4"
    path.write_bytes(download(client, account, project, "film.mp4"))
    info = inspect_film(path)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert abs(info.video_duration_s - job["output"]["duration_s"]) < 0.1
    assert abs(info.audio_duration_s - job["output"]["duration_s"]) < 0.1


def download(client: httpx.Client, account: Account, project: str, filename: str) -> bytes:
    """The project's newest output of that name, through its download link."""
    assets = client.get(f"/api/projects/{project}/assets", headers=account.auth).json()
    made = next(a for a in assets["items"] if a["filename"] == filename)
    link = client.get(f"/api/assets/{made['id']}/download", headers=account.auth).json()
    return httpx.get(link["url"], timeout=60).content


def engines_of(job: dict[str, Any]) -> dict[str, str]:
    return {stage: made["engine"] for stage, made in job["engines"].items()}


def test_a_creator_final_render_uses_commercial_engines_and_falls_back(
    final_api: Api, tmp_path: Path
) -> None:
    with final_api.client() as client:
        account = register(client)
        put_on_plan(final_api, account.id, "creator")
        project = project_with_character(client, account)

        job = render(client, account, project)
        check_film(client, account, project, job, tmp_path)
        assert engines_of(job) == {
            "video": "wan", "image": "diffusers", "voice": "kokoro", "lipsync": "musetalk",
            "music": "midi", "thumbnails": "diffusers",
        }  # fmt: skip
        # The thumbnail is the key art the image engine drew, with the title over it; picked
        # frames of the film follow it.
        drawn = array_from_image(download(client, account, project, "thumbnail.jpg"))
        frame = array_from_image(download(client, account, project, "thumbnail2.jpg"))
        assert drawn.shape == frame.shape == (THUMBNAIL_SIZE[1], THUMBNAIL_SIZE[0], 3)
        assert np.abs(drawn.astype(float) - frame).mean() > 20
        made = {"engine": "wan", "licence": "apache-2.0", "use": "commercial",
                "revenue_cap_usd": None}  # fmt: skip
        assert job["engines"]["video"] == made

        serve.delete("video-wan")
        again = render(client, account, project)
        check_film(client, account, project, again, tmp_path)
        assert engines_of(again)["video"] == "ltx-2"
        assert again["engines"]["video"]["use"] == "revenue-cap"


def test_a_non_commercial_plan_uses_the_non_commercial_engines(
    final_api: Api, tmp_path: Path
) -> None:
    with final_api.client() as client:
        account = register(client)
        put_on_plan(final_api, account.id, "research")
        set_licences(final_api, "research", NON_COMMERCIAL + CPU_LICENCES)
        serve.delete("lipsync-musetalk")  # MIT, as the CPU engines are: it would come first
        project = project_with_character(client, account, driving_video=NOD)
        job = render(client, account, project)
        check_film(client, account, project, job, tmp_path)
        assert engines_of(job) == {
            "video": "ltx", "image": "card", "voice": "espeak", "lipsync": "wav2lip",
            "lipsync_from_driving_video": "fomm", "music": "midi", "thumbnails": "frames",
        }  # fmt: skip
        assert job["engines"]["lipsync"]["use"] == "non-commercial"
        assert job["engines"]["lipsync_from_driving_video"]["licence"] == "fomm-noncommercial"


def test_a_driving_video_that_is_not_a_video_or_not_animatable_is_refused_at_submit(
    final_api: Api,
) -> None:
    """Refused before anything is reserved: an image named as the driving video (422), and a
    plan whose licences allow no character animation engine (403, naming them)."""
    with final_api.client() as client:
        account = register(client)
        put_on_plan(final_api, account.id, "creator")
        project = project_with_character(client, account, driving_video=NOD)
        before = client.get("/api/credits/balance", headers=account.auth).json()
        response = client.post(
            f"/api/projects/{project}/render", headers=account.auth, json={"quality": "final"}
        )
        problem = assert_problem(response, 403, "licence-refused")
        assert problem["capability"] == "lipsync" and "fomm" in problem["engines"]
        assert "moves a character by a driving video" in problem["detail"]

        picture = upload(client, account, project, "still.png", ASTRONAUT, "image/png")
        patched = client.patch(
            f"/api/projects/{project}",
            headers=account.auth,
            json={"spec": spec(character=picture, driving_video=picture)},
        )
        problem = assert_problem(patched, 422, "spec-invalid")
        assert problem["field"] == "scenes.2.driving_video"
        assert client.get("/api/credits/balance", headers=account.auth).json() == before


def test_a_plan_allowing_none_of_the_deployed_engines_is_refused_at_submit(
    final_api: Api,
) -> None:
    with final_api.client() as client:
        account = register(client)
        put_on_plan(final_api, account.id, "nothing")
        set_licences(final_api, "nothing", [])
        project = project_with_character(client, account)
        before = client.get("/api/credits/balance", headers=account.auth).json()
        response = client.post(
            f"/api/projects/{project}/render", headers=account.auth, json={"quality": "final"}
        )
        problem = assert_problem(response, 403, "licence-refused")
        assert problem["capability"] == "video"
        assert problem["engines"][:3] == ["wan", "ltx-2", "cogvideox-2b"]
        assert "no video engine the nothing plan may use" in problem["detail"]
        assert client.get("/api/credits/balance", headers=account.auth).json() == before


def set_licences(api: Api, code: str, licences: list[str]) -> None:
    with session_scope(api.database_url) as session:
        plan = session.exec(select(Plan).where(Plan.code == code)).one()
        plan.allowed_licences = licences
        session.add(plan)
