"""A scene's clip: captions burned in, transitions applied, encoded to an H.264 segment.

Segments of one film are encoded with identical settings (`EncoderSettings`) and each starts a
closed GOP with an IDR frame, so that `assemble` joins them by remuxing, without re-encoding. A
scene long enough is encoded as several segments of equal length (`chunk_starts`), each starting
on a keyframe, so that its parts encode side by side.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import av
import cv2
import numpy as np
from av.video.reformatter import ColorRange
from PIL import Image, ImageDraw, ImageFont

from models.base import Frames
from models.fonts import load_font
from pipeline.render.narration import Segment
from pipeline.render.spec import Transition
from pipeline.render.subtitles import cues

_BT709 = 1
_SMPTE170M = 6
"""The BT.601 matrix (H.273 code 6): what OpenCV's RGB to I420 conversion applies."""
_CAPTION_MAX_LINES = 3


@dataclass(frozen=True)
class EncoderSettings:
    """x264 settings shared by every segment of a film. A keyframe every `gop_s` seconds at fixed
    places (no scene-cut detection): segment sizes and seek points are predictable. One encoder
    thread: the render DAG encodes one scene per `render_slot`, and a slot is one core (its task
    declares `num_cpus=1`), so scenes, not threads, share the cores; 0 lets x264 take them all.
    A scene of at least two GOPs is cut into up to `chunks` segments at keyframes
    (`chunk_starts`): a fixed number, not the cluster's slots, so that a scene gives the same bytes
    on any cluster."""

    preset: str = "veryfast"
    crf: int = 20
    gop_s: float = 2.0
    threads: int = 1
    chunks: int = 2

    def keyint(self, fps: int) -> int:
        """Frames from one keyframe to the next."""
        return max(1, round(self.gop_s * fps))

    def options(self, fps: int) -> dict[str, str]:
        keyint = self.keyint(fps)
        return {
            "preset": self.preset,
            "crf": str(self.crf),
            "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:open-gop=0",
        }


@dataclass(frozen=True)
class SceneEdges:
    """What happens at a clip's two ends."""

    fade_in: bool = False
    fade_out: bool = False
    crossfade_in: bool = False


def scene_edges(transitions: Sequence[Transition]) -> list[SceneEdges]:
    """The edges of each scene from the scenes' transitions (each one leads into the next scene).

    The film opens from black; the last scene's transition says how it ends: `cut` hard, the
    others fade to black.
    """
    edges = []
    for i, transition in enumerate(transitions):
        before = transitions[i - 1] if i > 0 else Transition.fade
        if i == len(transitions) - 1:
            fade_out = transition != Transition.cut
        else:
            fade_out = transition == Transition.fade
        edges.append(
            SceneEdges(
                fade_in=before == Transition.fade,
                fade_out=fade_out,
                crossfade_in=before == Transition.crossfade,
            )
        )
    return edges


def compose_clip(
    frames: Frames,
    *,
    captions: Sequence[Segment] = (),
    edges: SceneEdges = SceneEdges(),
    previous_last_frame: np.ndarray | None = None,
    transition_s: float = 0.5,
) -> Frames:
    """The finished picture of one scene. `captions` are timed from the scene's start;
    `previous_last_frame` (the last frame of the scene before) is needed for a crossfade."""
    if edges.crossfade_in and previous_last_frame is None:
        raise ValueError("a crossfade needs the previous scene's last frame")
    return ComposedFrames(frames, captions, edges, previous_last_frame, transition_s)


@dataclass(frozen=True)
class _Overlay:
    """A caption cue's box: shown from `start_s` (inclusive) to `end_s`, at `top`, `left`; its
    RGB `colour` is blended over the frame by `alpha` (0 to 1, one per pixel)."""

    start_s: float
    end_s: float
    top: int
    left: int
    colour: np.ndarray
    alpha: np.ndarray


class ComposedFrames(Frames):
    """A scene's frames with the crossfade, captions and fades applied, one frame at a time as
    they are read (`frame`): the encoder pulls them, so a whole clip is never held in memory;
    `pixels` composes them all."""

    def __init__(
        self,
        source: Frames,
        captions: Sequence[Segment],
        edges: SceneEdges,
        previous_last_frame: np.ndarray | None,
        transition_s: float,
    ) -> None:
        self.source, self.fps, self.edges = source, source.fps, edges
        self.captions, self.previous = list(captions), previous_last_frame
        self.length = max(1, min(round(transition_s * source.fps), len(source) // 2))
        self._overlays: list[_Overlay] | None = None

    def __len__(self) -> int:
        return len(self.source)

    @cached_property
    def pixels(self) -> np.ndarray:  # type: ignore[override]
        return np.stack([self.frame(index) for index in range(len(self))])

    def frame(self, index: int) -> np.ndarray:
        pixels = np.array(self.source.frame(index), dtype=np.uint8, copy=True)
        length, count = self.length, len(self)
        if self.edges.crossfade_in and index < length and self.previous is not None:
            weight = (index + 1) / (length + 1)
            cv2.addWeighted(self.previous, 1 - weight, pixels, weight, 0, dst=pixels)
        time_s = index / self.fps
        for overlay in self._caption_overlays(pixels.shape[:2]):
            if overlay.start_s <= time_s < overlay.end_s:
                box_height, box_width = overlay.alpha.shape[:2]
                rows = slice(overlay.top, overlay.top + box_height)
                window = pixels[rows, overlay.left : overlay.left + box_width]
                weights = (1 - overlay.alpha, overlay.alpha)
                window[:] = cv2.blendLinear(window, overlay.colour, *weights)
        if self.edges.fade_in and index < length:
            cv2.convertScaleAbs(pixels, dst=pixels, alpha=index / length)
        if self.edges.fade_out and index >= count - length:
            cv2.convertScaleAbs(pixels, dst=pixels, alpha=(count - 1 - index) / length)
        return pixels

    def _caption_overlays(self, size: tuple[int, ...]) -> list[_Overlay]:
        """Each cue's box, rendered once, at the bottom centre of frames of `size` (h, w)."""
        if self._overlays is None:
            height, width = size
            self._overlays = []
            for cue in cues(self.captions):
                rgba = caption_overlay(cue.text, width, height)
                top = height - round(0.06 * height) - rgba.shape[0]
                left = (width - rgba.shape[1]) // 2
                colour = np.ascontiguousarray(rgba[..., :3])
                alpha = rgba[..., 3].astype(np.float32) / 255
                self._overlays.append(_Overlay(cue.start_s, cue.end_s, top, left, colour, alpha))
        return self._overlays


def caption_overlay(text: str, width: int, height: int) -> np.ndarray:
    """An RGBA box (uint8) with the text, white on translucent black. The text's own line
    breaks are kept and lines too wide for the frame are wrapped; the font shrinks until the text
    fits in three lines."""
    size = max(12, round(min(width, height) * 0.05))
    while True:
        font = load_font(text, size)
        lines = [
            wrapped
            for line in text.splitlines()
            for wrapped in wrap_text(line, font, round(0.86 * width))
        ]
        if len(lines) <= _CAPTION_MAX_LINES or size <= 12:
            break
        size = max(12, round(size * 0.85))
    padding, spacing = round(size * 0.4), round(size * 0.25)
    block = "\n".join(lines)
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    left, top, right, bottom = probe.multiline_textbbox((0, 0), block, font=font, spacing=spacing)
    box_size = (math.ceil(right - left) + 2 * padding, math.ceil(bottom - top) + 2 * padding)
    box = Image.new("RGBA", box_size)
    draw = ImageDraw.Draw(box)
    draw.rounded_rectangle((0, 0, *box.size), radius=padding, fill=(0, 0, 0, 170))
    draw.multiline_text(
        (padding - left, padding - top),
        block,
        font=font,
        fill=(255, 255, 255, 255),
        spacing=spacing,
        align="center",
    )
    return np.asarray(box)


def wrap_text(text: str, font: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    """Greedy word wrap by rendered width; a word wider than `max_width` gets a line alone."""
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(candidate) <= max_width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


def chunk_starts(count: int, fps: int, settings: EncoderSettings = EncoderSettings()) -> list[int]:
    """Where each segment of a scene of `count` frames starts: 0, then up to `settings.chunks` - 1
    cuts sharing the scene equally, so that its parts take as long as each other (a scene shorter
    than two GOPs stays whole). A segment starts on a keyframe and its GOPs count from there."""
    parts = max(1, min(settings.chunks, count // settings.keyint(fps)))
    return [round(i * count / parts) for i in range(parts)]


class FrameSpan(Frames):
    """Frames `start` to `stop` (excluded) of `source`, read on demand like the source's."""

    def __init__(self, source: Frames, start: int, stop: int) -> None:
        self.source, self.fps, self.start, self.stop = source, source.fps, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    @cached_property
    def pixels(self) -> np.ndarray:  # type: ignore[override]
        return np.stack([self.frame(index) for index in range(len(self))])

    def frame(self, index: int) -> np.ndarray:
        return self.source.frame(self.start + index)


def encode_segment(frames: Frames, settings: EncoderSettings = EncoderSettings()) -> bytes:
    """The clip as an MP4 holding one H.264 (High, yuv420p) video stream. Frames are read one at
    a time (`Frames.frame`), so frames drawn on demand are never all in memory. OpenCV converts
    them to limited-range I420 with the BT.601 matrix (faster than swscale's conversion); the
    stream says so (matrix BT.601, primaries and transfer BT.709, those of sRGB pictures), so
    players turn it back into the same colours."""
    first = frames.frame(0)
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), not {first.dtype} {first.shape}")
    height, width = first.shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"frame size {width}x{height} must be even for yuv420p")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream(
            "libx264", rate=frames.fps, options=settings.options(frames.fps)
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.profile = "high"
        context = stream.codec_context
        context.thread_count = settings.threads
        context.color_primaries = context.color_trc = _BT709
        context.colorspace = _SMPTE170M
        context.color_range = ColorRange.MPEG
        for index in range(len(frames)):
            pixel_frame = first if index == 0 else frames.frame(index)
            i420 = np.asarray(cv2.cvtColor(pixel_frame, cv2.COLOR_RGB2YUV_I420), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()
