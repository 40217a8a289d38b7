"""A scene's clip: captions burned in, transitions applied, encoded to an H.264 segment.

Segments of one film are encoded with identical settings (`EncoderSettings`) and each starts a
closed GOP with an IDR frame, so that `assemble` joins them by remuxing, without re-encoding.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace
from PIL import Image, ImageDraw, ImageFont

from models.base import Frames
from pipeline.narration import Segment
from pipeline.spec import Transition
from pipeline.subtitles import cues

_BT709 = 1
_CAPTION_MAX_LINES = 3


@dataclass(frozen=True)
class EncoderSettings:
    """x264 settings shared by every segment of a film. A keyframe every `gop_s` seconds at fixed
    places (no scene-cut detection): segment sizes and seek points are predictable."""

    preset: str = "veryfast"
    crf: int = 20
    gop_s: float = 2.0
    threads: int = 0

    def options(self, fps: int) -> dict[str, str]:
        keyint = max(1, round(self.gop_s * fps))
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
    pixels = np.array(frames.pixels, dtype=np.uint8, copy=True)
    length = max(1, min(round(transition_s * frames.fps), len(pixels) // 2))
    if edges.crossfade_in:
        if previous_last_frame is None:
            raise ValueError("a crossfade needs the previous scene's last frame")
        crossfade_from(pixels, previous_last_frame, length)
    burn_captions(pixels, frames.fps, captions)
    if edges.fade_in:
        fade(pixels[:length], rising=True)
    if edges.fade_out:
        fade(pixels[len(pixels) - length :], rising=False)
    return Frames(pixels, frames.fps)


def crossfade_from(pixels: np.ndarray, previous: np.ndarray, length: int) -> None:
    """Blend the first `length` frames in place from the still `previous` into the clip."""
    weights = (np.arange(1, length + 1, dtype=np.float32) / (length + 1))[:, None, None, None]
    head = pixels[:length].astype(np.float32)
    pixels[:length] = np.rint(previous * (1 - weights) + head * weights).astype(np.uint8)


def fade(pixels: np.ndarray, *, rising: bool) -> None:
    """Fade the frames in place from black (`rising`) or to black; the black end is exact."""
    steps = np.arange(len(pixels), dtype=np.float32) / len(pixels)
    levels = steps if rising else steps[::-1]
    pixels[:] = np.rint(pixels * levels[:, None, None, None]).astype(np.uint8)


def burn_captions(pixels: np.ndarray, fps: int, segments: Sequence[Segment]) -> None:
    """Draw each cue, in place, on the frames during which it is spoken (a frame shows the cue
    active at its start time); each cue's overlay is rendered once."""
    height, width = pixels.shape[1:3]
    times = np.arange(len(pixels)) / fps
    for cue in cues(segments):
        shown = np.flatnonzero((times >= cue.start_s) & (times < cue.end_s))
        if len(shown) == 0:
            continue
        rgba = caption_overlay(cue.text, width, height)
        box_height, box_width = rgba.shape[:2]
        top = height - round(0.06 * height) - box_height
        left = (width - box_width) // 2
        colour, alpha = rgba[..., :3].astype(np.float32), rgba[..., 3:].astype(np.float32) / 255
        window = (shown, slice(top, top + box_height), slice(left, left + box_width))
        under = pixels[window].astype(np.float32)
        pixels[window] = np.rint(under * (1 - alpha) + colour * alpha).astype(np.uint8)


def caption_overlay(text: str, width: int, height: int) -> np.ndarray:
    """An RGBA box (uint8) with the text, white on translucent black. The text's own line
    breaks are kept and lines too wide for the frame are wrapped; the font shrinks until the text
    fits in three lines."""
    size = max(12, round(min(width, height) * 0.05))
    while True:
        font = load_font(size)
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


def load_font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font (Aileron) at `size` pixels."""
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise RuntimeError("Pillow was built without FreeType, which sized text needs")
    return font


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


def encode_segment(frames: Frames, settings: EncoderSettings = EncoderSettings()) -> bytes:
    """The clip as an MP4 holding one H.264 (High, yuv420p, BT.709) video stream."""
    pixels = frames.pixels
    if pixels.ndim != 4 or pixels.shape[3] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), not {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape[1:3]
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
        context.colorspace = context.color_primaries = context.color_trc = _BT709
        context.color_range = ColorRange.MPEG
        for pixel_frame in pixels:
            frame = av.VideoFrame.from_ndarray(pixel_frame, format="rgb24").reformat(
                format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG
            )
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()
