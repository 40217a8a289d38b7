"""The film: H.264 segments and the soundtrack (encoded once as AAC by `encode_soundtrack`, while
the picture renders) joined by remuxing, without re-encoding, into an MP4 with the index first
(`+faststart`) so that browsers play it while it downloads. `inspect_film` decodes a film end to
end to check what was written."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.container import InputContainer

from models.base import Audio
from pipeline.render.audio import SAMPLE_RATE, fit, resample

AUDIO_BITRATE = 128_000
_AAC_FRAME = 1024


class SegmentMismatch(ValueError):
    """Segments that cannot be joined without re-encoding (different size, rate or settings)."""


@dataclass(frozen=True)
class FilmInfo:
    video_codec: str
    video_profile: str | None
    pix_fmt: str
    width: int
    height: int
    fps: Fraction
    frame_count: int
    video_duration_s: float
    audio_codec: str | None
    audio_profile: str | None
    sample_rate: int | None
    audio_duration_s: float | None
    duration_s: float
    faststart: bool


def encode_soundtrack(audio: Audio, duration_s: float) -> bytes:
    """`audio` trimmed or padded with silence to `duration_s`, as mono AAC-LC at 48 kHz in an
    MP4 held in memory, for `assemble`. The mix is mono (narration, beds): encoded as such, not
    copied into two channels, it takes half the encoder's time and its bits."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        stream.bit_rate = AUDIO_BITRATE
        for packet in _encode_audio(stream, audio, duration_s):
            container.mux(packet)
    return buffer.getvalue()


def assemble(segments: Sequence[bytes], soundtrack: bytes, output: Path) -> Path:
    """Write the film to the file `output` (a path, not a stream: `+faststart` rewrites the file
    to move the index first): the segments in order, and the `encode_soundtrack` output."""
    if not segments:
        raise ValueError("a film needs at least one segment")
    inputs = [av.open(io.BytesIO(segment), "r") for segment in segments]
    sound_input = av.open(io.BytesIO(soundtrack), "r")
    try:
        _check_joinable(inputs)
        template = inputs[0].streams.video[0]
        sound_template = sound_input.streams.audio[0]
        with av.open(str(output), "w", format="mp4", options={"movflags": "+faststart"}) as film:
            video = film.add_stream_from_template(template)
            video_packets = _joined_packets(inputs, video)
            sound = film.add_stream_from_template(sound_template)
            audio_packets = []
            for packet in sound_input.demux(sound_template):
                if packet.dts is not None:
                    packet.stream = sound
                    audio_packets.append(packet)
            for packet in sorted(video_packets + audio_packets, key=_decode_time):
                film.mux(packet)
    finally:
        for container in [*inputs, sound_input]:
            container.close()
    return output


def _check_joinable(inputs: list[InputContainer]) -> None:
    first = inputs[0].streams.video[0]
    for index, container in enumerate(inputs[1:], start=1):
        stream = container.streams.video[0]
        same = (
            stream.codec_context.extradata == first.codec_context.extradata
            and stream.time_base == first.time_base
            and (stream.width, stream.height) == (first.width, first.height)
        )
        if not same:
            raise SegmentMismatch(
                f"segment {index} differs from segment 0 in size, frame rate or encoder settings"
            )


def _joined_packets(inputs: list[InputContainer], stream: av.VideoStream) -> list[av.Packet]:
    """Each segment's packets shifted to start where the previous segment ended.

    With B-frames, decoding runs ahead of presentation: a segment's first decode time lies a
    few frames before its first picture (fewer in a segment too short for the full delay).
    Every segment's decode times are moved back to the longest such delay, so that they keep
    increasing across the joins.
    """
    timed = [
        [
            (packet, packet.pts, packet.dts)
            for packet in container.demux(container.streams.video[0])
            if packet.pts is not None and packet.dts is not None
        ]
        for container in inputs
    ]
    if not all(timed):
        raise SegmentMismatch("a segment holds no video frames")
    starts = [min(pts for _, pts, _ in segment) for segment in timed]
    delays = [start - segment[0][2] for start, segment in zip(starts, timed, strict=True)]
    packets = []
    offset = 0
    for segment, start, delay in zip(timed, starts, delays, strict=True):
        end = offset
        for packet, pts, dts in segment:
            packet.pts = pts - start + offset
            packet.dts = dts - start + offset - (max(delays) - delay)
            end = max(end, packet.pts + (packet.duration or 0))
            packet.stream = stream
            packets.append(packet)
        offset = end
    return packets


def _encode_audio(stream: av.AudioStream, audio: Audio, duration_s: float) -> Iterator[av.Packet]:
    mono = fit(resample(audio, SAMPLE_RATE).samples, round(duration_s * SAMPLE_RATE))
    planes = np.ascontiguousarray(mono[np.newaxis, :], dtype=np.float32)
    for start in range(0, planes.shape[1], _AAC_FRAME):
        frame = av.AudioFrame.from_ndarray(
            planes[:, start : start + _AAC_FRAME], format="fltp", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = start
        yield from stream.encode(frame)
    yield from stream.encode(None)


def _decode_time(packet: av.Packet) -> Fraction:
    if packet.dts is None or packet.time_base is None:
        raise ValueError("a packet to mux has no decode time")
    return packet.dts * packet.time_base


def _time_base(stream: av.stream.Stream) -> Fraction:
    if stream.time_base is None:
        raise ValueError(f"stream {stream.index} has no time base")
    return stream.time_base


def _seconds(stream: av.stream.Stream) -> float:
    return float((stream.duration or 0) * _time_base(stream))


def inspect_film(path: Path) -> FilmInfo:
    """Decode every frame of the film (so that a broken stream fails here) and report what the
    film holds; durations are the container's."""
    with av.open(str(path), "r") as container:
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        audio = container.streams.audio[0] if container.streams.audio else None
        frame_count = sum(
            isinstance(frame, av.VideoFrame) for frame in container.decode(*container.streams)
        )
        return FilmInfo(
            video_codec=video.codec_context.name,
            video_profile=video.codec_context.profile,
            pix_fmt=video.codec_context.pix_fmt or "",
            width=video.width,
            height=video.height,
            fps=Fraction(video.average_rate or video.guessed_rate or 0),
            frame_count=frame_count,
            video_duration_s=_seconds(video),
            audio_codec=audio.codec_context.name if audio else None,
            audio_profile=audio.codec_context.profile if audio else None,
            sample_rate=audio.sample_rate if audio else None,
            audio_duration_s=_seconds(audio) if audio else None,
            duration_s=(container.duration or 0) / av.time_base,
            faststart=_moov_before_mdat(path),
        )


def verify_film(path: Path, *, frame_count: int, fps: int) -> FilmInfo:
    """Check that the film decodes end to end to the planned frames and length (within one
    frame); raise ValueError naming what differs."""
    info = inspect_film(path)
    planned_s = frame_count / fps
    problems = []
    if info.frame_count != frame_count:
        problems.append(f"{info.frame_count} frames decoded, {frame_count} planned")
    if abs(info.duration_s - planned_s) > 1 / fps:
        problems.append(f"lasts {info.duration_s:.3f} s, {planned_s:.3f} s planned")
    if not info.faststart:
        problems.append("the index (moov) is not before the media data")
    if problems:
        raise ValueError(f"{path.name}: " + "; ".join(problems))
    return info


def frames_at(path: Path, times_s: Sequence[float]) -> list[np.ndarray]:
    """RGB frames (uint8 H, W, 3) of the film on screen at the given times, decoded in one pass;
    times past the end give the last frame."""
    pending = sorted((time, index) for index, time in enumerate(times_s))
    found: dict[int, np.ndarray] = {}
    with av.open(str(path), "r") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        shown: av.VideoFrame | None = None
        for frame in container.decode(stream):
            if shown is not None:
                _take(found, pending, shown, until_s=frame.time)
            if not pending:
                break
            shown = frame
        if shown is not None:
            _take(found, pending, shown, until_s=float("inf"))
    return [found[index] for index in range(len(times_s))]


def _take(
    found: dict[int, np.ndarray],
    pending: list[tuple[float, int]],
    frame: av.VideoFrame,
    *,
    until_s: float,
) -> None:
    """Give `frame` to the pending (time, index) requests, sorted by time, before `until_s`."""
    picture = None
    while pending and pending[0][0] < until_s:
        picture = frame.to_ndarray(format="rgb24") if picture is None else picture
        found[pending.pop(0)[1]] = picture


def _moov_before_mdat(path: Path) -> bool:
    """Whether the MP4's top-level `moov` box comes before `mdat` (what `+faststart` does)."""
    with path.open("rb") as file:
        while header := file.read(8):
            size, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if kind in (b"moov", b"mdat"):
                return kind == b"moov"
            if size == 1:
                size = int.from_bytes(file.read(8), "big") - 8
            elif size == 0:
                break
            file.seek(size - 8, io.SEEK_CUR)
    return False
