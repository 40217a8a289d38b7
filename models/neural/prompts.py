"""The text prompt a video model is given for a shot (local and hosted models alike)."""

from __future__ import annotations

from models.base import CameraMove, VideoRequest

_CAMERA_PHRASES = {
    CameraMove.static: "static camera",
    CameraMove.zoom_in: "slow zoom in",
    CameraMove.zoom_out: "slow zoom out",
    CameraMove.pan_left: "the camera pans left",
    CameraMove.pan_right: "the camera pans right",
    CameraMove.dolly_in: "the camera dollies forward",
}


def describe(request: VideoRequest) -> str:
    """The text prompt: the scene's prompt with its mood and camera move."""
    prompt = request.prompt.strip().rstrip(".")
    return f"{prompt}. {request.mood.value} mood, {_CAMERA_PHRASES[request.camera]}."
