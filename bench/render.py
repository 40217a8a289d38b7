"""Render speed on this machine: the render DAG against the encoder alone and against MoviePy,
1 render worker against 2, and re-rendering after an edit. Run by hand (minutes; `--quick`
renders the 15 s short instead of the 45 s story):

    python -m bench.render [--quick] [--spec examples/story.yaml] [--resolution 720]
    python -m bench.render --rerender      # first render, scene 4 edited, unchanged (`rerender`)

- DAG: `render_film` on a fresh local Ray, in a subprocess per pass, so that each gets its own
  Ray with its number of `render_slot`s (`render_workers`), pinned to its number of cores (CPU
  affinity, which every Ray process it starts inherits). A worker is a core with its render
  slot: "1 worker" is the whole cluster on one core with one slot, "2 workers" two cores with
  two slots. A third pass, one slot on two cores, shows what the slot alone buys: there the
  stages that take no slot (voice, video, lip-sync, soundtrack, Serve) already use the second
  core. Ray start-up, engine deployment and a warm-up render of the same spec at 144p (worker
  processes, imports, replicas scaled up from zero) are timed apart; the render timed is the
  next one, on an empty stage cache.
- encode only: the same frames (animatic, lip-sync, captions and transitions, made here up
  front with the DAG's own functions) and soundtrack; only `encode_segment` of each scene and
  `assemble` are timed, with x264 free to use every core (the DAG gives each scene one core and
  encodes scenes side by side). What the DAG costs above the encoder is orchestration and frame
  making.
- MoviePy: the same raw animatic frames and audio composed the way MoneyPrinterTurbo does it
  (a VideoClip per scene, TextClip captions, fades and crossfades as effects, narration and
  music as a CompositeAudioClip, `write_videofile` with libx264), with the DAG's x264 settings
  (veryfast, CRF 20) so that the encoder preset is not what differs; MoneyPrinterTurbo keeps
  MoviePy's default `medium` preset, which is slower still.

The bench runs `--repeat` rounds (3), each round every pass once, in turn (a DAG pass in a new
subprocess each time), and reports each pass's median run with the range of its wall times: on
a shared 2-core machine one run can take half as long again as the next, and the machine can
speed up or slow down during the bench, which rounds spread over every pass alike. Each run is
measured in wall seconds and in CPU seconds (its process, every descendant: Ray's
processes, ffmpeg, and what they reaped). On a machine shared with other work, wall time depends
on the load (and a pass with more runnable threads takes a bigger share of a contended CPU); CPU
seconds less so. Prints a table and the ratios against their goals: DAG at least 3x faster than
MoviePy, DAG at most 1.5x the encoder alone, 2 workers at least 1.7x faster than 1.
"""

# Figures behind choices in the render code, measured at 720p on a 2-core machine:
# - compose.encode_segment: OpenCV's RGB to limited-range I420 conversion (BT.601) is 6 to 8 times
#   faster than swscale's.
# - dag._one_core: OpenCV left with a thread per core cost 30 % more CPU per frame than one
#   thread, for the same wall time.
# - animatic: OpenCV warps 4-channel images 2 to 3 times faster than 3-channel ones.

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psutil
from moviepy import (
    CompositeVideoClip,
    ImageClip,
    TextClip,
    VideoClip,
    afx,
    concatenate_videoclips,
    vfx,
)
from moviepy.audio.AudioClip import AudioArrayClip, CompositeAudioClip

from cluster.settings import Settings
from models.animatic import AnimaticVideoEngine
from models.base import Audio, Frames, MusicRequest, MusicStyle, VoiceRequest
from models.espeak import EspeakVoiceEngine
from models.mouth import MouthLipSyncEngine
from models.music import MidiMusicEngine
from pipeline.render import audio, dag
from pipeline.render.assemble import assemble, encode_soundtrack, inspect_film
from pipeline.render.compose import EncoderSettings, encode_segment
from pipeline.render.dag import LEAD_S, RenderInputs, ScenePlan, plan_scenes
from pipeline.render.narration import Narration, Segment, narrate
from pipeline.render.spec import FilmSpec, Scene
from pipeline.render.stage_cache import array_to_png
from pipeline.render.subtitles import cues

ROOT = Path(__file__).resolve().parents[1]
TRANSITION_S = 0.5
T = TypeVar("T")


@dataclass
class Timing:
    wall_s: float = 0.0
    cpu_s: float = 0.0


def median(runs: list[T], key: Callable[[T], float]) -> T:
    """The run in the middle by `key` (the upper one of the two middle runs of an even count)."""
    return sorted(runs, key=key)[len(runs) // 2]


@contextlib.contextmanager
def measured() -> Iterator[Timing]:
    """The block's wall and CPU seconds, filled in when it ends."""
    timing = Timing()
    wall, cpu = time.perf_counter(), cpu_seconds()
    yield timing
    timing.wall_s = time.perf_counter() - wall
    timing.cpu_s = cpu_seconds() - cpu


def cpu_seconds() -> float:
    """CPU time of this process, its live descendants and the children each of them reaped."""
    return sum(cpu for _, cpu in process_cpu().values())


def process_cpu() -> dict[int, tuple[str, float]]:
    """(role, CPU seconds) of this process and each live descendant, by pid; the role of a Ray
    process comes from its title (`ray::ServeReplica:video-animatic:...`, `ray::IDLE`)."""
    me = psutil.Process()
    found = {}
    for process in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            cpu = times.user + times.system + times.children_user + times.children_system
            command = process.cmdline()
            title = command[0] if command else process.name()
            found[process.pid] = ("driver" if process == me else _role(title), cpu)
    return found


def _role(title: str) -> str:
    if title.startswith("ray::ServeReplica:"):
        return "Serve replica " + title.split(":")[3]
    if title.startswith(("ray::ServeController", "ray::ProxyActor")):
        return "Serve controller and proxy"
    if title.startswith("ray::"):
        return "task workers"
    return "Ray system (gcs, raylet, agents)"


@dataclass
class Prepared:
    """One film's material, made up front and held as plain arrays (the engines draw their frames
    on demand; here they are drawn before any pass is timed): what the encoder and MoviePy are
    given."""

    spec: FilmSpec
    plans: list[ScenePlan]
    narrations: list[Narration | None]
    raw: list[Frames]
    """The engines' frames (lip-synced), before captions and transitions."""
    composed: list[Frames]
    """What the DAG encodes: captions burned in, transitions applied."""
    music: Audio | None
    soundtrack: Audio
    timing: Timing

    @property
    def duration_s(self) -> float:
        return sum(p.frames for p in self.plans) / self.spec.fps


def load_spec(path: Path, resolution: int) -> FilmSpec:
    spec = FilmSpec.from_file(path)
    return FilmSpec.model_validate({**spec.model_dump(), "resolution": resolution})


def local_settings(data_dir: Path, workers: int) -> Settings:
    """Embedded defaults whatever the environment says: a new local Ray, storage (and so the
    stage cache) under `data_dir`."""
    return Settings(
        data_dir=data_dir,
        render_workers=workers,
        ray_address=None,
        storage_url=None,
        _env_file=None,
    )


# -- DAG (one subprocess per render_workers) ----------------------------------------------------


def dag_run(spec_path: Path, resolution: int, workers: int) -> dict[str, Any]:
    """In a process of its own: a fresh Ray with `workers` render slots, the engines, a warm-up
    render at 144p, then the timed render on an empty cache; seconds of each step, the timed
    render's CPU by process and when each stage ended (from the DAG's progress reports)."""
    import ray

    from cluster.runtime import deploy, start_ray
    from models.registry import Capability

    with tempfile.TemporaryDirectory() as tmp:
        settings = local_settings(Path(tmp) / "run", workers)
        started = time.perf_counter()
        start_ray(settings, quiet=True)
        ray_started = time.perf_counter()
        deploy(settings, {dag.EngineChoice().info(c).deployment for c in Capability})
        deployed = time.perf_counter()
        warm = settings.model_copy(update={"data_dir": Path(tmp) / "warm"})
        _timed_render(warm, load_spec(spec_path, 144), spec_path.parent)
        warmed = time.perf_counter()
        spec = load_spec(spec_path, resolution)
        before = process_cpu()
        with measured() as timing:
            stages, report = _timed_render(settings, spec, spec_path.parent)
        roles: dict[str, float] = {}
        for pid, (role, cpu) in process_cpu().items():
            roles[role] = roles.get(role, 0.0) + cpu - before.get(pid, (role, 0.0))[1]
        ray.shutdown()
    return {
        "workers": workers,
        "ray_start_s": ray_started - started,
        "deploy_s": deployed - ray_started,
        "warmup_s": warmed - deployed,
        "render": asdict(timing),
        "cpu_by_role": roles,
        "stages": stages,
        "frame_count": report.frame_count,
    }


def _timed_render(
    settings: Settings, spec: FilmSpec, spec_dir: Path
) -> tuple[dict[str, float], dag.RenderReport]:
    done: dict[str, float] = {}
    started = time.perf_counter()

    def progress(stage: str, status: str, _: float) -> None:
        if status == "succeeded":
            done.setdefault(stage, time.perf_counter() - started)

    inputs = RenderInputs(settings=settings, spec=spec, spec_dir=str(spec_dir))
    report, files = dag.render_film(inputs, progress)
    assert "film.mp4" in files
    return done, report


@dataclass(frozen=True)
class DagPass:
    cores: int
    slots: int

    @property
    def name(self) -> str:
        if self.cores == self.slots:
            return f"{self.slots} worker{'s' if self.slots > 1 else ''}"
        return f"{self.slots} slot on {self.cores} cores"


DAG_PASSES = [DagPass(cores=2, slots=2), DagPass(cores=1, slots=1), DagPass(cores=2, slots=1)]


def dag_in_subprocess(spec_path: Path, resolution: int, dag_pass: DagPass) -> dict[str, Any]:
    """`dag_run` in a process (and so a Ray) of its own, pinned to the pass's first cores."""
    cores = sorted(os.sched_getaffinity(0))[: dag_pass.cores]
    if len(cores) < dag_pass.cores:
        raise RuntimeError(
            f"{dag_pass.name} needs {dag_pass.cores} cores, this machine has {cores}"
        )
    command = [sys.executable, "-m", "bench.render", "--spec", str(spec_path)]
    command += ["--resolution", str(resolution), "--dag-run", str(dag_pass.slots)]
    done = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=lambda: os.sched_setaffinity(0, cores),
    )
    if done.returncode != 0:
        raise RuntimeError(f"DAG run, {dag_pass.name}, failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- the same material, made up front ------------------------------------------------------------


def prepare(spec: FilmSpec, spec_dir: Path) -> Prepared:
    """The DAG's frames and soundtrack made in this process, with the engines called directly
    and the DAG's own planning, keyframe and composition functions."""
    with measured() as timing:
        material = _material(spec, spec_dir)
    return Prepared(spec, *material, timing)


def _material(
    spec: FilmSpec, spec_dir: Path
) -> tuple[
    list[ScenePlan], list[Narration | None], list[Frames], list[Frames], Audio | None, Audio
]:
    settings = local_settings(Path(tempfile.gettempdir()), 1)  # read only: nothing is stored
    inputs = RenderInputs(settings=settings, spec=spec, spec_dir=str(spec_dir))
    voice, video, lipsync = EspeakVoiceEngine(), AnimaticVideoEngine(), MouthLipSyncEngine()
    narrations = [_narration(voice, scene, spec.seed + i) for i, scene in enumerate(spec.scenes)]
    plans = plan_scenes(inputs, narrations)
    raw: list[Frames] = []
    composed: list[Frames] = []
    for plan, narration in zip(plans, narrations, strict=True):
        scene = spec.scenes[plan.index]
        frames = dag._fit_length(video.generate(dag.video_request(inputs, plan)), plan.frames)
        if narration is not None and scene.character is not None:
            track = audio.place([(LEAD_S, narration.audio)], plan.frames / spec.fps)
            frames = lipsync.sync(frames, track).frames
        raw.append(Frames(frames.pixels, spec.fps))
        previous = array_to_png(composed[-1].pixels[-1]) if composed else None
        clip = dag._finished(inputs, plan, frames, narration, previous)
        composed.append(Frames(clip.pixels, spec.fps))
    duration = sum(p.frames for p in plans) / spec.fps
    music = None
    if spec.music.style is not MusicStyle.none and spec.music.volume > 0:
        score = MusicRequest(
            mood=spec.music.mood,
            tempo_bpm=spec.music.tempo_bpm,
            style=spec.music.style,
            duration_s=duration,
            seed=spec.seed,
        )
        music = MidiMusicEngine().compose(score).audio
    track, _ = dag._narration_track(inputs, plans, narrations, duration)
    soundtrack = audio.mix_film(track, music, music_volume=spec.music.volume)
    return plans, narrations, raw, composed, music, soundtrack


def _narration(voice: EspeakVoiceEngine, scene: Scene, seed: int) -> Narration | None:
    if scene.narration is None:
        return None
    return narrate(
        lambda text: voice.synthesize(VoiceRequest(text=text, voice=scene.voice, seed=seed)),
        scene.narration,
    )


def encode_only(prepared: Prepared, folder: Path) -> Timing:
    """Encode every scene's frames and assemble the film (the encoder's limit): the DAG's x264
    settings, but with as many encoder threads as x264 wants, so that it has every core."""
    every_core = EncoderSettings(threads=0)
    with measured() as timing:
        segments = [encode_segment(frames, every_core) for frames in prepared.composed]
        soundtrack = encode_soundtrack(prepared.soundtrack, prepared.duration_s)
        assemble(segments, soundtrack, folder / "encoded.mp4")
    assert inspect_film(folder / "encoded.mp4").frame_count == sum(p.frames for p in prepared.plans)
    return timing


# -- MoviePy ---------------------------------------------------------------------------------------


def moviepy_film(prepared: Prepared, folder: Path) -> Timing:
    """MoviePy composing the same material and writing the film with libx264."""
    output = folder / "moviepy.mp4"
    with measured() as timing:
        _moviepy_write(prepared, output)
    assert abs(inspect_film(output).duration_s - prepared.duration_s) < 0.2
    return timing


def _moviepy_write(prepared: Prepared, output: Path) -> None:
    spec = prepared.spec
    width, height = spec.frame_size
    scenes = []
    voices = []
    previous: np.ndarray | None = None
    for plan, frames, narration in zip(
        prepared.plans, prepared.raw, prepared.narrations, strict=True
    ):
        pixels = frames.pixels
        duration = len(pixels) / spec.fps

        def frame_at(t: float, pixels: np.ndarray = pixels) -> np.ndarray:
            return pixels[min(len(pixels) - 1, int(t * spec.fps + 0.5))]

        shot = VideoClip(frame_function=frame_at, duration=duration)
        layers = [shot]
        if plan.edges["crossfade_in"] and previous is not None:
            below = ImageClip(previous).with_duration(TRANSITION_S)
            layers = [below, shot.with_effects([vfx.CrossFadeIn(TRANSITION_S)])]
        if narration is not None:
            start = plan.offset_frames / spec.fps + LEAD_S
            voices.append(AudioArrayClip(_stereo(narration.audio), fps=audio.SAMPLE_RATE))
            voices[-1] = voices[-1].with_start(start)
            if spec.captions:
                segments = [s.shifted(LEAD_S) for s in narration.segments]
                layers += [_caption(cue, width, height) for cue in cues(segments)]
        scene = CompositeVideoClip(layers, size=(width, height)).with_duration(duration)
        effects = []
        if plan.edges["fade_in"]:
            effects.append(vfx.FadeIn(TRANSITION_S))
        if plan.edges["fade_out"]:
            effects.append(vfx.FadeOut(TRANSITION_S))
        scenes.append(scene.with_effects(effects))
        previous = pixels[-1]
    film = concatenate_videoclips(scenes, method="chain")
    sounds = list(voices)
    if prepared.music is not None:
        bed = AudioArrayClip(_stereo(prepared.music), fps=audio.SAMPLE_RATE)
        sounds.append(bed.with_effects([afx.MultiplyVolume(spec.music.volume)]))
    film = film.with_audio(CompositeAudioClip(sounds).with_duration(film.duration))
    film.write_videofile(
        str(output),
        fps=spec.fps,
        codec="libx264",
        preset="veryfast",
        ffmpeg_params=["-crf", "20"],
        pixel_format="yuv420p",
        audio_codec="aac",
        audio_fps=audio.SAMPLE_RATE,
        audio_bitrate="160k",
        temp_audiofile_path=str(output.parent),
        logger=None,
    )


def _stereo(sound: Audio) -> np.ndarray:
    mono = audio.resample(sound).samples
    return np.stack([mono, mono], axis=1)


def _caption(cue: Segment, width: int, height: int) -> TextClip:
    """A cue as MoneyPrinterTurbo draws subtitles: a TextClip placed over the shot."""
    caption = TextClip(
        text=cue.text,
        font_size=max(12, round(min(width, height) * 0.05)),
        color="white",
        bg_color=(0, 0, 0),
        method="caption",
        size=(round(0.86 * width), None),
        text_align="center",
    )
    bottom = height - round(0.06 * height) - caption.h
    return (
        caption.with_start(cue.start_s)
        .with_duration(cue.end_s - cue.start_s)
        .with_position(("center", bottom))
    )


# -- re-rendering after an edit --------------------------------------------------------------------


EDIT = " Nobody on Earth slept that night."
"""The sentence added to scene 4's narration for the edited run."""


def rerender(spec_path: Path, resolution: int) -> None:
    """Three renders on one cache, in one Ray, after Ray start-up, the engines and a warm-up
    render at 144p on another cache: the spec (first), the spec with a sentence added to scene
    4's narration (edited), and the edited spec again (unchanged). Prints each run's wall time,
    its ratio to the first, what came from the cache and what ran, the steps its time went to
    (`RenderReport.stage_seconds`), the seconds of each kind of task (Ray's timeline), and Ray's
    round trip for an empty task on warm workers (what each task a render starts costs beyond
    its work)."""
    import ray

    from cluster.runtime import deploy, start_ray
    from models.registry import Capability

    with tempfile.TemporaryDirectory() as tmp:
        settings = local_settings(Path(tmp) / "run", 2)
        start_ray(settings, quiet=True)
        deploy(settings, {dag.EngineChoice().info(c).deployment for c in Capability})
        warm = settings.model_copy(update={"data_dir": Path(tmp) / "warm"})
        _timed_render(warm, load_spec(spec_path, 144), spec_path.parent)
        overhead_ms = 1000 * _task_round_trip()
        spec = load_spec(spec_path, resolution)
        scenes = list(spec.scenes)
        scenes[3] = scenes[3].model_copy(update={"narration": f"{scenes[3].narration}{EDIT}"})
        edited = spec.model_copy(update={"scenes": scenes})
        runs = []
        tasks: dict[str, dict[str, float]] = {}
        for name, run_spec in (("first", spec), ("edited", edited), ("unchanged", edited)):
            started = time.time()
            with measured() as timing:
                _, report = _timed_render(settings, run_spec, spec_path.parent)
            runs.append((name, timing, report))
            tasks[name] = _task_seconds(started, time.time())
        ray.shutdown()
    first = runs[0][1].wall_s
    print(f"{spec_path.name} at {resolution}p, {len(spec.scenes)} scenes; scene 4 edited:{EDIT!r}")
    print(f"{'run':<11}{'wall s':>8}{'CPU s':>8}{'of first':>10}{'cached':>8}  ran")
    for name, timing, report in runs:
        ran = ", ".join(sorted(report.cache_misses)) or "-"
        print(
            f"{name:<11}{timing.wall_s:>8.2f}{timing.cpu_s:>8.1f}{timing.wall_s / first:>10.1%}"
            f"{len(report.cache_hits):>8}  {ran}"
        )
    for name, _, report in runs:
        steps = ", ".join(f"{step} {s:.2f} s" for step, s in report.stage_seconds.items())
        print(f"{name} by step: {steps}")
    for name in ("first", "edited"):
        busy = ", ".join(f"{task} {s:.2f} s" for task, s in tasks[name].items())
        print(f"{name} by task (seconds of all its runs; they overlap): {busy}")
    print(f"Ray round trip of an empty task on a warm worker: {overhead_ms:.1f} ms")
    goals = [
        ("unchanged wall s", runs[2][1].wall_s, "<= 1"),
        ("edited / first (wall)", runs[1][1].wall_s / first, "<= 0.25"),
    ]
    for name, value, goal in goals:
        print(f"{name:<28}{value:>7.2f}  goal {goal}")
    print("load average (1, 5, 15 min):", os.getloadavg())


def _task_seconds(start: float, end: float) -> dict[str, float]:
    """Seconds spent in each kind of render task that ran between `start` and `end` (epoch
    seconds), from Ray's timeline, most first."""
    import ray

    spent: dict[str, float] = {}
    for event in ray.timeline():
        is_task = event.get("ph") == "X" and str(event.get("cat", "")).startswith("task::")
        if is_task and start <= event["ts"] / 1e6 <= end:
            task = str(event.get("name", "")).rsplit(".", 1)[-1]
            spent[task] = spent.get(task, 0.0) + event["dur"] / 1e6
    return dict(sorted(spent.items(), key=lambda item: -item[1]))


def _task_round_trip(count: int = 50) -> float:
    """Seconds from submitting an empty task to holding its result, on warm workers."""
    import ray

    @ray.remote(num_cpus=0.25)
    def empty() -> None:
        return None

    ray.get([empty.remote() for _ in range(4)])
    started = time.perf_counter()
    for _ in range(count):
        ray.get(empty.remote())
    return (time.perf_counter() - started) / count


# -- the run ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "examples" / "story.yaml")
    parser.add_argument("--quick", action="store_true", help="the 15 s short, not the story")
    parser.add_argument("--resolution", type=int, default=720)
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs per pass; the median run is reported"
    )
    parser.add_argument(
        "--rerender", action="store_true", help="only the three re-render runs (first, edited, "
        "unchanged) on one cache",
    )  # fmt: skip
    parser.add_argument("--dag-run", type=int, metavar="WORKERS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    spec_path = (ROOT / "examples" / "short.yaml" if args.quick else args.spec).resolve()
    if args.rerender:
        rerender(spec_path, args.resolution)
        return
    if args.dag_run:
        print(json.dumps(dag_run(spec_path, args.resolution, args.dag_run)))
        return

    print(f"{spec_path.name} at {args.resolution}p on {os.cpu_count()} cores", flush=True)
    spec = load_spec(spec_path, args.resolution)
    prepared = prepare(spec, spec_path.parent)
    dags: dict[DagPass, list[dict[str, Any]]] = {dag_pass: [] for dag_pass in DAG_PASSES}
    encodes: list[Timing] = []
    moviepys: list[Timing] = []
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(1, args.repeat + 1):
            for dag_pass, runs in dags.items():
                runs.append(dag_in_subprocess(spec_path, args.resolution, dag_pass))
            encodes.append(encode_only(prepared, Path(tmp)))
            moviepys.append(moviepy_film(prepared, Path(tmp)))
            loads.append(os.getloadavg()[0])
            walls = [runs[-1]["render"]["wall_s"] for runs in dags.values()]
            walls += [encodes[-1].wall_s, moviepys[-1].wall_s]
            print(f"round {round_}: " + ", ".join(f"{w:.1f} s" for w in walls), flush=True)
    report(spec, prepared, dags, encodes, moviepys)
    print("load average (1 min) after each round:", loads)


def report(
    spec: FilmSpec,
    prepared: Prepared,
    dags: dict[DagPass, list[dict[str, Any]]],
    encodes: list[Timing],
    moviepys: list[Timing],
) -> None:
    """The table and the ratios, of each pass's median run; the table also shows the range of
    its runs' wall times."""
    runs = {p: median(r, key=lambda run: run["render"]["wall_s"]) for p, r in dags.items()}
    frames = sum(p.frames for p in prepared.plans)
    counts = [run["frame_count"] for run in runs.values()]
    assert all(abs(count - frames) <= 0.01 * frames for count in counts), (counts, frames)
    two, one, one_slot = DAG_PASSES
    dag2, dag1 = Timing(**runs[two]["render"]), Timing(**runs[one]["render"])
    slot1 = Timing(**runs[one_slot]["render"])
    encoded = median(encodes, key=lambda timing: timing.wall_s)
    moviepy = median(moviepys, key=lambda timing: timing.wall_s)
    rows = [
        *(
            (
                f"DAG, {p.name} (render only)",
                Timing(**run["render"]),
                [r["render"]["wall_s"] for r in dags[p]],
                run["frame_count"],
            )
            for p, run in runs.items()
        ),
        ("encode + assemble only", encoded, [t.wall_s for t in encodes], frames),
        ("MoviePy compose + write_videofile", moviepy, [t.wall_s for t in moviepys], frames),
        (
            "frames + soundtrack made in 1 process",
            prepared.timing,
            [prepared.timing.wall_s],
            frames,
        ),
    ]
    width, height = spec.frame_size
    print(
        f"\nfilm: {prepared.duration_s:.1f} s, {frames} frames of {width}x{height} (DAG runs: "
        f"{counts} frames; espeak's speech lengths vary a little from run to run)"
    )
    print(
        f"{'pass':<40}{'wall s':>8}{'range':>13}{'CPU s':>8}{'film s/wall s':>15}"
        f"{'CPU s/film s':>14}"
    )
    for name, timing, walls, count in rows:
        film_s = count / spec.fps
        spread = f"{min(walls):.1f}-{max(walls):.1f}"
        print(
            f"{name:<40}{timing.wall_s:>8.1f}{spread:>13}{timing.cpu_s:>8.1f}"
            f"{film_s / timing.wall_s:>15.2f}{timing.cpu_s / film_s:>14.2f}"
        )
    for dag_pass, run in runs.items():
        stages = ", ".join(f"{stage} {t:.1f} s" for stage, t in run["stages"].items())
        print(
            f"DAG, {dag_pass.name}: Ray start {run['ray_start_s']:.1f} s, engine deploy "
            f"{run['deploy_s']:.1f} s, warm-up render at 144p {run['warmup_s']:.1f} s; "
            f"median timed render, stages ended at: {stages}"
        )
        roles = sorted(run["cpu_by_role"].items(), key=lambda item: -item[1])
        print("  CPU s by process: " + ", ".join(f"{role} {cpu:.1f}" for role, cpu in roles))
    start_up = runs[two]["ray_start_s"] + runs[two]["deploy_s"]
    ratios = [
        (
            "MoviePy / DAG (2 workers)",
            moviepy.wall_s / dag2.wall_s,
            moviepy.cpu_s / dag2.cpu_s,
            ">= 3",
        ),
        (
            "DAG (2 workers) / encode only",
            dag2.wall_s / encoded.wall_s,
            dag2.cpu_s / encoded.cpu_s,
            "<= 1.5",
        ),
        ("DAG 1 worker / 2 workers", dag1.wall_s / dag2.wall_s, dag1.cpu_s / dag2.cpu_s, ">= 1.7"),
        ("DAG 1 slot / 2 slots, both on 2 cores", slot1.wall_s / dag2.wall_s, None, ""),
        (
            "MoviePy / DAG incl. Ray start + deploy",
            moviepy.wall_s / (start_up + dag2.wall_s),
            None,
            "",
        ),
        (
            f"{spec.resolution}p film s per wall s (DAG, 2 workers)",
            prepared.duration_s / dag2.wall_s,
            None,
            "",
        ),
    ]
    print(f"\n{'ratio':<48}{'wall':>7}{'CPU':>7}  goal (wall)")
    for name, wall, cpu, goal in ratios:
        print(f"{name:<48}{wall:>7.2f}{'' if cpu is None else f'{cpu:.2f}':>7}  {goal}")


if __name__ == "__main__":
    main()
