"""The media path end to end on synthetic scenes: compose three clips (captions and each kind
of transition), encode them as segments, join them with a ducked soundtrack, then decode the
MP4 and check what a viewer would see and hear."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from models.base import Audio, Frames
from pipeline.render.assemble import (
    FilmInfo,
    SegmentMismatch,
    assemble,
    encode_soundtrack,
    frames_at,
    inspect_film,
    verify_film,
)
from pipeline.render.audio import SAMPLE_RATE, duck, end_at, limit, mix_film, place, resample
from pipeline.render.compose import (
    FrameSpan,
    SceneEdges,
    chunk_starts,
    compose_clip,
    encode_segment,
    scene_edges,
)
from pipeline.render.narration import Segment, narrate
from pipeline.render.spec import Transition

FPS = 24
WIDTH, HEIGHT = 640, 360
SCENE_FRAMES = [48, 72, 48]
TRANSITIONS = [Transition.fade, Transition.crossfade, Transition.cut]
LEAD_S = 0.3
VOICE_HZ, MUSIC_HZ = 1000.0, 220.0
NARRATIONS = ["Hello there. The sky is wide.", "A short line.", "The end is near."]


@dataclass
class Film:
    path: Path
    sources: list[np.ndarray]
    segments: list[bytes]
    speech: list[Segment]
    frames: np.ndarray
    sound: np.ndarray
    info: FilmInfo


def scene_pixels(scene: int, count: int) -> np.ndarray:
    """A gradient in the scene's colour with a white bar sliding across it, so frames change."""
    base = np.array([(200, 80, 60), (60, 170, 90), (70, 90, 210)][scene], np.float32)
    shade = 0.6 + 0.4 * np.linspace(0, 1, WIDTH, dtype=np.float32)[:, None]
    row = (base * shade).astype(np.uint8)
    frames = np.broadcast_to(row, (count, HEIGHT, WIDTH, 3)).copy()
    for t in range(count):
        centre = (t * 9) % WIDTH
        frames[t, :, max(0, centre - 24) : centre + 24] = 255
    return frames


def tone_voice(text: str) -> Audio:
    """A 1 kHz tone 40 ms per character, at the voice engine's 22 050 Hz."""
    rate = 22_050
    n = np.arange(round(0.04 * len(text) * rate))
    return Audio((0.5 * np.sin(2 * np.pi * VOICE_HZ * n / rate)).astype(np.float32), rate)


def scene_starts() -> list[float]:
    return [sum(SCENE_FRAMES[:i]) / FPS for i in range(len(SCENE_FRAMES))]


@pytest.fixture(scope="module")
def film(tmp_path_factory: pytest.TempPathFactory) -> Film:
    edges = scene_edges(TRANSITIONS)
    sources, segments, speech, voice_clips = [], [], [], []
    previous_last = None
    for scene, (count, start_s) in enumerate(zip(SCENE_FRAMES, scene_starts(), strict=True)):
        narration = narrate(tone_voice, NARRATIONS[scene])
        captions = [segment.shifted(LEAD_S) for segment in narration.segments]
        pixels = scene_pixels(scene, count)
        clip = compose_clip(
            Frames(pixels, FPS),
            captions=captions,
            edges=edges[scene],
            previous_last_frame=previous_last,
        )
        previous_last = clip.pixels[-1]
        sources.append(pixels)
        segments.append(encode_segment(clip))
        speech += [segment.shifted(start_s) for segment in captions]
        voice_clips.append((start_s + LEAD_S, narration.audio))
    total_s = sum(SCENE_FRAMES) / FPS
    music = Audio(
        (0.5 * np.sin(2 * np.pi * MUSIC_HZ * np.arange(round(total_s * 44_100)) / 44_100)).astype(
            np.float32
        ),
        44_100,
    )
    soundtrack = mix_film(place(voice_clips, total_s), music, music_volume=0.5)
    aac = encode_soundtrack(soundtrack, total_s)
    path = assemble(segments, aac, tmp_path_factory.mktemp("film") / "film.mp4")
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        sound = np.concatenate([f.to_ndarray().mean(axis=0) for f in container.decode(audio=0)])
    return Film(path, sources, segments, speech, frames, sound, inspect_film(path))


def luma(frame: np.ndarray) -> float:
    return float(frame.mean())


def first_frame(scene: int) -> int:
    return sum(SCENE_FRAMES[:scene])


def level_db(sound: np.ndarray, hz: float, start_s: float, end_s: float) -> float:
    """The level of one frequency in a stretch of the decoded sound (Hann-windowed DFT)."""
    stretch = sound[round(start_s * SAMPLE_RATE) : round(end_s * SAMPLE_RATE)]
    window = np.hanning(len(stretch))
    phase = np.exp(-2j * np.pi * hz * np.arange(len(stretch)) / SAMPLE_RATE)
    amplitude = 2 * abs(np.sum(stretch * window * phase)) / window.sum()
    return 20 * np.log10(amplitude + 1e-12)


def test_streams_are_h264_high_yuv420p_and_aac_lc_at_48_khz(film: Film) -> None:
    info = film.info
    assert (info.video_codec, info.video_profile, info.pix_fmt) == ("h264", "High", "yuv420p")
    assert (info.width, info.height, info.fps) == (WIDTH, HEIGHT, FPS)
    assert (info.audio_codec, info.audio_profile, info.sample_rate) == ("aac", "LC", 48_000)


def test_the_film_decodes_to_the_planned_frames_and_length(film: Film) -> None:
    info = verify_film(film.path, frame_count=sum(SCENE_FRAMES), fps=FPS)
    assert len(film.frames) == sum(SCENE_FRAMES)
    assert info.duration_s == pytest.approx(sum(SCENE_FRAMES) / FPS, abs=1 / FPS)
    assert info.audio_duration_s == pytest.approx(info.video_duration_s, abs=1 / FPS)


def test_the_index_comes_before_the_media_data(film: Film) -> None:
    data = film.path.read_bytes()
    assert film.info.faststart
    assert data.index(b"moov") < data.index(b"mdat")


def test_segments_are_joined_without_re_encoding(film: Film) -> None:
    def packet_bytes(source: str | io.BytesIO) -> list[bytes]:
        with av.open(source) as container:
            return [bytes(p) for p in container.demux(video=0) if p.size]

    joined = [b for segment in film.segments for b in packet_bytes(io.BytesIO(segment))]
    assert packet_bytes(str(film.path)) == joined


def test_pictures_are_not_black_and_move(film: Film) -> None:
    for scene, count in enumerate(SCENE_FRAMES):
        middle = film.frames[first_frame(scene) + count // 2 - 6 : first_frame(scene) + count // 2]
        assert all(luma(frame) > 60 for frame in middle)
        steps = np.abs(np.diff(middle.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
        assert (steps > 1).all()


def test_the_film_opens_from_black_and_a_fade_dips_to_black(film: Film) -> None:
    boundary = first_frame(1)
    assert luma(film.frames[0]) < 4
    assert luma(film.frames[boundary - 1]) < 4 and luma(film.frames[boundary]) < 4
    assert luma(film.frames[boundary - 12]) > 60 and luma(film.frames[boundary + 12]) > 60


def test_a_crossfade_starts_from_the_previous_scenes_last_frame(film: Film) -> None:
    boundary = first_frame(2)
    first, last_before = film.frames[boundary].astype(int), film.frames[boundary - 1]
    own_source = film.sources[2][0]
    assert np.abs(first - last_before).mean() < 0.5 * np.abs(first - own_source).mean()
    settled = film.frames[boundary + 12].astype(int)
    assert np.abs(settled - film.sources[2][12]).mean() < 4


def test_a_cut_at_the_end_leaves_the_last_frame_bright(film: Film) -> None:
    assert luma(film.frames[-1]) > 60


def test_captions_change_the_bottom_band_only_while_spoken(film: Film) -> None:
    start = first_frame(1)
    spoken = start + round((LEAD_S + 0.2) * FPS)
    quiet = start + SCENE_FRAMES[1] - 4

    def changed(frame: int, rows: slice) -> float:
        """The share of pixels in `rows` that differ clearly from the scene's source frame."""
        source = film.sources[1][frame - start].astype(int)
        difference = np.abs(film.frames[frame][rows].astype(int) - source[rows]).max(axis=2)
        return float((difference > 40).mean())

    bottom, top = slice(HEIGHT * 3 // 4, HEIGHT), slice(0, HEIGHT // 2)
    assert changed(spoken, bottom) > 0.03
    assert changed(spoken, top) < 0.01
    assert changed(quiet, bottom) < 0.01


def test_the_voice_is_heard_where_the_narration_is(film: Film) -> None:
    for segment in film.speech:
        middle = (segment.start_s + segment.end_s) / 2
        assert level_db(film.sound, VOICE_HZ, middle - 0.05, middle + 0.05) > -30
    assert level_db(film.sound, VOICE_HZ, 0.0, 0.2) < -50


def test_the_music_is_ducked_under_the_narration(film: Film) -> None:
    alone = level_db(film.sound, MUSIC_HZ, 0.0, 0.2)
    longest = max(film.speech, key=lambda segment: segment.end_s - segment.start_s)
    middle = (longest.start_s + longest.end_s) / 2
    under = level_db(film.sound, MUSIC_HZ, middle - 0.1, middle + 0.1)
    assert alone > -30
    assert alone - under > 9


def test_frames_at_returns_the_frames_shown_at_those_times(film: Film) -> None:
    times = [5.0, 0.0, 3.01, 99.0]
    frames = frames_at(film.path, times)
    assert np.array_equal(frames[0], film.frames[round(5.0 * FPS)])
    assert np.array_equal(frames[1], film.frames[0])
    assert np.array_equal(frames[2], film.frames[int(3.01 * FPS)])
    assert np.array_equal(frames[3], film.frames[-1])


def test_segments_too_short_for_the_b_frame_delay_join_in_order(tmp_path: Path) -> None:
    lengths = [6, 1, 2, 3, 5]
    grey_levels = [40 * (index + 1) for index in range(len(lengths))]
    segments = [
        encode_segment(Frames(np.full((count, 64, 64, 3), level, np.uint8), FPS))
        for count, level in zip(lengths, grey_levels, strict=True)
    ]
    silence = encode_soundtrack(Audio(np.zeros(10, np.float32), SAMPLE_RATE), sum(lengths) / FPS)
    path = assemble(segments, silence, tmp_path / "x.mp4")
    verify_film(path, frame_count=sum(lengths), fps=FPS)
    with av.open(str(path)) as container:
        shown = [frame.to_ndarray(format="rgb24").mean() for frame in container.decode(video=0)]
    expected = np.repeat(grey_levels, lengths)
    assert np.abs(np.array(shown) - expected).max() <= 2


def test_a_long_clip_is_cut_in_equal_parts_that_join_into_the_whole(tmp_path: Path) -> None:
    gop = 2 * FPS  # EncoderSettings.gop_s
    assert chunk_starts(2 * gop - 1, FPS) == [0]  # shorter than two GOPs: whole
    assert chunk_starts(2 * gop, FPS) == [0, gop]
    count = 3 * gop + 20
    starts = chunk_starts(count, FPS)
    assert starts == [0, count // 2]  # two equal parts, the second starting on its own keyframe
    edges = SceneEdges(fade_in=True, fade_out=True)
    captions = [Segment("Across the cut", 3.5, 4.5)]
    clip = compose_clip(Frames(scene_pixels(1, count), FPS), captions=captions, edges=edges)
    bounds = list(zip(starts, [*starts[1:], count], strict=True))
    parts = [encode_segment(FrameSpan(clip, start, stop)) for start, stop in bounds]
    assert parts == [
        encode_segment(FrameSpan(clip, start, stop)) for start, stop in bounds
    ]  # same bytes
    silence = encode_soundtrack(Audio(np.zeros(10, np.float32), SAMPLE_RATE), count / FPS)
    path = assemble(parts, silence, tmp_path / "x.mp4")
    verify_film(path, frame_count=count, fps=FPS)
    with av.open(str(path)) as container:
        decoded = [(f.key_frame, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    keyframes = [*range(0, count // 2, gop), *range(count // 2, count, gop)]
    assert [i for i, (key, _) in enumerate(decoded) if key] == keyframes
    shown = np.stack([pixels for _, pixels in decoded]).astype(int)
    assert np.abs(shown - clip.pixels).mean(axis=(1, 2, 3)).max() < 3


def test_segments_of_different_sizes_cannot_be_joined(tmp_path: Path) -> None:
    small = encode_segment(Frames(np.zeros((2, 64, 64, 3), np.uint8), FPS))
    wide = encode_segment(Frames(np.zeros((2, 64, 96, 3), np.uint8), FPS))
    with pytest.raises(SegmentMismatch, match="segment 1"):
        silence = encode_soundtrack(Audio(np.zeros(100, np.float32), SAMPLE_RATE), 2 / FPS)
        assemble([small, wide], silence, tmp_path / "x.mp4")


def test_odd_frame_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="even"):
        encode_segment(Frames(np.zeros((2, 63, 64, 3), np.uint8), FPS))


def test_resampling_keeps_length_and_pitch() -> None:
    rate = 22_050
    tone = Audio(np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32), rate)
    resampled = resample(tone)
    assert resampled.sample_rate == SAMPLE_RATE and len(resampled.samples) == SAMPLE_RATE
    expected = np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
    assert np.abs(resampled.samples[100:-100] - expected[100:-100]).max() < 1e-3


def test_ducking_lowers_the_music_by_the_depth_while_the_voice_speaks() -> None:
    music = Audio(np.full(3 * SAMPLE_RATE, 0.5, np.float32), SAMPLE_RATE)
    voice = np.zeros(3 * SAMPLE_RATE, np.float32)
    voice[SAMPLE_RATE : 2 * SAMPLE_RATE] = 0.3
    ducked = duck(music, Audio(voice, SAMPLE_RATE), depth_db=12).samples
    assert ducked[SAMPLE_RATE // 2] == pytest.approx(0.5, rel=1e-3)
    assert ducked[SAMPLE_RATE + SAMPLE_RATE // 2] == pytest.approx(0.5 * 10 ** (-12 / 20), rel=0.02)
    assert ducked[SAMPLE_RATE] < 0.5 * 10 ** (-6 / 20)


def test_an_ambience_bed_is_levelled_then_ducked_under_the_narration() -> None:
    """A model's sound comes at any level: a faint one and a loud one end up at the same bed
    level (normalised, then `ambience_volume`), lowered where the narration speaks."""
    voice = np.zeros(3 * SAMPLE_RATE, np.float32)
    voice[SAMPLE_RATE : 2 * SAMPLE_RATE] = 0.3 * np.sin(np.arange(SAMPLE_RATE) / 3)
    hum = np.sin(2 * np.pi * 60 * np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
    beds = []
    for level in (0.01, 0.9):
        ambience = Audio(level * hum, SAMPLE_RATE)
        mixed = mix_film(Audio(voice, SAMPLE_RATE), None, music_volume=0.0,
                         ambience=ambience, ambience_volume=0.5).samples  # fmt: skip
        beds.append(np.sqrt(np.mean(mixed[: SAMPLE_RATE // 2] ** 2)))
        under = mixed[SAMPLE_RATE + SAMPLE_RATE // 4 : 2 * SAMPLE_RATE - SAMPLE_RATE // 4]
        speech = voice[SAMPLE_RATE + SAMPLE_RATE // 4 : 2 * SAMPLE_RATE - SAMPLE_RATE // 4]
        assert np.sqrt(np.mean((under - speech * (under @ speech) / (speech @ speech)) ** 2)) < (
            beds[-1] / 2
        ), "ducked under the voice"
    assert beds[0] == pytest.approx(beds[1], rel=0.05)
    assert beds[0] == pytest.approx(0.5 * 10 ** (-18 / 20), rel=0.1)
    silent = mix_film(Audio(voice, SAMPLE_RATE), None, music_volume=0.0,
                      ambience=Audio(hum, SAMPLE_RATE), ambience_volume=0.0).samples  # fmt: skip
    assert np.sqrt(np.mean(silent[: SAMPLE_RATE // 2] ** 2)) < 1e-6, "dropped at volume 0"


def test_a_longer_score_ends_with_the_film_fading_out() -> None:
    tone = np.sin(np.arange(50 * SAMPLE_RATE) * 2 * np.pi * 220 / SAMPLE_RATE).astype(np.float32)
    ended = end_at(Audio(tone, SAMPLE_RATE), 43.0, fade_s=2.0).samples
    assert len(ended) == 43 * SAMPLE_RATE
    second = [np.abs(ended[i * SAMPLE_RATE : (i + 1) * SAMPLE_RATE]).max() for i in range(43)]
    assert min(second[:41]) > 0.99, "untouched until the fade"
    assert second[42] < 0.51 and abs(ended[-1]) < 1e-3, "half down a second before the end"


def test_the_limiter_keeps_peaks_under_the_ceiling_and_quiet_parts_untouched() -> None:
    samples = np.full(SAMPLE_RATE, 0.2, np.float32)
    samples[SAMPLE_RATE // 2 : SAMPLE_RATE // 2 + 50] = 3.0
    limited = limit(Audio(samples, SAMPLE_RATE), ceiling_db=-1).samples
    assert np.abs(limited).max() <= 10 ** (-1 / 20) + 1e-6
    assert limited[: SAMPLE_RATE // 4] == pytest.approx(0.2, rel=1e-6)


def test_a_clip_is_composed_a_frame_at_a_time_while_it_is_encoded() -> None:
    ramp = np.linspace(60, 200, 64, dtype=np.uint8)[None, :, None].repeat(64, 0).repeat(3, 2)
    source = Frames(np.repeat(ramp[None], 24, axis=0), FPS)
    edges = SceneEdges(fade_in=True, fade_out=True)
    clip = compose_clip(source, captions=[Segment("Hello", 0.0, 0.5)], edges=edges)
    segment = encode_segment(clip)
    assert "pixels" not in vars(clip)  # never held whole
    with av.open(io.BytesIO(segment)) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert decoded.shape == (24, 64, 64, 3)
    assert np.abs(decoded.astype(int) - clip.pixels).mean() < 3
    assert clip.pixels[0].max() == 0 and clip.pixels[12].mean() > 100
