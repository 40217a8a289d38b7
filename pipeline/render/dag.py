"""The render DAG: a film spec to an MP4, subtitles, thumbnails and a storyboard, as Ray tasks.

    voice_i ─► video_i ─► lip-sync_i ─► clip_i (captions, transitions, H.264) ─┐
    music (whole film) ─► soundtrack (narration + music, AAC) ─────────────────┼─► assemble
                                           subtitles, thumbnails, storyboard ◄─┘

Engines are reached through their Serve applications (`models.registry.EngineInfo.deployment`)
with `pipeline.render.engine_calls.call_engine`: only engine replicas hold GPUs and no task of
this DAG asks for one, so a render never holds a GPU while it waits on another stage; an engine
whose replicas cannot start (a missing or corrupt model folder) fails the render with
EngineUnavailable.
Every stage looks in the stage cache first; a scene whose clip is cached costs neither video nor
lip-sync again. A scene that crossfades from the one before takes that scene's last frame from
a small task that composes only that frame, so that the two clips encode side by side. Tasks
retry on worker loss; ObjectRefs carry frames and audio between stages through the object store.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import cv2
import numpy as np
import ray
from pydantic import BaseModel, ConfigDict, Field

from cluster import metrics
from cluster.settings import Settings
from db.models import Asset
from db.session import session_scope
from models.base import (
    Audio,
    Frames,
    ImageRequest,
    LipSyncResult,
    MusicRequest,
    MusicStyle,
    VideoRequest,
    VoiceRequest,
)
from models.registry import (
    CPU_DEFAULTS,
    Capability,
    EngineInfo,
    configured_engines,
    engine_info,
)
from pipeline.errors import EngineUnavailable, NotFound
from pipeline.render import assemble as film_assembly
from pipeline.render import audio, storyboard, subtitles, thumbnails
from pipeline.render.compose import SceneEdges, compose_clip, encode_segment, scene_edges
from pipeline.render.engine_calls import call_engine
from pipeline.render.images import checked_image
from pipeline.render.narration import Narration, Segment, narrate
from pipeline.render.spec import FilmSpec, ImageRef, Scene
from pipeline.render.stage_cache import (
    StageCache,
    array_from_png,
    array_to_png,
    audio_from_bytes,
    audio_to_bytes,
    audio_to_wav,
    stage_key,
)
from pipeline.render.upload_manager import upload_manager
from pipeline.storage import StoredObject, open_storage

COMPOSITION_VERSION = "5"  # bump when clip composition changes what a cached clip holds
LEAD_S = 0.3
TAIL_S = 0.5
StopAt = Literal["plan", "voice", "animatic"]
Reporter = Callable[[str, str, float], None]


class EngineChoice(BaseModel):
    """The engine per capability for one render; recorded with the job. The defaults are the
    registry's CPU engines. `image_video` makes
    the scenes that start from a picture (an image or a talking character), when it is not
    `video` itself: an engine that takes an image (`EngineInfo.takes_image`)."""

    video: str = CPU_DEFAULTS[Capability.video]
    image: str = CPU_DEFAULTS[Capability.image]
    voice: str = CPU_DEFAULTS[Capability.voice]
    lipsync: str = CPU_DEFAULTS[Capability.lipsync]
    music: str = CPU_DEFAULTS[Capability.music]
    image_video: str | None = None

    @classmethod
    def configured(cls, settings: Settings) -> EngineChoice:
        """The engines the settings choose for final renders (`configured_engines`)."""
        return cls(**{c.value: name for c, name in configured_engines(settings).items()})

    def info(self, capability: Capability) -> EngineInfo:
        return engine_info(capability, getattr(self, capability.value))

    def scene_video(self, scene: Scene) -> EngineInfo:
        """The video engine of one scene."""
        if scene.image is not None or scene.character is not None:
            return engine_info(Capability.video, self.image_video or self.video)
        return self.info(Capability.video)


class RenderInputs(BaseModel):
    """Everything a render needs; small and picklable, so it travels to every task."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    settings: Settings
    spec: FilmSpec
    engines: EngineChoice = Field(default_factory=EngineChoice)
    stop_at: StopAt | None = None
    spec_dir: str | None = None
    job_id: UUID | None = None


class ScenePlan(BaseModel):
    index: int
    frames: int
    offset_frames: int
    voice_key: str | None
    clip_key: str
    edges: dict[str, bool]
    warnings: list[str] = Field(default_factory=list)


class RenderReport(BaseModel):
    """What a render did: the film's length, which stages came from the cache and which ran,
    the seconds of video really rendered, and warnings for the user."""

    duration_s: float
    frame_count: int
    cache_hits: list[str]
    cache_misses: list[str]
    rendered_seconds: float
    warnings: list[str]


def _cache(settings: Settings) -> StageCache:
    return StageCache(open_storage(settings))


# -- voice -----------------------------------------------------------------------------------


def voice_key(inputs: RenderInputs, index: int) -> str | None:
    scene = inputs.spec.scenes[index]
    if scene.narration is None:
        return None
    info = inputs.engines.info(Capability.voice)
    body = {"text": scene.narration, "voice": scene.voice, "language": inputs.spec.language}
    return stage_key("voice", info.name, _version(info), body, inputs.spec.seed + index)


@ray.remote(num_cpus=0.25, max_retries=3)
def voice_stage(inputs: RenderInputs, index: int) -> tuple[Narration | None, bool]:
    """The scene's narration and whether it came from the cache."""
    key = voice_key(inputs, index)
    if key is None:
        return None, True
    cache = _cache(inputs.settings)
    if (hit := cache.get("voice", key)) is not None:
        segments = [Segment(**s) for s in json.loads(hit["segments.json"])]
        return Narration(audio_from_bytes(hit["audio.npz"]), segments), True
    scene = inputs.spec.scenes[index]
    info = inputs.engines.info(Capability.voice)
    voice = scene.voice.model_copy(update={"language": scene.voice.language})

    def synthesize(sentence: str) -> Audio:
        request = VoiceRequest(text=sentence, voice=voice, seed=inputs.spec.seed + index)
        return call_engine(info, "synthesize", request)  # type: ignore[no-any-return]

    assert scene.narration is not None
    narration = narrate(synthesize, scene.narration)
    rows = [s.__dict__ for s in narration.segments]
    cache.put(
        "voice",
        key,
        {
            "audio.npz": audio_to_bytes(narration.audio),
            "segments.json": json.dumps(rows).encode(),
        },
    )
    return narration, False


# -- plan ------------------------------------------------------------------------------------


def plan_scenes(inputs: RenderInputs, narrations: list[Narration | None]) -> list[ScenePlan]:
    """Frame counts, offsets and clip cache keys. A scene lasts its `duration_s`, or its
    narration plus a lead-in and a tail; narration longer than a fixed duration extends it."""
    spec = inputs.spec
    edges = scene_edges([scene.transition for scene in spec.scenes])
    plans: list[ScenePlan] = []
    offset = 0
    for index, (scene, narration) in enumerate(zip(spec.scenes, narrations, strict=True)):
        warnings: list[str] = []
        spoken = narration.duration_s + LEAD_S + TAIL_S if narration else 0.0
        seconds = scene.duration_s or spoken
        if scene.duration_s is not None and spoken > scene.duration_s:
            warnings.append(
                f"scene {index + 1}: narration needs {spoken:.1f} s, longer than its "
                f"duration_s {scene.duration_s}; the scene was extended"
            )
            seconds = spoken
        frames = max(1, round(seconds * spec.fps))
        previous = plans[-1].clip_key if index and edges[index].crossfade_in else None
        key = _clip_key(inputs, index, frames, edges[index], voice_key(inputs, index), previous)
        plans.append(
            ScenePlan(
                index=index,
                frames=frames,
                offset_frames=offset,
                voice_key=voice_key(inputs, index),
                clip_key=key,
                edges=edges[index].__dict__,
                warnings=warnings,
            )
        )
        offset += frames
    return plans


def _clip_key(
    inputs: RenderInputs,
    index: int,
    frames: int,
    edges: SceneEdges,
    voice: str | None,
    previous_clip: str | None,
) -> str:
    spec = inputs.spec
    scene = spec.scenes[index]
    video = inputs.engines.scene_video(scene)
    lipsync = inputs.engines.info(Capability.lipsync)
    body = {
        "scene": scene.content_hash(),
        "images": [
            _image_digest(inputs, ref) for ref in (spec.scene_reference(index), scene.character)
        ],
        "size": spec.frame_size,
        "fps": spec.fps,
        "frames": frames,
        "captions": spec.captions,
        "edges": edges.__dict__,
        "voice": voice,
        "previous": previous_clip,
        "lipsync": [lipsync.name, _version(lipsync)] if scene.character else None,
    }
    version = f"{_version(video)}+composition{COMPOSITION_VERSION}"
    return stage_key("clip", video.name, version, body, spec.scene_seed(index))


def _image_digest(inputs: RenderInputs, ref: ImageRef | None) -> str | None:
    data = _image_bytes(inputs, ref)
    return None if data is None else stage_key("image", "", "", data, 0)


def _image_bytes(inputs: RenderInputs, ref: ImageRef | None) -> bytes | None:
    """The bytes of an uploaded asset or of a file in the spec's folder (a spec read from a
    file), once their header shows an image within the pixel cap (`pipeline.render.images`)."""
    if ref is None:
        return None
    if ref.path is not None:
        base = Path(inputs.spec_dir) if inputs.spec_dir else None
        return checked_image(ref.resolve(base).read_bytes(), f"image {ref.path!r}")
    with session_scope(inputs.settings.resolved_database_url) as session:
        asset = session.get(Asset, ref.asset_id)
        if asset is None:
            raise NotFound(f"asset {ref.asset_id} not found")
        key = asset.storage_key
    try:
        data = open_storage(inputs.settings).get_bytes(key)
    except KeyError:
        raise NotFound(f"asset {ref.asset_id} has no stored file") from None
    return checked_image(data, f"asset {ref.asset_id}")


# -- video and clip --------------------------------------------------------------------------


class ClipResult(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: int
    segment: bytes
    last_frame: bytes
    samples: list[bytes]
    cached: bool
    warnings: list[str]


def _keyframe(inputs: RenderInputs, scene: Scene, index: int) -> bytes | None:
    """The image a shot starts from. A speaking character is fitted whole into the frame
    (over a blurred fill) so that its face stays in the picture for lip-sync; an image is
    passed as it is; the image engine draws one only for engines that need a keyframe."""
    width, height = inputs.spec.frame_size
    if scene.character is not None:
        character = array_from_png(_image_bytes(inputs, scene.character) or b"")
        return array_to_png(np.asarray(thumbnails.fill_frame(character, (width, height))))
    data = _image_bytes(inputs, inputs.spec.scene_reference(index))
    if data is not None or inputs.engines.scene_video(scene).name != "svd":
        return data
    return array_to_png(_draw_keyframe(inputs, index))


def _draw_keyframe(inputs: RenderInputs, index: int) -> np.ndarray:
    """Scene `index`'s keyframe drawn by the image engine, at the film's frame size."""
    scene = inputs.spec.scenes[index]
    width, height = inputs.spec.frame_size
    request = ImageRequest(
        prompt=scene.prompt or "",
        title=scene.title,
        mood=scene.mood,
        width=width,
        height=height,
        seed=inputs.spec.scene_seed(index),
    )
    pixels: np.ndarray = call_engine(inputs.engines.info(Capability.image), "keyframe", request)
    return pixels


def video_request(inputs: RenderInputs, plan: ScenePlan) -> VideoRequest:
    """What the video engine is asked for one scene."""
    spec = inputs.spec
    scene = spec.scenes[plan.index]
    width, height = spec.frame_size
    return VideoRequest(
        prompt=scene.prompt or scene.title or spec.title,
        title=scene.title,
        caption=scene.caption,
        mood=scene.mood,
        camera=scene.camera,
        width=width,
        height=height,
        fps=spec.fps,
        duration_s=plan.frames / spec.fps,
        keyframe_png=_keyframe(inputs, scene, plan.index),
        seed=spec.scene_seed(plan.index),
    )


@ray.remote(num_cpus=0.25, max_retries=3)
def video_stage(inputs: RenderInputs, plan: ScenePlan) -> Frames:
    request = video_request(inputs, plan)
    engine = inputs.engines.scene_video(inputs.spec.scenes[plan.index])
    frames: Frames = call_engine(engine, "generate", request)
    return _fit_length(frames, plan.frames)


def _fit_length(frames: Frames, count: int) -> Frames:
    """Engines may return a frame more or less than asked; the plan's count is the contract."""
    if len(frames) == count:
        return frames
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return Frames(frames.pixels[picks], frames.fps)


@ray.remote(num_cpus=0.25, num_returns=2, max_retries=3)
def lipsync_stage(
    inputs: RenderInputs, plan: ScenePlan, frames: Frames, narration: Narration
) -> tuple[Frames, list[str]]:
    """The speaking character's frames moved with the narration, and the engine's warnings."""
    track = audio.place([(LEAD_S, narration.audio)], plan.frames / inputs.spec.fps)
    lipsync = inputs.engines.info(Capability.lipsync)
    synced: LipSyncResult = call_engine(lipsync, "sync", frames, track)
    return synced.frames, [f"scene {plan.index + 1}: {w}" for w in synced.warnings]


def _finished(
    inputs: RenderInputs,
    plan: ScenePlan,
    frames: Frames,
    narration: Narration | None,
    previous_last_frame: bytes | None,
) -> Frames:
    """The scene's picture with its captions and transitions, composed as it is read."""
    captions: list[Segment] = []
    if narration is not None and inputs.spec.captions:
        captions = [s.shifted(LEAD_S) for s in narration.segments]
    previous = array_from_png(previous_last_frame) if previous_last_frame else None
    edges = SceneEdges(**plan.edges)
    return compose_clip(frames, captions=captions, edges=edges, previous_last_frame=previous)


@ray.remote(num_cpus=1, resources={"render_slot": 1}, max_retries=3)
def clip_stage(
    inputs: RenderInputs,
    plan: ScenePlan,
    frames: Frames,
    sync_warnings: list[str],
    narration: Narration | None,
    previous_last_frame: bytes | None,
) -> ClipResult:
    """Captions, transitions, encode; the frames are lip-synced already where the scene has a
    speaking character."""
    _one_core()
    warnings = [*plan.warnings, *sync_warnings]
    clip = _finished(inputs, plan, frames, narration, previous_last_frame)
    result = ClipResult(
        index=plan.index,
        segment=encode_segment(clip),
        last_frame=array_to_png(clip.frame(len(clip) - 1)),
        samples=[array_to_png(frames.frame(i)) for i in _sample_indices(len(frames))],
        cached=False,
        warnings=warnings,
    )
    files = {"segment.mp4": result.segment, "last.png": result.last_frame}
    files |= {f"sample{i}.png": s for i, s in enumerate(result.samples)}
    files["warnings.json"] = json.dumps(warnings).encode()
    _cache(inputs.settings).put("clip", plan.clip_key, files)
    return result


@ray.remote(num_cpus=0.25, max_retries=3)
def last_frame_stage(
    inputs: RenderInputs,
    plan: ScenePlan,
    frames: Frames,
    narration: Narration | None,
    previous_last_frame: bytes | None,
) -> bytes:
    """The scene's last finished frame (PNG), the one its clip ends on, made without encoding
    the scene: the next scene crossfades from it while this one still encodes."""
    _one_core()
    clip = _finished(inputs, plan, frames, narration, previous_last_frame)
    return array_to_png(clip.frame(len(clip) - 1))


def _one_core() -> None:
    """Frame-drawing tasks draw on one thread: a render slot is one core, and OpenCV, left alone,
    gives every warp and colour conversion a thread per core of the machine, which costs more
    CPU per frame for no gain in wall time."""
    cv2.setNumThreads(1)


def _sample_indices(count: int) -> list[int]:
    """Frames to keep for thumbnails and the storyboard: a third, half and two thirds in."""
    return sorted({min(count - 1, round(count * f)) for f in (1 / 3, 1 / 2, 2 / 3)})


def cached_clip(inputs: RenderInputs, plan: ScenePlan) -> ClipResult | None:
    hit = _cache(inputs.settings).get("clip", plan.clip_key)
    if hit is None:
        return None
    samples = [hit[name] for name in sorted(hit) if name.startswith("sample")]
    return ClipResult(
        index=plan.index,
        segment=hit["segment.mp4"],
        last_frame=hit["last.png"],
        samples=samples,
        cached=True,
        warnings=json.loads(hit["warnings.json"]),
    )


# -- music -----------------------------------------------------------------------------------


@ray.remote(num_cpus=0.25, max_retries=3)
def music_stage(inputs: RenderInputs, duration_s: float) -> tuple[Audio | None, bytes | None, bool]:
    music = inputs.spec.music
    if music.style is MusicStyle.none or music.volume == 0:
        return None, None, True
    info = inputs.engines.info(Capability.music)
    body = {"music": music, "duration": round(duration_s, 3)}
    key = stage_key("music", info.name, _version(info), body, inputs.spec.seed)
    cache = _cache(inputs.settings)
    if (hit := cache.get("music", key)) is not None:
        return audio_from_bytes(hit["audio.npz"]), hit.get("music.mid"), True
    request = MusicRequest(
        mood=music.mood,
        tempo_bpm=music.tempo_bpm,
        style=music.style,
        duration_s=duration_s,
        seed=inputs.spec.seed,
    )
    result = call_engine(info, "compose", request)
    files = {"audio.npz": audio_to_bytes(result.audio)}
    if result.midi:
        files["music.mid"] = result.midi
    cache.put("music", key, files)
    return result.audio, result.midi, False


# -- assemble --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Soundtrack:
    aac: bytes
    """The mix, encoded (`film_assembly.encode_soundtrack`)."""
    segments: list[Segment]
    """The narration's sentences on the film's timeline."""
    midi: bytes | None


@ray.remote(num_cpus=1, max_retries=3)
def soundtrack_stage(
    inputs: RenderInputs,
    plans: list[ScenePlan],
    narrations: list[Narration | None],
    music: tuple[Audio | None, bytes | None, bool],
) -> Soundtrack:
    """The narration placed on the film's timeline and mixed over the music, encoded while the
    scenes render."""
    duration = sum(p.frames for p in plans) / inputs.spec.fps
    track, segments = _narration_track(inputs, plans, narrations, duration)
    music_audio, midi, _ = music
    mix = audio.mix_film(track, music_audio, music_volume=inputs.spec.music.volume)
    return Soundtrack(film_assembly.encode_soundtrack(mix, duration), segments, midi)


@ray.remote(num_cpus=1, resources={"render_slot": 1}, max_retries=3)
def assemble_stage(
    inputs: RenderInputs, plans: list[ScenePlan], clips: list[ClipResult], soundtrack: Soundtrack
) -> dict[str, bytes]:
    """The film's files, by output name."""
    spec = inputs.spec
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        segments = [c.segment for c in clips]
        film = film_assembly.assemble(segments, soundtrack.aac, Path(tmp) / "f.mp4")
        files["film.mp4"] = film.read_bytes()
    files["subtitles.srt"] = subtitles.to_srt(soundtrack.segments).encode()
    files["subtitles.vtt"] = subtitles.to_vtt(soundtrack.segments).encode()
    samples = [array_from_png(s) for clip in clips for s in clip.samples]
    made = thumbnails.make_thumbnails(samples, spec.title)
    for i, candidate in enumerate(made.candidates):
        files[f"thumbnail{i + 1}.jpg"] = candidate.image
    files["thumbnail.jpg"] = made.chosen.image
    files["storyboard.png"] = _storyboard(inputs, plans, clips)
    if soundtrack.midi:
        files["music.mid"] = soundtrack.midi
    return files


def _narration_track(
    inputs: RenderInputs,
    plans: list[ScenePlan],
    narrations: list[Narration | None],
    duration: float,
) -> tuple[Audio, list[Segment]]:
    fps = inputs.spec.fps
    placed: list[tuple[float, Audio]] = []
    segments: list[Segment] = []
    for plan, narration in zip(plans, narrations, strict=True):
        if narration is None:
            continue
        start = plan.offset_frames / fps + LEAD_S
        placed.append((start, narration.audio))
        segments += [s.shifted(start) for s in narration.segments]
    return audio.place(placed, duration), segments


def _storyboard(inputs: RenderInputs, plans: list[ScenePlan], clips: list[ClipResult]) -> bytes:
    spec = inputs.spec
    tiles = [
        storyboard.StoryboardTile(
            frame=array_from_png(clip.samples[len(clip.samples) // 2]),
            duration_s=plan.frames / spec.fps,
            narration=spec.scenes[plan.index].narration or spec.scenes[plan.index].prompt,
        )
        for plan, clip in zip(plans, clips, strict=True)
    ]
    return storyboard.make_storyboard(spec.title, tiles)


# -- the whole DAG ---------------------------------------------------------------------------


def render_film(inputs: RenderInputs, report: Reporter) -> tuple[RenderReport, dict[str, bytes]]:
    """Runs the DAG and returns its report and the output files. `report(stage, status,
    progress)` is called as stages advance (the job runner writes it to the job row)."""
    if ray.cluster_resources().get("render_slot", 0) < 1:
        raise EngineUnavailable(
            "no Ray node offers a `render_slot` resource: clip encoding and assembly would "
            "wait forever (declare render_slot on the worker nodes, see cluster.yaml)"
        )
    spec = inputs.spec
    hits: list[str] = []
    misses: list[str] = []
    count = len(spec.scenes)

    clock = _StageClock(inputs)
    report("voice", "running", 0)
    voice_refs = [voice_stage.remote(inputs, i) for i in range(count)]
    voiced = _gather(voice_refs, lambda done: report("voice", "running", 100 * done / count))
    narrations = [narration for narration, _ in voiced]
    for i, (narration, cached) in enumerate(voiced):
        if narration is not None:
            (hits if cached else misses).append(f"voice:{i}")
    report("voice", "succeeded", 100)
    clock.done("voice", Capability.voice)
    plans = plan_scenes(inputs, narrations)
    duration = sum(p.frames for p in plans) / spec.fps
    if inputs.stop_at in ("plan", "voice"):
        files = _preview(inputs, plans, narrations, duration, report)
        warnings, rendered = [w for p in plans for w in p.warnings], 0.0
    else:
        files, clips = _film(inputs, plans, narrations, duration, hits, misses, report, clock)
        warnings = [w for clip in clips for w in clip.warnings]
        ran = sum(p.frames for p, c in zip(plans, clips, strict=True) if not c.cached)
        rendered = ran / spec.fps
    summary = RenderReport(
        duration_s=duration,
        frame_count=sum(p.frames for p in plans),
        cache_hits=hits,
        cache_misses=misses,
        rendered_seconds=rendered,
        warnings=warnings,
    )
    return summary, files


def _film(
    inputs: RenderInputs,
    plans: list[ScenePlan],
    narrations: list[Narration | None],
    duration: float,
    hits: list[str],
    misses: list[str],
    report: Reporter,
    clock: _StageClock,
) -> tuple[dict[str, bytes], list[ClipResult]]:
    """The film after the voices: music, soundtrack, a clip per scene (from the cache or
    through video, lip-sync and composition) and the assembly; the files and the clips.
    Each stage is recorded in `hits` or `misses`."""
    spec = inputs.spec
    count = len(spec.scenes)
    music_ref = music_stage.remote(inputs, duration)
    soundtrack_ref = soundtrack_stage.remote(inputs, plans, narrations, music_ref)
    clip_refs: list[ray.ObjectRef] = []
    previous_last: ray.ObjectRef | bytes | None = None  # the scene before's last frame (PNG)
    for plan in plans:
        scene, narration = spec.scenes[plan.index], narrations[plan.index]
        previous = previous_last if plan.edges["crossfade_in"] else None
        next_crossfades = plan.index + 1 < count and plans[plan.index + 1].edges["crossfade_in"]
        cached = cached_clip(inputs, plan)
        if cached is not None:
            hits.append(f"clip:{plan.index}")
            ref = ray.put(cached)
            previous_last = cached.last_frame if next_crossfades else None
        else:
            misses.append(f"clip:{plan.index}")
            frames = video_stage.remote(inputs, plan)
            sync_warnings: Any = []
            if scene.character is not None and narration is not None:
                lipsynced: Any = lipsync_stage.remote(inputs, plan, frames, narration)
                frames, sync_warnings = lipsynced  # num_returns=2: two refs
            ref = clip_stage.remote(inputs, plan, frames, sync_warnings, narration, previous)
            previous_last = None
            if next_crossfades:
                previous_last = last_frame_stage.remote(inputs, plan, frames, narration, previous)
        clip_refs.append(ref)
    report("video", "running", 0)
    clips = _gather(clip_refs, lambda done: report("video", "running", 100 * done / count))
    report("video", "succeeded", 100)
    clock.done("video", Capability.video)
    music = ray.get(music_ref)
    if music[0] is not None:
        (hits if music[2] else misses).append("music")
    report("assemble", "running", 0)
    files = ray.get(assemble_stage.remote(inputs, plans, clips, soundtrack_ref))
    report("assemble", "succeeded", 100)
    clock.done("assemble", Capability.video)
    return files, clips


class _StageClock:
    """Times consecutive stages into the `studio_stage_duration_seconds` histogram."""

    def __init__(self, inputs: RenderInputs) -> None:
        self.inputs = inputs
        self.started = time.perf_counter()

    def done(self, stage: str, capability: Capability) -> None:
        now = time.perf_counter()
        engine = self.inputs.engines.info(capability).deployment
        metrics.stage_done(stage, engine, now - self.started)
        self.started = now


def _gather(refs: list[ray.ObjectRef], progress: Callable[[int], None]) -> list[Any]:
    """ray.get in order, reporting how many are done as they finish."""
    pending = list(refs)
    while pending:
        _, pending = ray.wait(pending, num_returns=1)
        progress(len(refs) - len(pending))
    return ray.get(refs)  # type: ignore[no-any-return]


def _preview(
    inputs: RenderInputs,
    plans: list[ScenePlan],
    narrations: list[Narration | None],
    duration: float,
    report: Reporter,
) -> dict[str, bytes]:
    """`stop_at` plan or voice: the plan, keyframe storyboard and (for voice) the narration
    with its subtitles, so the user reviews before paying for pictures."""
    spec = inputs.spec
    tiles = []
    for plan in plans:
        scene = spec.scenes[plan.index]
        data = _image_bytes(inputs, scene.character or spec.scene_reference(plan.index))
        pixels = _draw_keyframe(inputs, plan.index) if data is None else array_from_png(data)
        tiles.append(
            storyboard.StoryboardTile(
                frame=pixels,
                duration_s=plan.frames / spec.fps,
                narration=scene.narration or scene.prompt,
            )
        )
    files = {
        "plan.json": json.dumps([p.model_dump() for p in plans], indent=2).encode(),
        "storyboard.png": storyboard.make_storyboard(spec.title, tiles),
    }
    if inputs.stop_at == "voice":
        track, segments = _narration_track(inputs, plans, narrations, duration)
        files["narration.wav"] = audio_to_wav(track)
        files["subtitles.srt"] = subtitles.to_srt(segments).encode()
        files["subtitles.vtt"] = subtitles.to_vtt(segments).encode()
    report("plan", "succeeded", 100)
    return files


def _version(info: EngineInfo) -> str:
    """The engine class's version, read without importing heavy modules twice."""
    return _VERSIONS.setdefault(info.import_path, str(info.load_class().version))


_VERSIONS: dict[str, str] = {}


def store_outputs(settings: Settings, files: dict[str, bytes]) -> dict[str, StoredObject]:
    """Puts the outputs in storage under content-addressed keys (through the UploadManager)."""
    manager = upload_manager()
    refs: dict[str, ray.ObjectRef[StoredObject]] = {
        name: manager.upload.remote(settings, name, data) for name, data in files.items()
    }
    return {name: ray.get(ref) for name, ref in refs.items()}
