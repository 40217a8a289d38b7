"""The text prompts neural models are given: a video model's for a shot (local and hosted
models alike), an image model's for a film's key art (its thumbnail)."""

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


def key_art(title: str, about: str | None) -> str:
    """The key art prompt of a film: what it is about (its logline), else its title, as a poster
    picture; the title is composed over its lower part afterwards, so the picture asks for room
    there (the image engines' negative prompt keeps lettering out)."""
    subject = (about or title).strip().rstrip(".")
    return (
        f"{subject}. Key art for the film {title.strip()}: one striking subject, cinematic "
        "light, a calm lower third"
    )
