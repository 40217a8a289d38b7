"""A `final` render through the neural engine deployments, on CPU: the applications of
serve_config.gpu.yaml (GPU fractions set to zero, tiny models, two inference steps) deployed with
`cluster.runtime.deploy`, LTX-Video for the pictures, VITS for the voice and Wav2Lip for a
speaking character; the film is checked by decoding it. The Stable Diffusion image engine draws
the thumbnails' key art (its stage called directly: the rest of the render is the same)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import ray
from ray import serve
from ray.serve.schema import ReplicaState

from cluster.runtime import deploy
from cluster.settings import Settings
from models.registry import Capability, engine_info
from pipeline.render.assemble import inspect_film
from pipeline.render.dag import (
    EngineChoice,
    RenderInputs,
    key_art_request,
    plan_scenes,
    render_film,
    stills_key,
    stills_stage,
)
from pipeline.render.engine_calls import call_engine
from pipeline.render.spec import FilmSpec
from pipeline.render.stage_cache import StageCache, array_from_image, array_to_jpeg
from pipeline.render.thumbnails import THUMBNAIL_SIZE, fill_frame, make_thumbnails, with_title
from pipeline.render.watchdog import Watch
from pipeline.storage import open_storage
from tests.deployments.conftest import EXAMPLES, GPU_CONFIG, derived_config

pytestmark = pytest.mark.ray

ENGINES = EngineChoice(video="ltx", image="card", voice="coqui-vits", lipsync="wav2lip")
NEURAL = ("video-ltx", "voice-coqui-vits", "lipsync-wav2lip")
WITH_SOUND = "video-ltx-2"
KEY_ART = "image-diffusers"

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
        models_dir=tiny_models(["ltx-video", "ltx-2", "vits", "wav2lip", "keyframes"]),
        serve_config=derived_config(GPU_CONFIG, tmp / "serve_config.yaml"),
        _env_file=None,
    )
    deploy(settings, {*NEURAL, WITH_SOUND, KEY_ART})
    yield settings
    for name in (*NEURAL, WITH_SOUND, KEY_ART):
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


def test_thumbnails_are_the_image_engines_key_art_titled_or_frames_when_it_fails(
    neural_settings: Settings,
) -> None:
    """The stills stage asks the deployed image engine for key art and composes the title over
    it like over a picked frame; an engine that gives no answer in time (the watchdog set to a
    millisecond) leaves the frame-picked thumbnails, a warning and no cache entry."""
    spec = FilmSpec.model_validate(
        {"title": "Dawn Lake", "logline": "A lake wakes at dawn.", "resolution": 144,
         "fps": 12, "scenes": [{"prompt": "a lake at dawn", "duration_s": 1}]}
    )  # fmt: skip
    inputs = RenderInputs(
        settings=neural_settings, spec=spec, engines=EngineChoice(image="diffusers")
    )
    plans = plan_scenes(inputs, [None])
    rng = np.random.default_rng(0)
    frames = [np.kron(rng.integers(0, 256, (8, 16, 3)), np.ones((18, 16, 1))).astype(np.uint8)
              for _ in range(3)]  # fmt: skip
    samples = [array_to_jpeg(frame) for frame in frames]
    picked = make_thumbnails([array_from_image(s) for s in samples], spec.title)
    cpu_key = stills_key(inputs.model_copy(update={"engines": EngineChoice()}), plans)
    assert stills_key(inputs, plans) != cpu_key, "the key art's engine and request are in the key"

    files, fallback = ray.get(
        stills_stage.remote(inputs, plans, stills_key(inputs, plans), samples)
    )
    assert fallback is None
    thumbnail = array_from_image(files["thumbnail.jpg"])
    assert thumbnail.shape == (THUMBNAIL_SIZE[1], THUMBNAIL_SIZE[0], 3)
    info = engine_info(Capability.image, "diffusers")
    drawn = call_engine(info, "keyframe", key_art_request(inputs), watch=Watch("t", None, 300))
    titled = np.asarray(with_title(fill_frame(drawn, THUMBNAIL_SIZE), spec.title), dtype=float)
    untitled = np.asarray(fill_frame(drawn, THUMBNAIL_SIZE), dtype=float)
    assert np.abs(thumbnail - titled).mean() < 2, "the key art, with the title composed over it"
    assert np.abs(thumbnail - untitled)[500:].mean() > 10, "the title is there"
    assert np.abs(thumbnail - array_from_image(picked.chosen.image)).mean() > 20
    assert files["thumbnail2.jpg"] == picked.candidates[0].image, "frames follow the key art"

    silent = neural_settings.model_copy(update={"watchdog_floor_s": 0.001, "watchdog_factor": 1e-9})
    failing = inputs.model_copy(
        update={"settings": silent, "spec": spec.model_copy(update={"seed": 9})}
    )
    key = stills_key(failing, plans)
    files, fallback = ray.get(stills_stage.remote(failing, plans, key, samples))
    assert fallback is not None and "diffusers image engine" in fallback and "frames" in fallback
    assert files["thumbnail.jpg"] == picked.chosen.image
    cache = StageCache(open_storage(neural_settings), "local")
    assert cache.get("stills", key) is None, "the next render asks the engine again"
