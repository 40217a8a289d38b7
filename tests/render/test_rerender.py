"""Re-rendering costs what changed: an unchanged render is the earlier outputs at once, an edited
one redoes only what the edit reaches and gives what a render from an empty cache gives, and
cache hits are scoped per user."""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path

import av
import numpy as np
import pytest
from ray.remote_function import RemoteFunction

from cluster.settings import Settings
from pipeline.render.dag import (
    RenderInputs,
    RenderReport,
    ScenePlan,
    cached_voice,
    plan_scenes,
    render_film,
    voice_key,
)
from pipeline.render.spec import FilmSpec
from pipeline.render.stage_cache import StageCache
from pipeline.storage import open_storage
from tests.render.conftest import EXAMPLES, example

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("cpu_engines")]

Stages = list[tuple[str, str]]


def render(
    settings: Settings, spec: FilmSpec, owner: uuid.UUID | None = None
) -> tuple[RenderReport, dict[str, bytes], Stages]:
    stages: Stages = []
    inputs = RenderInputs(settings=settings, spec=spec, spec_dir=str(EXAMPLES), owner=owner)
    report, files = render_film(inputs, lambda stage, status, _: stages.append((stage, status)))
    return report, files, stages


def edited_story() -> tuple[FilmSpec, FilmSpec]:
    """The story, and the story with a sentence added to scene 4's narration (scene 4 crossfades
    into scene 5)."""
    spec = example("story", resolution=240)
    scenes = list(spec.scenes)
    narration = f"{scenes[3].narration} Nobody on Earth slept that night."
    scenes[3] = scenes[3].model_copy(update={"narration": narration})
    return spec, spec.model_copy(update={"scenes": scenes})


def decoded(film: bytes, tmp: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every video frame (RGB) and the audio samples of a film."""
    path = tmp / f"{uuid.uuid4()}.mp4"
    path.write_bytes(film)
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        sound = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    return frames, sound


def test_an_unchanged_render_returns_the_outputs_without_starting_a_task(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = example("short", resolution=240)
    first, files, _ = render(settings, spec)

    def no_task(*args: object, **kwargs: object) -> None:
        raise AssertionError("an unchanged render started a task")

    monkeypatch.setattr(RemoteFunction, "_remote", no_task)
    started = time.perf_counter()
    again, same_files, stages = render(settings, spec)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert same_files == files
    assert again.cache_hits == ["film"] and again.cache_misses == []
    assert again.rendered_seconds == 0
    assert (again.duration_s, again.frame_count) == (first.duration_s, first.frame_count)
    assert stages == [("voice", "cached"), ("video", "cached"), ("assemble", "cached")]


def test_an_edited_render_redoes_what_the_edit_reaches_and_matches_an_empty_cache(
    settings: Settings, tmp_path: Path
) -> None:
    """Scene 4's narration grows: its voice and clip, the soundtrack, the assembly and the
    stills are made again, nothing else (the score, composed for the film's length rounded up,
    is reused and ends with the longer film; scene 5
    crossfades from scene 4's last frame, which the edit leaves as it was); the outputs are
    those of a render of the edited spec by a user whose cache holds only the voices. (eSpeak
    carries its pitch flutter's phase from one utterance to the next, so speech synthesized
    again differs by a few samples: the voices are given to both renders, and everything made
    from them is compared.)"""
    spec, edited = edited_story()
    _, first_files, _ = render(settings, spec)
    report, files, stages = render(settings, edited)
    assert sorted(report.cache_misses) == [
        "assembly", "clip:3", "soundtrack", "stills", "voice:3",
    ]  # fmt: skip
    assert "music" in report.cache_hits
    assert ("voice", "succeeded") in stages and ("video", "succeeded") in stages

    stranger = uuid.uuid4()
    caches = scoped_caches(settings, "local", f"user-{stranger}")
    inputs = RenderInputs(settings=settings, spec=edited, spec_dir=str(EXAMPLES))
    for key in filter(None, (voice_key(inputs, i) for i in range(len(edited.scenes)))):
        voice = caches["local"].get("voice", key)
        assert voice is not None
        caches[f"user-{stranger}"].put("voice", key, voice)
    fresh_report, fresh_files, _ = render(settings, edited, owner=stranger)
    assert sorted(fresh_report.cache_hits) == [f"voice:{i}" for i in range(6)]
    assert files.keys() == fresh_files.keys()
    assert files["subtitles.srt"] == fresh_files["subtitles.srt"]
    frames, sound = decoded(files["film.mp4"], tmp_path)
    fresh_frames, fresh_sound = decoded(fresh_files["film.mp4"], tmp_path)
    assert frames.shape == fresh_frames.shape
    assert frames.shape == fresh_frames.shape
    assert psnr(frames, fresh_frames) >= 40, "every frame the same but for encoder noise"
    assert sound.shape == fresh_sound.shape
    assert np.sqrt(np.mean(np.square(sound - fresh_sound))) < 1e-3

    # the clips the edit does not reach are the first render's bytes, remuxed as they were
    scenes = [plan.frames for plan in plans(settings, spec, caches["local"])]
    edited_scenes = [plan.frames for plan in plans(settings, edited, caches["local"])]
    before, after = video_packets(first_files["film.mp4"]), video_packets(files["film.mp4"])
    head, tail = sum(scenes[:3]), sum(scenes[4:])
    assert (sum(edited_scenes[:3]), sum(edited_scenes[4:])) == (head, tail)
    assert after[:head] == before[:head]
    assert after[-tail:] == before[-tail:]


def test_a_crossfade_is_made_again_when_the_frame_it_fades_from_changes(
    settings: Settings,
) -> None:
    """The short's scenes crossfade 1 into 2 into 3: a new picture for scene 1 changes its last
    frame, so scene 2 fades from another frame and is made again; scene 2's own last frame is as
    it was, so scene 3 is not."""
    spec = example("short", resolution=240, music={"style": "none"})
    scenes = list(spec.scenes)
    scenes[0] = scenes[0].model_copy(update={"prompt": "A lighthouse on a cliff at night"})
    render(settings, spec)
    report, _, _ = render(settings, spec.model_copy(update={"scenes": scenes}))
    assert {"clip:0", "clip:1"} <= set(report.cache_misses)
    assert "clip:2" in report.cache_hits


def psnr(frames: np.ndarray, reference: np.ndarray) -> float:
    """The lowest PSNR (dB) of a frame against its reference."""
    error = np.square(frames.astype(np.float64) - reference).reshape(len(frames), -1).mean(axis=1)
    return float(10 * np.log10(255**2 / max(float(error.max()), 1e-10)))


def video_packets(film: bytes) -> list[bytes]:
    with av.open(io.BytesIO(film), "r") as container:
        stream = container.streams.video[0]
        return [bytes(p) for p in container.demux(stream) if p.size]


def scoped_caches(settings: Settings, *scopes: str) -> dict[str, StageCache]:
    return {scope: StageCache(open_storage(settings), scope) for scope in scopes}


def plans(settings: Settings, spec: FilmSpec, cache: StageCache) -> list[ScenePlan]:
    """The scene plans of a spec whose voices are in `cache`."""
    inputs = RenderInputs(settings=settings, spec=spec, spec_dir=str(EXAMPLES))
    keys = [voice_key(inputs, i) for i in range(len(spec.scenes))]
    return plan_scenes(inputs, [None if key is None else cached_voice(cache, key) for key in keys])


def test_another_users_identical_render_is_not_a_hit(settings: Settings) -> None:
    """Hits are scoped per user: a free, instant render would tell a user that someone else
    rendered that exact spec. An operator may share them."""
    spec = example("short", resolution=240, music={"style": "none"})
    alice, bob = uuid.uuid4(), uuid.uuid4()
    render(settings, spec, owner=alice)
    theirs, _, _ = render(settings, spec, owner=bob)
    assert theirs.cache_hits == []
    assert len(theirs.cache_misses) >= 2 * len(spec.scenes)
    again, _, _ = render(settings, spec, owner=bob)
    assert again.cache_hits == ["film"]

    shared = settings.model_copy(update={"stage_cache_shared": True})
    render(shared, spec, owner=alice)
    carol, _, _ = render(shared, spec, owner=uuid.uuid4())
    assert carol.cache_hits == ["film"]
