"""A `final` render through the neural engine deployments, on CPU: the applications of
serve_config.gpu.yaml (GPU fractions set to zero, tiny models, two inference steps) deployed with
`cluster.runtime.deploy`, LTX-Video for the pictures, VITS for the voice and Wav2Lip for a
speaking character; the film is checked by decoding it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from ray import serve
from ray.serve.schema import ReplicaState

from cluster.runtime import deploy
from cluster.settings import Settings
from pipeline.render.assemble import inspect_film
from pipeline.render.dag import EngineChoice, RenderInputs, render_film
from pipeline.render.spec import FilmSpec
from tests.deployments.conftest import EXAMPLES, GPU_CONFIG, derived_config

pytestmark = pytest.mark.ray

ENGINES = EngineChoice(video="ltx", image="card", voice="coqui-vits", lipsync="wav2lip")
NEURAL = ("video-ltx", "voice-coqui-vits", "lipsync-wav2lip")
WITH_SOUND = "video-ltx-2"

SPEC = FilmSpec.model_validate(
    {
        "title": "Tiny Final",
        "aspect_ratio": "1:1",
        "resolution": 144,
        "fps": 12,
        "seed": 5,
        "music": {"mood": "calm", "style": "score", "volume": 0.3},
        "scenes": [
            {"narration": "The lake wakes.", "prompt": "a lake at dawn", "duration_s": 1},
            {
                "narration": "I am ready.",
                "prompt": "an astronaut speaks",
                "character": "assets/astronaut.png",
                "duration_s": 1,
            },
        ],
    }
)


@pytest.fixture(scope="module")
def neural_settings(
    cpu_engines: None,
    tiny_models: Callable[[Iterable[str]], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Settings]:
    """The tiny neural engines, deployed from the GPU config on CPU next to the CPU engines."""
    tmp = tmp_path_factory.mktemp("final")
    settings = Settings(
        data_dir=tmp / "var",
        models_dir=tiny_models(["ltx-video", "ltx-2", "vits", "wav2lip"]),
        serve_config=derived_config(GPU_CONFIG, tmp / "serve_config.yaml"),
        _env_file=None,
    )
    deploy(settings, {*NEURAL, WITH_SOUND})
    yield settings
    for name in (*NEURAL, WITH_SOUND):
        serve.delete(name)


def running_replicas(name: str) -> int:
    deployment = serve.status().applications[name].deployments[name]
    return deployment.replica_states.get(ReplicaState.RUNNING, 0)


def test_final_render_through_the_neural_deployments_is_a_correct_mp4(
    neural_settings: Settings, tmp_path: Path
) -> None:
    assert [running_replicas(name) for name in NEURAL] == [0, 0, 0], "scaled to zero when idle"
    inputs = RenderInputs(
        settings=neural_settings, spec=SPEC, engines=ENGINES, spec_dir=str(EXAMPLES)
    )
    report, files = render_film(inputs, lambda stage, status, progress: None)
    assert [running_replicas(name) for name in NEURAL] == [1, 1, 1], "requests scaled them up"
    film = tmp_path / "film.mp4"
    film.write_bytes(files["film.mp4"])

    info = inspect_film(film)
    assert (info.video_codec, info.audio_codec, info.sample_rate) == ("h264", "aac", 48000)
    assert (info.width, info.height) == SPEC.frame_size == (144, 144)
    assert info.frame_count == report.frame_count == round(report.duration_s * SPEC.fps)
    assert abs(info.video_duration_s - report.duration_s) < 0.1
    assert abs(info.audio_duration_s - report.duration_s) < 0.1
    assert sorted(report.cache_misses) == [
        "assembly", "clip:0", "clip:1", "music", "soundtrack", "stills", "voice:0", "voice:1",
    ]  # fmt: skip
    assert files["subtitles.srt"].decode().count("-->") >= 2


def test_ltx2s_own_sound_is_an_ambience_bed_or_dropped_by_setting(
    neural_settings: Settings, tmp_path: Path
) -> None:
    """A scene with no narration and no music: its sound is LTX-2's own, kept under the
    (absent) narration at STUDIO_AMBIENCE_VOLUME, or silence with STUDIO_VIDEO_SOUND=drop."""
    spec = FilmSpec.model_validate(
        {"title": "Hum", "aspect_ratio": "1:1", "resolution": 144, "fps": 12,
         "music": {"style": "none"}, "scenes": [{"prompt": "rain on a window", "duration_s": 2}]}
    )  # fmt: skip
    levels = {}
    for sound in ("ambience", "drop"):
        settings = neural_settings.model_copy(update={"video_sound": sound})
        engines = EngineChoice(video="ltx-2", image="card")
        inputs = RenderInputs(settings=settings, spec=spec, engines=engines)
        report, files = render_film(inputs, lambda stage, status, progress: None)
        film = tmp_path / f"{sound}.mp4"
        film.write_bytes(files["film.mp4"])
        info = inspect_film(film)
        assert abs(info.audio_duration_s - report.duration_s) < 0.1
        with av.open(str(film)) as container:
            decoded = [f.to_ndarray().mean(axis=0) for f in container.decode(audio=0)]
        samples = np.concatenate(decoded)
        levels[sound] = 20 * np.log10(np.sqrt(np.mean(samples**2)) + 1e-12)
    # The tiny model's sound is levelled to -18 dBFS where it is audible, then taken down to the
    # ambience volume (0.3: -10.5 dB); it is shorter than the clip, so the film's RMS is lower.
    assert levels["ambience"] > -60, levels
    assert levels["drop"] < -80, levels
