"""The render DAG: a film spec to an MP4, subtitles, thumbnails and a storyboard, as Ray tasks.

    voice_i ─► video_i ─► lip-sync_i ─► segments_i (captions, transitions, H.264) ─┐
    music (whole film) ─► soundtrack (narration + music, AAC) ─────────────────────┼─► assemble
                                               subtitles, thumbnails, storyboard ◄─┘

Engines are reached through their Serve applications (`models.registry.EngineInfo.deployment`)
with `pipeline.render.engine_calls.call_engine`: only engine replicas hold GPUs and no task of
this DAG asks for one, so a render never holds a GPU while it waits on another stage; an engine
whose replicas cannot start (a missing or corrupt model folder) fails the render with
EngineUnavailable.
Every stage looks in the stage cache first; a scene whose clip is cached costs neither video nor
lip-sync again. A scene that crossfades from the one before takes that scene's last frame from
a small task that composes only that frame, so that the two clips encode side by side, and is
cached under that frame too: an edit of the scene before redoes it only if that frame changed.
A scene of two GOPs or more encodes in equal parts (`compose.chunk_starts`), one task per part,
so that one edited scene uses more than one core; the thumbnails and the storyboard are made from
the frames the clips keep while the clips encode. The score is composed for the film's length
rounded up (`music_length`), so that an edit that changes the length a little reuses it.
Downstream of the clips, the soundtrack, the assembly and the stills are cached by what they
depend on, and a film whose inputs all match an earlier render's is that render's outputs. Tasks
retry on worker loss; ObjectRefs carry frames and audio between stages through the object store.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import cv2
import numpy as np
import ray
from PIL import ImageColor
from pydantic import BaseModel, ConfigDict, Field

from cluster import metrics
from cluster.errors import StudioError
from cluster.settings import Settings
from db.models import Asset
from db.session import session_scope
from models.base import (
    Audio,
    Frames,
    HostedFrames,
    ImageRequest,
    LipSyncResult,
    MusicRequest,
    MusicStyle,
    SoundFrames,
    StillFrames,
    VideoRequest,
    Voice,
    VoiceRequest,
)
from models.neural import prompts
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
from pipeline.render import podcast as podcast_picture
from pipeline.render.compose import (
    FrameSpan,
    SceneEdges,
    chunk_starts,
    compose_clip,
    encode_segment,
    scene_edges,
)
from pipeline.render.engine_calls import call_engine
from pipeline.render.images import checked_image
from pipeline.render.narration import Narration, Segment, narrate_lines, with_transliteration
from pipeline.render.spec import FileRef, FilmSpec, ImageRef, Scene
from pipeline.render.stage_cache import (
    StageCache,
    array_from_image,
    array_to_jpeg,
    array_to_png,
    audio_from_bytes,
    audio_to_bytes,
    audio_to_wav,
    cache_scope,
    stage_key,
)
from pipeline.render.upload_manager import upload_manager
from pipeline.render.watchdog import Work, watch
from pipeline.storage import StoredObject, open_storage

COMPOSITION_VERSION = "8"  # bump when clip composition changes what a cached clip holds
ASSEMBLY_VERSION = "2"  # bump when the soundtrack, assembly or stills change what they hold
LEAD_S = 0.3
TAIL_S = 0.5
StopAt = Literal["plan", "voice", "animatic"]
Reporter = Callable[[str, str, float], None]

log = logging.getLogger(__name__)


class EngineChoice(BaseModel):
    """The engine per capability for one render; recorded with the job. The defaults are the
    registry's CPU engines. Two stages may take another engine than their capability's:
    `image_video` makes the scenes that start from a picture (an image or a talking character),
    when it is not `video` itself: an engine that takes an image (`EngineInfo.takes_image`);
    `motion_lipsync` moves the talking characters of the scenes with a driving video, when it is
    not `lipsync` itself: an engine that takes one (`EngineInfo.takes_motion`)."""

    video: str = CPU_DEFAULTS[Capability.video]
    image: str = CPU_DEFAULTS[Capability.image]
    voice: str = CPU_DEFAULTS[Capability.voice]
    lipsync: str = CPU_DEFAULTS[Capability.lipsync]
    music: str = CPU_DEFAULTS[Capability.music]
    image_video: str | None = None
    motion_lipsync: str | None = None

    @classmethod
    def configured(cls, settings: Settings) -> EngineChoice:
        """The engines the settings choose for final renders (`configured_engines`)."""
        return cls(**{c.value: name for c, name in configured_engines(settings).items()})

    def info(self, capability: Capability) -> EngineInfo:
        return engine_info(capability, getattr(self, capability.value))

    def key_art(self) -> EngineInfo | None:
        """The image engine that draws the film's key art for its thumbnail; None for the CPU
        cards (a card adds nothing to a frame of the film): the thumbnails are then picked from
        the film's frames."""
        info = self.info(Capability.image)
        return None if info.name == CPU_DEFAULTS[Capability.image] else info

    def scene_video(self, scene: Scene) -> EngineInfo:
        """The video engine of one scene."""
        if scene.image is not None or scene.character is not None:
            return engine_info(Capability.video, self.image_video or self.video)
        return self.info(Capability.video)

    def scene_lipsync(self, scene: Scene) -> EngineInfo:
        """The lip-sync engine of one scene's talking character."""
        if scene.driving_video is not None:
            return engine_info(Capability.lipsync, self.motion_lipsync or self.lipsync)
        return self.info(Capability.lipsync)


class RenderInputs(BaseModel):
    """Everything a render needs; small and picklable, so it travels to every task."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    settings: Settings
    spec: FilmSpec
    engines: EngineChoice = Field(default_factory=EngineChoice)
    stop_at: StopAt | None = None
    spec_dir: str | None = None
    job_id: UUID | None = None
    owner: UUID | None = None
    """The user the render is for: stage cache hits come from their renders
    (`stage_cache.cache_scope`)."""


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
    provider_costs: list[dict[str, Any]] = Field(default_factory=list)
    """What hosted providers charged for the clips this render made (`ProviderCost`), per
    scene; none for clips that came from the cache."""
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    """Wall seconds the driver spent on each step, in order (`_StageClock`)."""
    thumbnails: str | None = None
    """What made the thumbnails: the image engine that drew the key art, or `frames` (picked
    from the film: the CPU default, and the fallback when the image engine fails, with a
    warning); None when the render made none (`stop_at`)."""


def _cache(inputs: RenderInputs) -> StageCache:
    settings = inputs.settings
    scope = cache_scope(settings, inputs.owner)
    return StageCache(open_storage(settings), scope, settings.stage_cache_budget_bytes)


# -- voice -----------------------------------------------------------------------------------


def voice_key(inputs: RenderInputs, index: int) -> str | None:
    scene = inputs.spec.scenes[index]
    info = inputs.engines.info(Capability.voice)
    body: dict[str, Any]
    if scene.podcast is not None:
        lines = [{"text": text, "voice": voice} for voice, text in _dialogue(inputs, index)]
        body = {"lines": lines, "language": inputs.spec.language}
    elif scene.narration is not None:
        body = {"text": scene.narration, "voice": scene.voice, "language": inputs.spec.language}
    else:
        return None
    return stage_key("voice", info.name, _version(info), body, inputs.spec.seed + index)


def _dialogue(inputs: RenderInputs, index: int) -> list[tuple[Voice, str]]:
    """What a scene says, line by line, with each line's voice: a podcast's lines in their
    speakers' voices, or the narration in the scene's voice."""
    scene = inputs.spec.scenes[index]
    if scene.podcast is None:
        return [(scene.voice, scene.narration)] if scene.narration else []
    return [(inputs.spec.character(line.speaker).voice, line.text) for line in scene.podcast.lines]


def cached_voice(cache: StageCache, key: str) -> Narration | None:
    if (hit := cache.get("voice", key)) is None:
        return None
    segments = [Segment(**s) for s in json.loads(hit["segments.json"])]
    return Narration(audio_from_bytes(hit["audio.npz"]), segments)


@ray.remote(num_cpus=0.25, max_retries=3)
def voice_stage(inputs: RenderInputs, index: int, key: str) -> Narration:
    """The scene's narration (a podcast's lines, each in its speaker's voice), synthesized and
    stored in the cache under `key`."""
    info = inputs.engines.info(Capability.voice)

    def speaker(voice: Voice) -> Callable[[str], Audio]:
        def synthesize(sentence: str) -> Audio:
            request = VoiceRequest(text=sentence, voice=voice, seed=inputs.spec.seed + index)
            limit = watch(inputs.settings, info, "voice", index, Work(characters=len(sentence)))
            return call_engine(info, "synthesize", request, watch=limit)  # type: ignore[no-any-return]

        return synthesize

    narration = narrate_lines([(speaker(voice), text) for voice, text in _dialogue(inputs, index)])
    rows = [s.__dict__ for s in narration.segments]
    _cache(inputs).put(
        "voice",
        key,
        {
            "audio.npz": audio_to_bytes(narration.audio),
            "segments.json": json.dumps(rows).encode(),
        },
    )
    return narration


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
        key = _clip_key(inputs, index, frames, edges[index], voice_key(inputs, index))
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
) -> str:
    """The key of a scene's clip from everything but the frame a crossfade starts from, which
    `crossfade_key` adds."""
    spec = inputs.spec
    scene = spec.scenes[index]
    video = inputs.engines.scene_video(scene)
    lipsync = inputs.engines.scene_lipsync(scene)
    talking = scene.character is not None or scene.podcast is not None
    body = {
        "scene": scene.content_hash(),
        "images": [_image_digest(inputs, ref) for ref in _scene_images(spec, index)],
        "size": spec.frame_size,
        "fps": spec.fps,
        "frames": frames,
        "captions": spec.captions,
        "edges": edges.__dict__,
        "voice": voice,
        "lipsync": [lipsync.name, _version(lipsync)] if talking else None,
    }
    if scene.driving_video is not None:
        body["driving_video"] = _file_digest(inputs, scene.driving_video)
    version = f"{_version(video)}+composition{COMPOSITION_VERSION}"
    return stage_key("clip", video.name, version, body, spec.scene_seed(index))


def _scene_images(spec: FilmSpec, index: int) -> list[ImageRef | None]:
    """The images a scene's clip is made from: its shot's, its talking character's, and its
    podcast speakers' portraits."""
    scene = spec.scenes[index]
    speakers = scene.podcast.speakers if scene.podcast else []
    portraits = [spec.character(name).reference for name in speakers]
    return [spec.scene_reference(index), scene.character, *portraits]


def _image_digest(inputs: RenderInputs, ref: ImageRef | None) -> str | None:
    data = _image_bytes(inputs, ref)
    return None if data is None else stage_key("image", "", "", data, 0)


def _file_digest(inputs: RenderInputs, ref: FileRef) -> str:
    return stage_key(ref.kind, "", "", _file_bytes(inputs, ref), 0)


def _image_bytes(inputs: RenderInputs, ref: ImageRef | None) -> bytes | None:
    """The bytes of an image (`_file_bytes`), once their header shows an image within the pixel
    cap (`pipeline.render.images`)."""
    if ref is None:
        return None
    where = f"image {ref.path!r}" if ref.path is not None else f"asset {ref.asset_id}"
    return checked_image(_file_bytes(inputs, ref), where)


def _file_bytes(inputs: RenderInputs, ref: FileRef) -> bytes:
    """The bytes of an uploaded asset or of a file in the spec's folder (a spec read from a
    file). Uploads were bounded when they came in; each kind is bounded again where decoded."""
    if ref.path is not None:
        base = Path(inputs.spec_dir) if inputs.spec_dir else None
        return ref.resolve(base).read_bytes()
    with session_scope(inputs.settings.resolved_database_url) as session:
        asset = session.get(Asset, ref.asset_id)
        if asset is None:
            raise NotFound(f"asset {ref.asset_id} not found")
        key = asset.storage_key
    try:
        return open_storage(inputs.settings).get_bytes(key)
    except KeyError:
        raise NotFound(f"asset {ref.asset_id} has no stored file") from None


# -- video and clip --------------------------------------------------------------------------


class ClipResult(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: int
    key: str
    """The clip's cache key: the plan's, or for a crossfade its `crossfade_key`."""
    segments: list[bytes]
    """The clip's H.264 segments in order (`chunk_starts`), joined with the other scenes'."""
    last_frame: bytes
    """The last finished frame (PNG, lossless: the next scene may crossfade from it)."""
    samples: list[bytes]
    """Frames (JPEG) for the thumbnails and the storyboard (`_sample_indices`)."""
    cached: bool
    warnings: list[str]
    ambience: bytes | None = None
    """The video model's own sound for the scene (`audio_to_bytes`), kept as an ambience bed."""
    provider_cost: dict[str, Any] | None = None
    """What a hosted video engine charged for the scene's clip (none when it came from the
    cache, which cost nothing this time)."""


def _keyframe(inputs: RenderInputs, scene: Scene, index: int) -> bytes | None:
    """The image a shot starts from. A speaking character is fitted whole into the frame
    (over a blurred fill) so that its face stays in the picture for lip-sync; an image is
    passed as it is; the image engine draws one only for engines that need a keyframe."""
    width, height = inputs.spec.frame_size
    if scene.character is not None:
        character = array_from_image(_image_bytes(inputs, scene.character) or b"")
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
    info = inputs.engines.info(Capability.image)
    limit = watch(inputs.settings, info, "keyframe", index, Work.frames(width, height, 1))
    pixels: np.ndarray = call_engine(info, "keyframe", request, watch=limit)
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


@ray.remote(num_cpus=0.25, num_returns=3, max_retries=3)
def video_stage(
    inputs: RenderInputs, plan: ScenePlan
) -> tuple[Frames, bytes | None, dict[str, Any] | None]:
    """The scene's frames, the sound the model made with them when it is kept as an ambience
    bed (`makes_ambience`), and what a hosted engine's provider charged for them. A podcast
    over a colour has that colour for its frames, from no engine."""
    podcast = inputs.spec.scenes[plan.index].podcast
    if podcast is not None and podcast.background is not None:
        width, height = inputs.spec.frame_size
        colour = ImageColor.getrgb(podcast.background)
        still = np.full((height, width, 3), colour, np.uint8)
        return StillFrames(still, plan.frames, inputs.spec.fps), None, None
    request = video_request(inputs, plan)
    engine = inputs.engines.scene_video(inputs.spec.scenes[plan.index])
    work = Work.frames(request.width, request.height, plan.frames)
    limit = watch(inputs.settings, engine, "video", plan.index, work)
    frames: Frames = call_engine(engine, "generate", request, watch=limit)
    sound = None
    if isinstance(frames, SoundFrames) and makes_ambience(inputs, plan.index):
        sound = audio_to_bytes(frames.sound)
    cost = None
    if isinstance(frames, HostedFrames):
        cost = {"scene": plan.index, **asdict(frames.cost)}
    return _fit_length(frames, plan.frames), sound, cost


def makes_ambience(inputs: RenderInputs, index: int) -> bool:
    """Whether scene `index`'s video engine makes a sound that the render keeps (STUDIO_VIDEO_SOUND
    `ambience`) under the narration."""
    engine = inputs.engines.scene_video(inputs.spec.scenes[index])
    return engine.makes_sound and inputs.settings.video_sound == "ambience"


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
    scene = inputs.spec.scenes[plan.index]
    lipsync = inputs.engines.scene_lipsync(scene)
    height, width = frames.pixels.shape[1:3]
    work = Work.frames(width, height, len(frames))
    limit = watch(inputs.settings, lipsync, "lip-sync", plan.index, work)
    if scene.driving_video is None:
        synced: LipSyncResult = call_engine(lipsync, "sync", frames, track, watch=limit)
    else:
        driving = _file_bytes(inputs, scene.driving_video)
        synced = call_engine(lipsync, "sync", frames, track, driving, watch=limit)
    return synced.frames, [f"scene {plan.index + 1}: {w}" for w in synced.warnings]


@ray.remote(num_cpus=0.25, num_returns=2, max_retries=3)
def podcast_stage(
    inputs: RenderInputs, plan: ScenePlan, background: Frames, narration: Narration
) -> tuple[Frames, list[str]]:
    """A podcast scene's picture (`podcast.PodcastFrames`): each speaker's portrait lip-synced
    to that speaker's lines alone, in its tile over the background; and the engine's
    warnings."""
    spec = inputs.spec
    podcast = spec.scenes[plan.index].podcast
    assert podcast is not None
    duration = plan.frames / spec.fps
    spans = podcast_picture.line_spans(podcast, narration.segments)
    boxes = podcast_picture.tile_boxes(spec.frame_size, podcast.layout, len(podcast.speakers))
    lipsync = inputs.engines.info(Capability.lipsync)
    heads: list[Frames] = []
    warnings: list[str] = []
    for name, box in zip(podcast.speakers, boxes, strict=True):
        portrait = array_from_image(_image_bytes(inputs, spec.character(name).reference) or b"")
        still = StillFrames(podcast_picture.head_picture(portrait, box), plan.frames, spec.fps)
        track = podcast_picture.speaker_track(narration, spans, name, LEAD_S, duration)
        work = Work.frames(box.width, box.height, plan.frames)
        limit = watch(inputs.settings, lipsync, "lip-sync", plan.index, work)
        synced: LipSyncResult = call_engine(lipsync, "sync", still, track, watch=limit)
        heads.append(synced.frames)
        warnings += [f"scene {plan.index + 1}, {name}: {w}" for w in synced.warnings]
    shifted = [span.shifted(LEAD_S) for span in spans]
    active = podcast_picture.active_speakers(shifted, podcast.speakers, plan.frames, spec.fps)
    frames = podcast_picture.PodcastFrames(background, heads, boxes, podcast.speakers, active)
    return frames, warnings


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
        transliteration = inputs.spec.scenes[plan.index].transliteration
        if transliteration is not None:
            captions = with_transliteration(captions, transliteration)
    previous = array_from_image(previous_last_frame) if previous_last_frame else None
    edges = SceneEdges(**plan.edges)
    return compose_clip(frames, captions=captions, edges=edges, previous_last_frame=previous)


@ray.remote(num_cpus=1, resources={"render_slot": 1}, max_retries=3)
def segment_stage(
    inputs: RenderInputs,
    plan: ScenePlan,
    frames: Frames,
    narration: Narration | None,
    previous_last_frame: bytes | None,
    start: int,
    stop: int,
) -> bytes:
    """Frames `start` to `stop` of the scene's finished clip (captions, transitions) encoded as
    one segment: a scene's parts (`chunk_starts`) encode side by side. The frames are lip-synced
    already where the scene has a speaking character."""
    _one_core()
    clip = _finished(inputs, plan, frames, narration, previous_last_frame)
    return encode_segment(FrameSpan(clip, start, stop))


@ray.remote(num_cpus=0.25, max_retries=3)
def clip_stage(
    inputs: RenderInputs,
    plan: ScenePlan,
    key: str,
    sync_warnings: list[str],
    last_frame: bytes,
    samples: list[bytes],
    ambience: bytes | None,
    provider_cost: dict[str, Any] | None,
    *segments: bytes,
) -> ClipResult:
    """The clip from its encoded segments, last frame and samples; stored in the cache with the
    scene's ambience."""
    warnings = [*plan.warnings, *sync_warnings]
    result = ClipResult(
        index=plan.index,
        key=key,
        segments=list(segments),
        last_frame=last_frame,
        samples=samples,
        cached=False,
        warnings=warnings,
        ambience=ambience,
        provider_cost=provider_cost,
    )
    files = {f"segment{i}.mp4": segment for i, segment in enumerate(segments)}
    files["last.png"] = last_frame
    files |= {f"sample{i}.jpg": s for i, s in enumerate(result.samples)}
    files["warnings.json"] = json.dumps(warnings).encode()
    if ambience is not None:
        files["ambience.npz"] = ambience
    _cache(inputs).put("clip", key, files)
    return result


@ray.remote(num_cpus=0.25, num_returns=2, max_retries=3)
def kept_frames_stage(
    inputs: RenderInputs,
    plan: ScenePlan,
    frames: Frames,
    narration: Narration | None,
    previous_last_frame: bytes | None,
) -> tuple[bytes, list[bytes]]:
    """The frames a clip keeps, made while its segments encode: its last finished frame (PNG),
    the one it ends on, from which the next scene crossfades; and its samples (JPEG, frames
    before captions) for the thumbnails and the storyboard, which are made meanwhile too."""
    _one_core()
    clip = _finished(inputs, plan, frames, narration, previous_last_frame)
    samples = [array_to_jpeg(frames.frame(i)) for i in _sample_indices(len(frames))]
    return array_to_png(clip.frame(len(clip) - 1)), samples


def _one_core() -> None:
    """Frame-drawing tasks draw on one thread: a render slot is one core, and OpenCV, left alone,
    gives every warp and colour conversion a thread per core of the machine, which costs more
    CPU per frame for no gain in wall time."""
    cv2.setNumThreads(1)


def _sample_indices(count: int) -> list[int]:
    """Frames to keep for thumbnails and the storyboard: a third, half and two thirds in."""
    return sorted({min(count - 1, round(count * f)) for f in (1 / 3, 1 / 2, 2 / 3)})


def crossfade_key(plan: ScenePlan, previous_last_frame: bytes) -> str:
    """The key of a clip that crossfades from `previous_last_frame` (PNG): an edit of the scene
    before makes this clip again only when it changes the frame this one fades from."""
    body = {"clip": plan.clip_key, "from": previous_last_frame}
    return stage_key("crossfade", "", COMPOSITION_VERSION, body, 0)


def cached_clip(cache: StageCache, plan: ScenePlan, key: str) -> ClipResult | None:
    hit = cache.get("clip", key)
    if hit is None:
        return None
    samples = [hit[name] for name in sorted(hit) if name.startswith("sample")]
    count = sum(name.startswith("segment") for name in hit)
    return ClipResult(
        index=plan.index,
        key=key,
        segments=[hit[f"segment{i}.mp4"] for i in range(count)],
        last_frame=hit["last.png"],
        samples=samples,
        cached=True,
        warnings=json.loads(hit["warnings.json"]),
        ambience=hit.get("ambience.npz"),
    )


# -- music -----------------------------------------------------------------------------------


MUSIC_STEP_S = 10.0
MUSIC_FADE_S = 2.0


def music_length(duration_s: float) -> float:
    """How long a score is asked for: the film and its fade-out rounded up to `MUSIC_STEP_S`, so
    that an edit that lengthens or shortens a scene by a few seconds reuses the score (composed
    again, it would be the same piece; a neural one costs seconds of GPU). The soundtrack ends it
    with the film (`audio.end_at`)."""
    return MUSIC_STEP_S * math.ceil((duration_s + MUSIC_FADE_S) / MUSIC_STEP_S)


def music_key(inputs: RenderInputs, duration_s: float) -> str | None:
    """The score's cache key, for a score `duration_s` long; None for a film without music."""
    music = inputs.spec.music
    if music.style is MusicStyle.none or music.volume == 0:
        return None
    info = inputs.engines.info(Capability.music)
    body = {"music": music, "duration": round(duration_s, 3)}
    return stage_key("music", info.name, _version(info), body, inputs.spec.seed)


@ray.remote(num_cpus=0.25, max_retries=3)
def music_stage(
    inputs: RenderInputs, duration_s: float, key: str | None
) -> tuple[Audio | None, bytes | None, bool]:
    """The score, its MIDI and whether it came from the cache."""
    if key is None:
        return None, None, True
    music = inputs.spec.music
    cache = _cache(inputs)
    if (hit := cache.get("music", key)) is not None:
        return audio_from_bytes(hit["audio.npz"]), hit.get("music.mid"), True
    request = MusicRequest(
        mood=music.mood,
        tempo_bpm=music.tempo_bpm,
        style=music.style,
        duration_s=duration_s,
        seed=inputs.spec.seed,
    )
    info = inputs.engines.info(Capability.music)
    limit = watch(inputs.settings, info, "music", None, Work(audio_s=duration_s))
    result = call_engine(info, "compose", request, watch=limit)
    files = {"audio.npz": audio_to_bytes(result.audio)}
    if result.midi:
        files["music.mid"] = result.midi
    cache.put("music", key, files)
    return result.audio, result.midi, False


# -- soundtrack, assembly, stills ------------------------------------------------------------


@dataclass(frozen=True)
class Soundtrack:
    """The film's sound and what is made with it: the mix encoded (`encode_soundtrack`), the
    subtitles of the narration on the film's timeline and the score's MIDI."""

    aac: bytes
    srt: bytes
    vtt: bytes
    midi: bytes | None

    def files(self) -> dict[str, bytes]:
        """Its files by output name (the AAC under a name of its own: it is not an output)."""
        files = {"soundtrack.m4a": self.aac, "subtitles.srt": self.srt, "subtitles.vtt": self.vtt}
        return files | ({"music.mid": self.midi} if self.midi else {})

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> Soundtrack:
        return cls(
            files["soundtrack.m4a"], files["subtitles.srt"], files["subtitles.vtt"],
            files.get("music.mid"),
        )  # fmt: skip


def soundtrack_key(inputs: RenderInputs, plans: list[ScenePlan], music: str | None) -> str:
    """What the soundtrack depends on: each scene's narration (by its voice key) and where it
    starts, the film's length, the score, and the ambience of the scenes that keep one (by the
    key of the clip it comes with)."""
    spec = inputs.spec
    ambience = [p.clip_key if makes_ambience(inputs, p.index) else None for p in plans]
    body = {
        "voices": [p.voice_key for p in plans],
        "offsets": [p.offset_frames for p in plans],
        "frames": sum(p.frames for p in plans),
        "fps": spec.fps,
        "lead": LEAD_S,
        "music": music,
        "volume": spec.music.volume,
    }
    if any(ambience):
        body |= {"ambience": ambience, "ambience_volume": inputs.settings.ambience_volume}
    return stage_key("soundtrack", "", ASSEMBLY_VERSION, body, 0)


@ray.remote(num_cpus=1, max_retries=3)
def soundtrack_stage(
    inputs: RenderInputs,
    plans: list[ScenePlan],
    narrations: list[Narration | None],
    music: tuple[Audio | None, bytes | None, bool],
    key: str,
    sounds: list[Any],
) -> Soundtrack:
    """The narration placed on the film's timeline and mixed over the music and the scenes'
    ambience (`sounds`: per scene, its sound as bytes or the ref of its video task's, or None),
    encoded while the scenes render, with its subtitles."""
    duration = sum(p.frames for p in plans) / inputs.spec.fps
    track, segments = _narration_track(inputs, plans, narrations, duration)
    starts = [plan.offset_frames / inputs.spec.fps for plan in plans]
    made = [(start, _value(sound)) for start, sound in zip(starts, sounds, strict=True)]
    beds = [(start, audio_from_bytes(sound)) for start, sound in made if sound is not None]
    ambience = audio.place(beds, duration) if beds else None
    music_audio, midi, _ = music
    if music_audio is not None:
        music_audio = audio.end_at(music_audio, duration, fade_s=MUSIC_FADE_S)
    mix = audio.mix_film(
        track,
        music_audio,
        music_volume=inputs.spec.music.volume,
        ambience=ambience,
        ambience_volume=inputs.settings.ambience_volume,
    )
    soundtrack = Soundtrack(
        aac=film_assembly.encode_soundtrack(mix, duration),
        srt=subtitles.to_srt(segments).encode(),
        vtt=subtitles.to_vtt(segments).encode(),
        midi=midi,
    )
    _cache(inputs).put("soundtrack", key, soundtrack.files())
    return soundtrack


@ray.remote(num_cpus=1, resources={"render_slot": 1}, max_retries=3)
def assemble_stage(
    inputs: RenderInputs, key: str, segments: list[bytes], soundtrack: Soundtrack
) -> bytes:
    """The film: the clips' segments and the soundtrack remuxed into one MP4."""
    with tempfile.TemporaryDirectory() as tmp:
        film = film_assembly.assemble(segments, soundtrack.aac, Path(tmp) / "f.mp4").read_bytes()
    _cache(inputs).put("assembly", key, {"film.mp4": film})
    return film


def stills_key(inputs: RenderInputs, plans: list[ScenePlan]) -> str:
    """The thumbnails and the storyboard are made from the clips' samples and the scenes (which
    the clip keys cover) and the title; with a neural image engine, from its key art too (the
    engine, its version and the request: prompt, size and seed)."""
    body: dict[str, Any] = {"clips": [p.clip_key for p in plans], "title": inputs.spec.title}
    if (info := inputs.engines.key_art()) is not None:
        body["key_art"] = [info.name, _version(info), key_art_request(inputs)]
    return stage_key("stills", "", ASSEMBLY_VERSION, body, 0)


def key_art_request(inputs: RenderInputs) -> ImageRequest:
    """What the image engine is asked for the film's key art: a thumbnail-sized picture of its
    logline (else its first shot's prompt) and title, in the mood most of its scenes have."""
    spec = inputs.spec
    about = spec.logline or next((scene.prompt for scene in spec.scenes if scene.prompt), None)
    moods = Counter(scene.mood for scene in spec.scenes)
    width, height = thumbnails.THUMBNAIL_SIZE
    return ImageRequest(
        prompt=prompts.key_art(spec.title, about),
        title=spec.title,
        mood=moods.most_common(1)[0][0],
        width=width,
        height=height,
        seed=spec.seed,
    )


def _draw_key_art(inputs: RenderInputs) -> tuple[np.ndarray | None, str | None]:
    """The film's key art from its image engine, or None and a warning saying why the
    thumbnails are frames of the film instead: an engine that fails (not deployed, failing to
    start, silent past the watchdog, erring) costs the film its key art, never the render."""
    info = inputs.engines.key_art()
    if info is None:
        return None, None
    width, height = thumbnails.THUMBNAIL_SIZE
    limit = watch(inputs.settings, info, "thumbnail", None, Work.frames(width, height, 1))
    try:
        pixels: np.ndarray = call_engine(info, "keyframe", key_art_request(inputs), watch=limit)
    except Exception as error:  # any failure of the engine: the thumbnails fall back to frames
        log.warning(
            "%s could not draw the key art; thumbnails are frames", info.name, exc_info=error
        )
        reason = error.detail if isinstance(error, StudioError) and not error.internal else None
        because = f" ({reason})" if reason else ""
        return None, (
            f"thumbnails: the {info.name} image engine could not draw them{because}; they are "
            "frames of the film instead"
        )
    return pixels, None


@ray.remote(num_cpus=0.25, num_returns=2, max_retries=3)
def stills_stage(
    inputs: RenderInputs, plans: list[ScenePlan], key: str, *samples: list[bytes]
) -> tuple[dict[str, bytes], str | None]:
    """The thumbnails and the storyboard from each clip's samples (`kept_frames_stage`) and the
    image engine's key art (`_draw_key_art`), made while the clips encode; and the warning of a
    fallback to frames, whose stills are not cached (the next render asks the engine again)."""
    spec = inputs.spec
    files: dict[str, bytes] = {}
    frames = [[array_from_image(sample) for sample in clip] for clip in samples]
    key_art, fallback = _draw_key_art(inputs)
    made = thumbnails.make_thumbnails(
        [frame for clip in frames for frame in clip], spec.title, key_art=key_art
    )
    for i, candidate in enumerate(made.candidates):
        files[f"thumbnail{i + 1}.jpg"] = candidate.image
    files["thumbnail.jpg"] = made.chosen.image
    tiles = [
        storyboard.StoryboardTile(
            frame=clip[len(clip) // 2],
            duration_s=plan.frames / spec.fps,
            narration=spec.scenes[plan.index].spoken_text or spec.scenes[plan.index].prompt,
        )
        for plan, clip in zip(plans, frames, strict=True)
    ]
    files["storyboard.png"] = storyboard.make_storyboard(spec.title, tiles)
    if fallback is None:
        _cache(inputs).put("stills", key, files)
    return files, fallback


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


# -- the whole DAG ---------------------------------------------------------------------------


def film_key(inputs: RenderInputs) -> str:
    """Everything a render's outputs depend on: the spec, the bytes of every image it names, the
    engines with their versions, how far it goes and the versions of this code's steps."""
    spec = inputs.spec
    images = [
        _image_digest(inputs, ref)
        for index in range(len(spec.scenes))
        for ref in _scene_images(spec, index)
    ]
    used = [inputs.engines.info(c) for c in Capability]
    used += [inputs.engines.scene_video(scene) for scene in spec.scenes]
    driving = [scene.driving_video for scene in spec.scenes if scene.driving_video is not None]
    used += [inputs.engines.scene_lipsync(s) for s in spec.scenes if s.driving_video is not None]
    body: dict[str, Any] = {
        "spec": spec,
        "images": images,
        "engines": [[info.capability, info.name, _version(info)] for info in used],
        "stop_at": inputs.stop_at,
        "sound": [inputs.settings.video_sound, inputs.settings.ambience_volume],
    }
    if driving:  # a spec without driving videos keeps the key it had
        body["driving_videos"] = [_file_digest(inputs, ref) for ref in driving]
    version = f"composition{COMPOSITION_VERSION}+assembly{ASSEMBLY_VERSION}"
    return stage_key("film", "", version, body, spec.seed)


def render_film(inputs: RenderInputs, report: Reporter) -> tuple[RenderReport, dict[str, bytes]]:
    """Runs the DAG and returns its report and the output files. `report(stage, status,
    progress)` is called as stages advance (the job runner writes it to the job row); the stages
    running when the render fails are reported failed.

    A render whose every input is unchanged (`film_key`) returns the earlier outputs from the
    cache and starts no task. Otherwise each step looks in the cache first, in this process, and
    only what missed becomes a task."""
    stages = _RunningStages(report)
    try:
        return _render(inputs, stages)
    except Exception:
        stages.fail()
        raise


class _RunningStages:
    """A reporter that remembers which stages run, so that a failed render can say where."""

    def __init__(self, report: Reporter) -> None:
        self.report = report
        self.running: dict[str, float] = {}

    def __call__(self, stage: str, status: str, progress: float) -> None:
        if status == "running":
            self.running[stage] = progress
        else:
            self.running.pop(stage, None)
        self.report(stage, status, progress)

    def fail(self) -> None:
        for stage, progress in list(self.running.items()):
            self(stage, "failed", progress)


def _render(inputs: RenderInputs, report: Reporter) -> tuple[RenderReport, dict[str, bytes]]:
    clock = _StageClock(inputs)
    cache = _cache(inputs)
    key = film_key(inputs)
    if (hit := cache.get("film", key)) is not None:
        return _reused(inputs, hit, report, clock)
    clock.lap("film lookup")
    if ray.cluster_resources().get("render_slot", 0) < 1:
        raise EngineUnavailable(
            "no Ray node offers a `render_slot` resource: clip encoding and assembly would "
            "wait forever (declare render_slot on the worker nodes, see cluster.yaml)"
        )
    spec = inputs.spec
    hits: list[str] = []
    misses: list[str] = []
    report("voice", "running", 0)
    narrations = _voices(inputs, cache, hits, misses, report)
    clock.done("voice", Capability.voice)
    plans = plan_scenes(inputs, narrations)
    duration = sum(p.frames for p in plans) / spec.fps
    fallback: str | None = None
    made_thumbnails: str | None = None
    if inputs.stop_at in ("plan", "voice"):
        files = _preview(inputs, plans, narrations, duration, report)
        warnings, rendered = [w for p in plans for w in p.warnings], 0.0
        costs = []
    else:
        files, clips, fallback = _film(
            inputs, cache, plans, narrations, duration, hits, misses, report, clock
        )
        warnings = [w for clip in clips for w in clip.warnings] + ([fallback] if fallback else [])
        costs = [clip.provider_cost for clip in clips if clip.provider_cost is not None]
        ran = sum(p.frames for p, c in zip(plans, clips, strict=True) if not c.cached)
        rendered = ran / spec.fps
        key_art = inputs.engines.key_art()
        made_thumbnails = "frames" if fallback or key_art is None else key_art.name
    summary = RenderReport(
        duration_s=duration,
        frame_count=sum(p.frames for p in plans),
        cache_hits=hits,
        cache_misses=misses,
        rendered_seconds=rendered,
        warnings=warnings,
        provider_costs=costs,
        thumbnails=made_thumbnails,
    )
    if fallback is None:  # a film whose key art fell back asks its image engine again next time
        cache.put("film", key, {**files, REPORT_FILE: summary.model_dump_json().encode()})
    cache.keep_within_budget()
    clock.lap("film store")
    return summary.model_copy(update={"stage_seconds": clock.seconds}), files


REPORT_FILE = "render-report.json"
"""The report of the render that made a film entry, kept with its outputs."""


def _reused(
    inputs: RenderInputs, hit: dict[str, bytes], report: Reporter, clock: _StageClock
) -> tuple[RenderReport, dict[str, bytes]]:
    """A film entry's outputs, every stage reported as cached."""
    made = RenderReport.model_validate_json(hit.pop(REPORT_FILE))
    stages = ("voice", "plan") if inputs.stop_at in ("plan", "voice") else STAGES
    for stage in stages:
        report(stage, "cached", 100)
    clock.lap("film lookup")
    summary = made.model_copy(
        update={
            "cache_hits": ["film"],
            "cache_misses": [],
            "rendered_seconds": 0.0,
            "provider_costs": [],
            "stage_seconds": clock.seconds,
        }
    )
    return summary, hit


STAGES = ("voice", "video", "assemble")
"""The stages a film render reports, in order."""


def _voices(
    inputs: RenderInputs,
    cache: StageCache,
    hits: list[str],
    misses: list[str],
    report: Reporter,
) -> list[Narration | None]:
    """Each scene's narration: from the cache, or synthesized by a task for the scenes that
    missed."""
    narrations: list[Narration | None] = []
    refs: dict[int, ray.ObjectRef] = {}
    for index in range(len(inputs.spec.scenes)):
        key = voice_key(inputs, index)
        narration = None if key is None else cached_voice(cache, key)
        narrations.append(narration)
        if key is not None and narration is None:
            refs[index] = voice_stage.remote(inputs, index, key)
            misses.append(f"voice:{index}")
        elif key is not None:
            hits.append(f"voice:{index}")
    count = len(refs)
    made = _gather(list(refs.values()), lambda done: report("voice", "running", 100 * done / count))
    for index, narration in zip(refs, made, strict=True):
        narrations[index] = narration
    report("voice", "succeeded" if refs else "cached", 100)
    return narrations


def _film(
    inputs: RenderInputs,
    cache: StageCache,
    plans: list[ScenePlan],
    narrations: list[Narration | None],
    duration: float,
    hits: list[str],
    misses: list[str],
    report: Reporter,
    clock: _StageClock,
) -> tuple[dict[str, bytes], list[ClipResult], str | None]:
    """The film after the voices: the soundtrack (music, mix, AAC, subtitles), a clip per scene
    (from the cache or through video, lip-sync and composition), the assembly and the stills;
    the files, the clips and the warning of thumbnails that fell back to frames
    (`stills_stage`). Each step is recorded in `hits` or `misses`."""
    missed = len(misses)
    score_s = music_length(duration)
    music = music_key(inputs, score_s)
    sound_key = soundtrack_key(inputs, plans, music)
    music_ref: ray.ObjectRef | None = None
    soundtrack: Soundtrack | ray.ObjectRef
    report("video", "running", 0)
    clip_refs, sounds, samples = _clips(inputs, cache, plans, narrations, hits, misses)
    if (sound_hit := cache.get("soundtrack", sound_key)) is not None:
        hits.append("soundtrack")
        soundtrack = Soundtrack.from_files(sound_hit)
    else:
        misses.append("soundtrack")
        music_ref = music_stage.remote(inputs, score_s, music)
        soundtrack = soundtrack_stage.remote(
            inputs, plans, narrations, music_ref, sound_key, sounds
        )
    stills: dict[str, bytes] | ray.ObjectRef
    fallback: str | ray.ObjectRef | None = None
    if (stills_hit := cache.get("stills", pictures := stills_key(inputs, plans))) is not None:
        hits.append("stills")
        stills = stills_hit
    else:
        misses.append("stills")
        refs: Any = stills_stage.remote(inputs, plans, pictures, *samples)
        stills, fallback = refs  # num_returns=2: two refs
    count = len(plans)
    clips = _gather(clip_refs, lambda done: report("video", "running", 100 * done / count))
    report("video", "cached" if all(c.cached for c in clips) else "succeeded", 100)
    clock.done("video", Capability.video)
    report("assemble", "running", 0)
    if music_ref is not None:
        music_audio, _, music_cached = ray.get(music_ref)
        if music_audio is not None:
            (hits if music_cached else misses).append("music")
    body = {"clips": [c.key for c in clips], "soundtrack": sound_key}
    assembly = stage_key("assembly", "", ASSEMBLY_VERSION, body, 0)
    film: bytes | ray.ObjectRef
    if (film_hit := cache.get("assembly", assembly)) is not None:
        hits.append("assembly")
        film = film_hit["film.mp4"]
    else:
        misses.append("assembly")
        segments = [segment for clip in clips for segment in clip.segments]
        film = assemble_stage.remote(inputs, assembly, segments, soundtrack)
    files = dict(_value(stills))
    sound: Soundtrack = _value(soundtrack)
    files |= {"film.mp4": _value(film)}
    files |= {name: data for name, data in sound.files().items() if name != "soundtrack.m4a"}
    report("assemble", "succeeded" if len(misses) > missed else "cached", 100)
    clock.done("assemble", Capability.video)
    return files, clips, _value(fallback)


def _clips(
    inputs: RenderInputs,
    cache: StageCache,
    plans: list[ScenePlan],
    narrations: list[Narration | None],
    hits: list[str],
    misses: list[str],
) -> tuple[list[ray.ObjectRef], list[Any], list[Any]]:
    """A ref per scene to its clip: put from the cache, or made by video, lip-sync, segment and
    clip tasks; per scene its ambience (bytes from the cache, the ref of its video task's sound,
    or None) and its samples (from the cache, or the ref of its kept frames' task). A scene
    that crossfades is looked up once the frame it fades from is known (from the cache, or from
    the small task that composes only that frame of the scene before), after every other scene
    has started."""
    made: dict[int, tuple[ray.ObjectRef, bool, Any, Any]] = {}
    last_frames: dict[int, ray.ObjectRef | bytes] = {}  # PNG, for the next scene's crossfade
    for plan in plans:
        if not plan.edges["crossfade_in"]:
            made[plan.index] = _clip(inputs, cache, plans, plan, None, narrations, last_frames)
    for plan in plans:  # in order: each may fade from the one just looked up
        if plan.edges["crossfade_in"]:
            previous: bytes = _value(last_frames.pop(plan.index - 1))
            made[plan.index] = _clip(inputs, cache, plans, plan, previous, narrations, last_frames)
    for plan in plans:
        (hits if made[plan.index][1] else misses).append(f"clip:{plan.index}")
    clips, _, sounds, samples = zip(*(made[plan.index] for plan in plans), strict=True)
    return list(clips), list(sounds), list(samples)


def _clip(
    inputs: RenderInputs,
    cache: StageCache,
    plans: list[ScenePlan],
    plan: ScenePlan,
    previous: bytes | None,
    narrations: list[Narration | None],
    last_frames: dict[int, ray.ObjectRef | bytes],
) -> tuple[ray.ObjectRef, bool, Any, Any]:
    """One scene's clip (see `_clips`), whether it came from the cache, its ambience and its
    samples (or refs to them); its last frame goes in `last_frames` when the next scene
    crossfades from it."""
    key = plan.clip_key if previous is None else crossfade_key(plan, previous)
    next_crossfades = plan.index + 1 < len(plans) and plans[plan.index + 1].edges["crossfade_in"]
    narration = narrations[plan.index]
    cached = cached_clip(cache, plan, key)
    if cached is not None:
        if next_crossfades:
            last_frames[plan.index] = cached.last_frame
        ambience = cached.ambience if makes_ambience(inputs, plan.index) else None
        return ray.put(cached), True, ambience, cached.samples
    video: Any = video_stage.remote(inputs, plan)
    frames, sound, provider_cost = video  # num_returns=3: three refs
    sync_warnings: Any = []
    if inputs.spec.scenes[plan.index].podcast is not None and narration is not None:
        composed: Any = podcast_stage.remote(inputs, plan, frames, narration)
        frames, sync_warnings = composed  # num_returns=2: two refs
    elif inputs.spec.scenes[plan.index].character is not None and narration is not None:
        lipsynced: Any = lipsync_stage.remote(inputs, plan, frames, narration)
        frames, sync_warnings = lipsynced  # num_returns=2: two refs
    kept: Any = kept_frames_stage.remote(inputs, plan, frames, narration, previous)
    last_frame, samples = kept  # num_returns=2: two refs
    if next_crossfades:
        last_frames[plan.index] = last_frame
    starts = chunk_starts(plan.frames, inputs.spec.fps)
    segments = [
        segment_stage.remote(inputs, plan, frames, narration, previous, start, stop)
        for start, stop in zip(starts, [*starts[1:], plan.frames], strict=True)
    ]
    ref = clip_stage.remote(
        inputs, plan, key, sync_warnings, last_frame, samples, sound, provider_cost, *segments
    )
    return ref, False, sound if makes_ambience(inputs, plan.index) else None, samples


def _value(value: Any) -> Any:
    """A step's result, made here (a value) or by a task (a ref)."""
    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


class _StageClock:
    """Times consecutive steps of a render: `seconds` for its report, and the stages into the
    `studio_stage_duration_seconds` histogram."""

    def __init__(self, inputs: RenderInputs) -> None:
        self.inputs = inputs
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, step: str) -> float:
        now = time.perf_counter()
        elapsed = now - self.started
        self.seconds[step] = round(self.seconds.get(step, 0.0) + elapsed, 4)
        self.started = now
        return elapsed

    def done(self, stage: str, capability: Capability) -> None:
        engine = self.inputs.engines.info(capability).deployment
        metrics.stage_done(stage, engine, self.lap(stage))


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
        pixels = _draw_keyframe(inputs, plan.index) if data is None else array_from_image(data)
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
