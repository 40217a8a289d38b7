"""Media that tests make: small H.264 MP4s from frames."""

from __future__ import annotations

import io

import av
import numpy as np


def encode_mp4(frames: np.ndarray, fps: int = 25) -> bytes:
    """(T, H, W, 3) uint8 frames (even sides) as an H.264 MP4."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode(None))
    return buffer.getvalue()
