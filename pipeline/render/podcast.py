"""A podcast scene's picture: the speakers' talking heads in tiles over the background, each with
a name lower-third, the speaker of the line being spoken framed in the highlight colour.

The lines' times come from the dialogue's narration (`narration.narrate_lines`): its segments
are the lines' sentences in order, so each line's span is that of its sentences. Each speaker's
head is lip-synced to a track that holds only that speaker's lines, so a mouth moves only while
its speaker talks. The frames are composed one at a time as they are read (`PodcastFrames`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from models.base import Audio, Frames
from models.fonts import load_font
from pipeline.render import audio
from pipeline.render.narration import Narration, Segment, split_sentences
from pipeline.render.spec import Podcast, PodcastLayout

HIGHLIGHT = (255, 176, 0)
"""The frame around the speaker who is talking, and the bar of their lower-third."""
IDLE = (150, 150, 150)
"""The bar of the lower-third of a speaker who is silent."""


@dataclass(frozen=True)
class Box:
    """A rectangle in frame pixels."""

    left: int
    top: int
    width: int
    height: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """Rows and columns, for indexing a frame."""
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


@dataclass(frozen=True)
class LineSpan:
    """When one speaker's line is heard, in seconds."""

    speaker: str
    start_s: float
    end_s: float

    def shifted(self, offset_s: float) -> LineSpan:
        return LineSpan(self.speaker, self.start_s + offset_s, self.end_s + offset_s)


def line_spans(podcast: Podcast, segments: Sequence[Segment]) -> list[LineSpan]:
    """Each line's speaker and span, from the dialogue narration's sentence segments."""
    spans = []
    position = 0
    for line in podcast.lines:
        count = len(split_sentences(line.text))
        sentences = segments[position : position + count]
        spans.append(LineSpan(line.speaker, sentences[0].start_s, sentences[-1].end_s))
        position += count
    return spans


def speaker_track(
    narration: Narration, spans: Sequence[LineSpan], speaker: str, lead_s: float, duration_s: float
) -> Audio:
    """The scene's sound of one speaker: the dialogue with the other speakers' lines silenced,
    starting `lead_s` into a track of `duration_s`."""
    rate = narration.audio.sample_rate
    own = np.zeros_like(narration.audio.samples)
    for span in spans:
        if span.speaker == speaker:
            rows = slice(round(span.start_s * rate), round(span.end_s * rate))
            own[rows] = narration.audio.samples[rows]
    return audio.place([(lead_s, Audio(own, rate))], duration_s)


def tile_boxes(size: tuple[int, int], layout: PodcastLayout, count: int) -> list[Box]:
    """Where each speaker's head goes in frames of `size` (width, height): side by side, tiles
    sharing the upper part of the frame; picture in picture, small insets in its top corners.
    The space under each tile holds its lower-third (`plate_box`)."""
    width, height = size
    margin = round(0.05 * min(width, height))
    if layout is PodcastLayout.picture_in_picture:
        tile_w = _even(0.28 * width)
        tile_h = _even(min(1.2 * tile_w, 0.5 * height))
        lefts = [margin, width - margin - tile_w][:count]
        return [Box(left, margin, tile_w, tile_h) for left in lefts]
    gap = round(0.04 * width)
    tile_w = _even(min((width - 2 * margin - (count - 1) * gap) / count, 0.5 * width))
    tile_h = _even(min(0.62 * height, 1.3 * tile_w))
    first = (width - count * tile_w - (count - 1) * gap) // 2
    top = round(0.08 * height)
    return [Box(first + i * (tile_w + gap), top, tile_w, tile_h) for i in range(count)]


def plate_box(tile: Box, frame_size: tuple[int, int]) -> Box:
    """The lower-third's place: under the tile, from its left edge."""
    height = _plate_height(frame_size)
    return Box(tile.left, tile.top + tile.height, tile.width, height)


def head_picture(portrait: np.ndarray, box: Box) -> np.ndarray:
    """The portrait cover-cropped to the tile: centred across, a little above centre down,
    where a head-and-shoulders picture has the face."""
    picture = Image.fromarray(portrait).convert("RGB")
    scale = max(box.width / picture.width, box.height / picture.height)
    resized = picture.resize(
        (math.ceil(picture.width * scale), math.ceil(picture.height * scale)),
        Image.Resampling.LANCZOS,
    )
    left = (resized.width - box.width) // 2
    top = round(0.3 * (resized.height - box.height))
    return np.asarray(resized.crop((left, top, left + box.width, top + box.height)))


def name_plate(name: str, box: Box, active: bool) -> np.ndarray:
    """A lower-third as RGBA (uint8) of the box's size: the name in white on translucent black,
    after a bar in the highlight colour while the speaker talks."""
    plate = Image.new("RGBA", (box.width, box.height))
    draw = ImageDraw.Draw(plate)
    draw.rectangle((0, 0, box.width, box.height), fill=(0, 0, 0, 190))
    bar = max(3, round(0.12 * box.height))
    draw.rectangle((0, 0, bar - 1, box.height), fill=(*(HIGHLIGHT if active else IDLE), 255))
    font = load_font(name, max(9, round(0.62 * box.height)))
    left, top, _, bottom = draw.textbbox((0, 0), name, font=font)
    x = 2 * bar - left
    y = (box.height - (bottom - top)) // 2 - top
    draw.text((x, y), name, font=font, fill=(255, 255, 255, 255))
    return np.asarray(plate)


def active_speakers(
    spans: Sequence[LineSpan], speakers: Sequence[str], count: int, fps: int
) -> list[int | None]:
    """Per frame, the index of the speaker highlighted: the speaker of the last line begun (none
    before the first)."""
    active: list[int | None] = []
    for index in range(count):
        time_s = index / fps
        begun = [span for span in spans if span.start_s <= time_s]
        active.append(speakers.index(begun[-1].speaker) if begun else None)
    return active


class PodcastFrames(Frames):
    """The background with the heads in their tiles, the lower-thirds under them and the
    highlight around the head of the speaker who talks (`active[i]` in frame i), drawn frame by
    frame as read."""

    def __init__(
        self,
        background: Frames,
        heads: Sequence[Frames],
        boxes: Sequence[Box],
        names: Sequence[str],
        active: Sequence[int | None],
    ) -> None:
        self.background, self.fps = background, background.fps
        self.heads, self.boxes, self.names = list(heads), list(boxes), list(names)
        self.active = list(active)
        height, width = background.frame(0).shape[:2]
        self.size = (width, height)

    def __len__(self) -> int:
        return len(self.background)

    @cached_property
    def pixels(self) -> np.ndarray:  # type: ignore[override]
        return np.stack([self.frame(index) for index in range(len(self))])

    def frame(self, index: int) -> np.ndarray:
        pixels = np.array(self.background.frame(index), dtype=np.uint8, copy=True)
        for number, (head, box) in enumerate(zip(self.heads, self.boxes, strict=True)):
            active = self.active[index] == number
            if active:
                border = max(2, round(0.012 * self.size[1]))
                outline = Box(box.left - border, box.top - border, box.width + 2 * border,
                              box.height + 2 * border)  # fmt: skip
                pixels[_clipped(outline, self.size).slices] = HIGHLIGHT
            pixels[box.slices] = head.frame(index)
            plate = self._plates[number][active]
            window = pixels[plate_box(box, self.size).slices]
            alpha = plate[: window.shape[0], : window.shape[1], 3:4].astype(np.float32) / 255
            colour = plate[: window.shape[0], : window.shape[1], :3]
            window[:] = (window * (1 - alpha) + colour * alpha).astype(np.uint8)
        return pixels

    @cached_property
    def _plates(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per speaker, the lower-third when silent and when talking."""
        return [
            (name_plate(name, plate_box(box, self.size), False),
             name_plate(name, plate_box(box, self.size), True))
            for name, box in zip(self.names, self.boxes, strict=True)
        ]  # fmt: skip

    def __reduce__(self) -> tuple[Any, ...]:
        return PodcastFrames, (self.background, self.heads, self.boxes, self.names, self.active)


def _clipped(box: Box, size: tuple[int, int]) -> Box:
    left, top = max(0, box.left), max(0, box.top)
    right = min(size[0], box.left + box.width)
    bottom = min(size[1], box.top + box.height)
    return Box(left, top, right - left, bottom - top)


def _plate_height(frame_size: tuple[int, int]) -> int:
    return max(14, round(0.075 * min(frame_size)))


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)
