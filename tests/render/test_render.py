"""The render DAG end to end on a local Ray with the CPU engines on Serve; the films are checked
by decoding them."""

from __future__ import annotations

import itertools
import os
import re
import signal
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from cluster.settings import Settings
from models.base import MusicStyle
from models.mouth import detect_face
from pipeline.render.assemble import frames_at, inspect_film
from pipeline.render.dag import RenderInputs, RenderReport, render_film
from pipeline.render.narration import split_sentences
from pipeline.render.podcast import HIGHLIGHT, head_picture, plate_box, tile_boxes
from pipeline.render.spec import FilmSpec
from tests.render.conftest import EXAMPLES, example
from tests.services import own_processes

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("cpu_engines")]


def render(
    settings: Settings, spec: FilmSpec, tmp: Path, **kw: object
) -> tuple[RenderReport, Path]:
    stages: list[str] = []
    inputs = RenderInputs(settings=settings, spec=spec, spec_dir=str(EXAMPLES), **kw)
    report, files = render_film(inputs, lambda stage, status, progress: stages.append(stage))
    tmp.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    assert {"voice"} <= set(stages)
    return report, tmp


def audio_samples(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = [frame.to_ndarray().mean(axis=0) for frame in container.decode(stream)]
        return np.concatenate(chunks), stream.rate


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples)))) if len(samples) else 0.0


def srt_cues(text: str) -> list[tuple[float, float, str]]:
    cues = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        start, end = (
            sum(float(x) * m for x, m in zip(re.split("[:,]", t)[:3], (3600, 60, 1), strict=True))
            + int(t[-3:]) / 1000
            for t in lines[1].split(" --> ")
        )
        cues.append((start, end, " ".join(lines[2:])))
    return cues


def test_story_film_is_a_correct_mp4(settings: Settings, tmp_path: Path) -> None:
    spec = example("story", resolution=360)
    report, out = render(settings, spec, tmp_path / "story")
    film = out / "film.mp4"
    info = inspect_film(film)
    assert (info.video_codec, info.video_profile, info.pix_fmt) == ("h264", "High", "yuv420p")
    assert (info.audio_codec, info.sample_rate) == ("aac", 48000)
    assert info.faststart
    assert (info.width, info.height) == spec.frame_size == (640, 360)
    assert info.frame_count == report.frame_count
    assert abs(info.video_duration_s - report.duration_s) < 0.1
    assert abs(info.audio_duration_s - report.duration_s) < 0.1

    times = np.linspace(0.5, report.duration_s - 0.5, 12)
    frames = frames_at(film, list(times))
    assert all(frame.mean() > 20 for frame in frames), "no black frames mid-film"
    assert all(np.abs(a.astype(int) - b).mean() > 1 for a, b in itertools.pairwise(frames)), (
        "the picture changes through the film"
    )

    samples, rate = audio_samples(film)
    cues = srt_cues((out / "subtitles.srt").read_text())
    spoken = np.concatenate([samples[int(s * rate) : int(e * rate)] for s, e, _ in cues])
    assert rms(spoken) > 0.05, "narration is audible where the subtitles say it is"

    narrated = [scene.narration for scene in spec.scenes if scene.narration]
    assert " ".join(text for _, _, text in cues).replace("\n", " ") == " ".join(narrated)
    assert len(report.cache_misses) >= 2 * len(spec.scenes)
    for name in ("thumbnail.jpg", "thumbnail1.jpg", "thumbnail2.jpg", "thumbnail3.jpg"):
        with av.open(str(out / name)) as image:
            frame = next(image.decode(video=0))
            assert (frame.width, frame.height) == (1280, 720)
    assert (out / "storyboard.png").stat().st_size > 10_000
    assert (out / "subtitles.vtt").read_text().startswith("WEBVTT")


def test_subtitle_cues_match_the_voice_within_100_ms(settings: Settings, tmp_path: Path) -> None:
    """Each cue starts where its sentence's speech starts in the film's audio."""
    spec = example("short", resolution=240, music={"style": "none"})
    report, out = render(settings, spec, tmp_path / "short")
    samples, rate = audio_samples(out / "film.mp4")
    window = int(0.01 * rate)
    energy = np.array([rms(samples[i : i + window]) for i in range(0, len(samples), window)])
    loud = energy > energy.max() * 0.05
    audible = energy > energy.max() * 0.01
    cues = srt_cues((out / "subtitles.srt").read_text())
    for i, (start, end, _) in enumerate(cues):
        first, last = int(start * 100), int(end * 100)
        onset = first + int(np.argmax(loud[first:]))
        assert abs(onset - first) <= 10, f"speech at {onset / 100:.2f} s, cue at {start:.2f} s"
        assert audible[last - 10 : last].any(), f"speech runs until the cue ends at {end:.2f} s"
        next_start = cues[i + 1][0] if i + 1 < len(cues) else report.duration_s
        if next_start - end > 0.3:
            assert not audible[last + 10 : last + 20].any(), f"silence follows the cue at {end:.2f}"


def test_vertical_short_is_9_16(settings: Settings, tmp_path: Path) -> None:
    spec = example("short", resolution=360)
    _, out = render(settings, spec, tmp_path / "vertical")
    info = inspect_film(out / "film.mp4")
    assert (info.width, info.height) == (360, 640)
    assert info.height / info.width == pytest.approx(16 / 9, rel=0.01)


def test_sloka_has_a_drone_under_the_recitation(settings: Settings, tmp_path: Path) -> None:
    spec = example("sloka", resolution=240)
    assert spec.music.style is MusicStyle.sloka
    _report, out = render(settings, spec, tmp_path / "sloka")
    samples, rate = audio_samples(out / "film.mp4")
    cues = srt_cues((out / "subtitles.srt").read_text())
    gaps = [(e, s) for (_, e, _), (s, _, _) in itertools.pairwise(cues) if s - e > 0.2]
    assert gaps, "the recitation pauses between verses"
    between = np.concatenate([samples[int(e * rate) + 500 : int(s * rate) - 500] for e, s in gaps])
    assert rms(between) > 0.005, "the drone sounds between the verses"
    assert (out / "music.mid").read_bytes()[:4] == b"MThd"


def test_editing_one_scene_re_renders_only_that_scene(settings: Settings, tmp_path: Path) -> None:
    """Scene 6 changes its narration: its voice and clip render again, the soundtrack, the
    assembly and the stills; every other scene, and the score (composed for the film's length
    rounded up), come from the cache."""
    spec = example("story", resolution=240)
    first, _ = render(settings, spec, tmp_path / "first")
    scenes = list(spec.scenes)
    scenes[5] = scenes[5].model_copy(update={"narration": "The sky, she said, is a road home."})
    edited = spec.model_copy(update={"scenes": scenes})
    second, out = render(settings, edited, tmp_path / "second")
    assert sorted(second.cache_misses) == [
        "assembly", "clip:5", "soundtrack", "stills", "voice:5",
    ]  # fmt: skip
    assert {"music"} | {f"clip:{i}" for i in range(5)} | {f"voice:{i}" for i in range(5)} <= set(
        second.cache_hits
    )
    assert second.rendered_seconds < first.rendered_seconds / 3
    assert "is a road home" in (out / "subtitles.srt").read_text()
    assert inspect_film(out / "film.mp4").frame_count == second.frame_count


def test_killing_a_worker_mid_render_still_yields_a_correct_film(
    settings: Settings, tmp_path: Path
) -> None:
    spec = example("short", resolution=240, seed=77)
    killed: list[int] = []

    def kill_a_clip_worker() -> None:
        """SIGKILL the first worker seen encoding a part of a clip (Ray titles it
        `ray::segment_stage`) of this session's Ray."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for worker in own_processes("ray::segment_stage"):
                os.kill(worker.pid, signal.SIGKILL)
                killed.append(worker.pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_clip_worker)
    killer.start()
    report, out = render(settings, spec, tmp_path / "killed")
    killer.join()
    assert killed, "a clip worker was killed during the render"
    info = inspect_film(out / "film.mp4")
    assert info.frame_count == report.frame_count
    assert abs(info.duration_s - report.duration_s) < 0.1


def test_stop_at_voice_gives_narration_and_storyboard_without_pictures(
    settings: Settings, tmp_path: Path
) -> None:
    spec = example("short", resolution=240)
    report, out = render(settings, spec, tmp_path / "voice", stop_at="voice")
    assert {p.name for p in out.iterdir()} == {
        "plan.json", "storyboard.png", "narration.wav", "subtitles.srt", "subtitles.vtt",
    }  # fmt: skip
    assert not any(m.startswith("clip") for m in report.cache_misses + report.cache_hits)
    assert report.rendered_seconds == 0


def test_podcast_mouths_move_only_while_their_speaker_talks(
    settings: Settings, tmp_path: Path
) -> None:
    """The podcast example, decoded: each speaker's mouth (found in their tile as the mouth
    engine finds it) changes from frame to frame during that speaker's lines and keeps still
    during the other's; each tile has its name lower-third, and the talking speaker's tile is
    framed in the highlight colour."""
    spec = example("podcast", resolution=240, fps=12)
    podcast = spec.scenes[0].podcast
    assert podcast is not None
    _, out = render(settings, spec, tmp_path / "podcast")
    with av.open(str(out / "film.mp4")) as container:
        decoded = [(f.key_frame, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    frames = [frame.astype(np.int16) for _, frame in decoded]
    # The codec refreshes every pixel at a key frame (a clip's part starts on one) and settles
    # on the next frame: changes there are the codec's, not a mouth's.
    key_frames = np.array([key for key, _ in decoded])
    key_frames[1:] |= key_frames[:-1]
    cues = iter(srt_cues((out / "subtitles.srt").read_text()))
    spans = []  # per line, its speaker, when its first sentence starts and its last ends
    for line in podcast.lines:
        sentences = [next(cues) for _ in split_sentences(line.text)]
        spans.append((line.speaker, sentences[0][0], sentences[-1][1]))
    assert next(cues, None) is None

    boxes = tile_boxes(spec.frame_size, podcast.layout, len(podcast.speakers))
    portrait = np.asarray(Image.open(EXAMPLES / "assets" / "astronaut.png").convert("RGB"))
    fade = round(0.5 * spec.fps)  # the film fades in and out: every pixel changes there
    times = np.arange(len(frames)) / spec.fps
    for name, box in zip(podcast.speakers, boxes, strict=True):
        face = detect_face(head_picture(portrait, box))
        assert face is not None
        mx, my = box.left + face.mouth[0], box.top + face.mouth[1]
        rows = slice(round(my - 0.1 * face.size), round(my + 0.5 * face.size))
        columns = slice(round(mx - 0.4 * face.size), round(mx + 0.4 * face.size))
        change = np.array([0.0] + [
            float(np.abs(b[rows, columns] - a[rows, columns]).mean())
            for a, b in itertools.pairwise(frames)
        ])  # fmt: skip
        moving = (change > 2.0) & ~key_frames
        own = [(s, e) for who, s, e in spans if who == name]
        others = [(s, e) for who, s, e in spans if who != name]
        for start, end in own:
            during = (times >= start) & (times <= end)
            assert moving[during].mean() > 0.3, f"{name}'s mouth moves while {name} talks"
        for start, end in others:
            during = (times >= start + 0.5) & (times <= end)  # own mouth closing after a turn
            assert not moving[during].any(), f"{name}'s mouth is still while the other talks"
        talking = np.zeros(len(frames), bool)
        for start, end in own:
            talking |= (times >= start - 0.1) & (times <= end + 0.5)
        wrong = (moving & ~talking)[fade + 1 : -fade]  # change i is from frame i - 1 to i
        assert not wrong.any(), f"{name}'s mouth moves at {times[fade + 1 : -fade][wrong]} s"

    for who, start, end in spans:
        frame = frames[int((start + end) / 2 * spec.fps)]
        for name, box in zip(podcast.speakers, boxes, strict=True):
            plate = frame[plate_box(box, spec.frame_size).slices]
            assert (plate.max(axis=2) < 60).mean() > 0.5, "a dark lower-third under each tile"
            assert (plate.min(axis=2) > 200).sum() > 10, f"{name}'s name in white on it"
            above = frame[box.top - 2, box.left + 10 : box.left + box.width - 10]
            highlighted = np.abs(above - np.array(HIGHLIGHT)).max(axis=1).mean() < 40
            assert highlighted == (name == who), f"only the talking speaker is framed: {who}"
