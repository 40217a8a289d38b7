"""A `final` render through the API with Stable Audio Open scoring the film, on CPU: the tiny
model deployed from the shipped GPU config (GPU fraction zero, two steps) beside the CPU
engines, chosen for a plan that allows its licence (the seeded paid plans do not: they get the
MIDI score). The film is decoded and its sound measured where no one speaks: the score plays
there."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from ray import serve

from cluster.runtime import deploy as deploy_engines
from db.migrate import upgrade
from tests.api.conftest import Api, app_settings, deploy, put_on_plan, register, undeploy
from tests.deployments.conftest import GPU_CONFIG, derived_config
from tests.deployments.test_final_render_api import (
    CPU_LICENCES,
    check_film,
    engines_of,
    render,
    set_licences,
)

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("cpu_engines")]

MUSIC = "music-stable-audio"
SPEC: dict[str, Any] = {
    "title": "Scored",
    "aspect_ratio": "1:1",
    "resolution": 144,
    "fps": 12,
    "seed": 7,
    "music": {"mood": "epic", "tempo_bpm": 120, "style": "score", "volume": 0.35},
    "scenes": [
        {"narration": "The lake wakes.", "prompt": "a lake at dawn", "duration_s": 2},
        {"prompt": "the sun over the water", "duration_s": 4},
    ],
}


@pytest.fixture(scope="module")
def music_api(
    serve_http: str,
    tiny_models: Callable[[Iterable[str]], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("music-api")
    database_url = f"sqlite:///{tmp / 'studio.db'}"
    upgrade(database_url)
    settings = app_settings(
        tmp / "var",
        database_url,
        models_dir=tiny_models(["stable-audio"]),
        serve_config=derived_config(GPU_CONFIG, tmp / "serve_config.yaml"),
        port=int(serve_http.rsplit(":", 1)[1]),
    )
    deploy_engines(settings, {MUSIC})
    api = deploy("api-music", settings, serve_http)
    yield api
    undeploy(api)
    serve.delete(MUSIC)


def level_db(samples: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(samples, dtype=np.float64))) + 1e-12))


def test_stable_audio_scores_a_final_render_under_the_narration(
    music_api: Api, tmp_path: Path
) -> None:
    with music_api.client() as client:
        account = register(client)
        put_on_plan(music_api, account.id, "composer")
        set_licences(music_api, "composer", [*CPU_LICENCES, "stability-community"])
        created = client.post(
            "/api/projects/create", headers=account.auth, json={"title": "Scored", "spec": SPEC}
        )
        assert created.status_code == 201, created.text
        project = str(created.json()["id"])

        job = render(client, account, project)
        check_film(client, account, project, job, tmp_path)
        assert engines_of(job)["music"] == "stable-audio"
        assert job["engines"]["music"] == {
            "engine": "stable-audio", "licence": "stability-community", "use": "revenue-cap",
            "revenue_cap_usd": 1_000_000,
        }  # fmt: skip

    with av.open(str(tmp_path / "film.mp4")) as container:
        rate = container.streams.audio[0].sample_rate
        samples = np.concatenate([f.to_ndarray().mean(axis=0) for f in container.decode(audio=0)])
    duration_s = job["output"]["duration_s"]
    assert abs(len(samples) / rate - duration_s) < 0.1
    # The second scene has no narration: what sounds there, before the score's fade-out over the
    # last 2 s, is the score.
    quiet_scene = samples[round(2.2 * rate) : round((duration_s - 2.2) * rate)]
    windows = np.array_split(quiet_scene, 5)
    assert min(level_db(w) for w in windows) > -45, [level_db(w) for w in windows]


def test_a_plan_without_stabilitys_licence_is_scored_by_the_midi_engine(
    music_api: Api, tmp_path: Path
) -> None:
    with music_api.client() as client:
        account = register(client)
        put_on_plan(music_api, account.id, "creator")
        created = client.post(
            "/api/projects/create", headers=account.auth, json={"title": "Scored", "spec": SPEC}
        )
        assert created.status_code == 201, created.text
        project = str(created.json()["id"])
        job = render(client, account, project)
        check_film(client, account, project, job, tmp_path)
        assert engines_of(job)["music"] == "midi"
