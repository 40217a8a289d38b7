"""Engines whose model folder is missing or corrupt: their replicas fail the health check with
the reason, `serve.status()` shows it, a render through them fails with EngineUnavailable naming
it, and the other applications keep serving."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from ray import serve
from ray.serve.schema import ApplicationStatus, DeploymentStatus, DeploymentStatusOverview

from cluster.runtime import deploy, wait_running
from cluster.settings import Settings
from models.base import Voice, VoiceRequest
from models.registry import engine_info
from pipeline.errors import EngineUnavailable
from pipeline.render.dag import EngineChoice, RenderInputs, render_film
from pipeline.render.spec import FilmSpec
from tests.deployments.conftest import GPU_CONFIG, derived_config

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

UNSERVABLE = {DeploymentStatus.UNHEALTHY, DeploymentStatus.DEPLOY_FAILED}
HEALTHY = {"video-animatic", "voice-espeak", "music-midi"}
BROKEN = {"video-ltx", "lipsync-wav2lip"}
LTX_LOAD_FAILURE = "video-ltx: cannot load model: cannot load LTXPipeline from"
NO_WAV2LIP = "lipsync-wav2lip: cannot load model: model folder"


@pytest.fixture(scope="module")
def broken_settings(
    cpu_engines: None,
    tiny_models: Callable[[Iterable[str]], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Settings]:
    """A models folder with a truncated LTX-Video transformer and no Wav2Lip at all. Wav2Lip
    starts a replica at deploy time (initial_replicas 1); LTX-Video waits for a request."""
    tmp = tmp_path_factory.mktemp("broken")
    shutil.copytree(tiny_models(["ltx-video"]) / "ltx-video", tmp / "models" / "ltx-video")
    weights = tmp / "models" / "ltx-video" / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    config = derived_config(
        GPU_CONFIG,
        tmp / "serve_config.yaml",
        deployment={"lipsync-wav2lip": {"autoscaling_config": {"initial_replicas": 1}}},
    )
    settings = Settings(
        data_dir=tmp / "var", models_dir=tmp / "models", serve_config=config, _env_file=None
    )
    with pytest.raises(RuntimeError, match="lipsync-wav2lip"):
        deploy(settings, BROKEN)
    wait_running({"video-ltx"}, timeout_s=120)
    yield settings
    for name in BROKEN:
        serve.delete(name)


def settled(name: str, timeout_s: float) -> DeploymentStatusOverview:
    """The engine deployment once Serve has stopped retrying its replicas."""
    deadline = time.monotonic() + timeout_s
    while True:
        deployment = serve.status().applications[name].deployments[name]
        if deployment.status in UNSERVABLE or time.monotonic() > deadline:
            return deployment
        time.sleep(1)


def test_a_missing_model_folder_fails_the_deployment_with_the_reason(
    broken_settings: Settings,
) -> None:
    deployment = settled("lipsync-wav2lip", timeout_s=60)
    assert deployment.status == DeploymentStatus.DEPLOY_FAILED
    assert NO_WAV2LIP in deployment.message
    assert str(broken_settings.resolved_models_dir / "wav2lip") in deployment.message


def test_a_render_through_a_corrupt_model_fails_with_the_reason(
    broken_settings: Settings,
) -> None:
    spec = FilmSpec.model_validate(
        {
            "title": "Broken",
            "resolution": 144,
            "fps": 12,
            "music": {"style": "none"},
            "scenes": [{"narration": "Nothing to see.", "prompt": "a lake", "duration_s": 1}],
        }
    )
    engines = EngineChoice(video="ltx", voice="espeak")
    inputs = RenderInputs(settings=broken_settings, spec=spec, engines=engines)
    with pytest.raises(EngineUnavailable, match=LTX_LOAD_FAILURE):
        render_film(inputs, lambda stage, status, progress: None)
    deployment = settled("video-ltx", timeout_s=120)
    assert deployment.status == DeploymentStatus.UNHEALTHY
    assert LTX_LOAD_FAILURE in deployment.message


def test_the_other_applications_keep_serving(broken_settings: Settings) -> None:
    applications = serve.status().applications
    assert all(applications[name].status == ApplicationStatus.RUNNING for name in HEALTHY)
    voice = serve.get_app_handle(engine_info("voice", "espeak").deployment)
    request = VoiceRequest(text="Still here.", voice=Voice())
    assert voice.synthesize.remote(request).result(timeout_s=60).duration_s > 0.3


def test_a_job_on_a_corrupt_model_fails_with_the_reason_and_releases_its_credits(
    broken_settings: Settings, tmp_path: Path
) -> None:
    from db.migrate import upgrade
    from db.models import JobStatus
    from pipeline.jobs import submission as jobs
    from pipeline.jobs.submission import RenderRequest
    from tests.jobs.conftest import (
        balance,
        finished,
        make_project,
        make_user,
        settled_balance,
        tiny_spec,
        wait_for,
    )

    settings = broken_settings.model_copy(
        update={"database_url": f"sqlite:///{tmp_path / 'studio.db'}", "video_engine": "ltx"}
    )
    upgrade(settings.resolved_database_url)
    user = make_user(settings)
    granted, _ = balance(settings, user)
    project = make_project(settings, user, tiny_spec())
    job = jobs.submit_render(settings, user, project.id, RenderRequest(quality="final"))
    assert balance(settings, user)[1] > 0, "the final render reserved its estimate"
    failed = wait_for(settings, job.id, finished, timeout_s=240)
    assert failed.status == JobStatus.failed
    assert LTX_LOAD_FAILURE in (failed.error or "")
    assert settled_balance(settings, user) == (granted, 0)
