"""No video engine in the registry drops a scene's image: each one that takes an image starts the
shot from it, and each one that does not refuses the request (the engine choice never sends it
one, see tests/deployments/test_engine_choice.py).

Random tiny models make pictures unrelated to their conditioning, so the image is checked where
it enters the model: the `image` a diffusers pipeline is called with (captured at the call),
downscaled to 16x12 and compared with the uploaded image fitted the same way. A fitted copy
differs from the upload by resampling only (a few levels of 255); a pipeline called with another
image, or with none, fails. The CPU animatic has no pipeline: its first frame is compared with
the window of the picture that a static shot starts on. A hosted engine is checked where the
image leaves for its provider: the request its fake received.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from diffusers import DiffusionPipeline
from PIL import Image

from cluster.settings import Settings
from models.animatic import MARGIN
from models.base import Audio, VideoRequest
from models.errors import UnsupportedRequest
from models.mouth import MouthLipSyncEngine
from models.neural.frames import cover
from models.neural.hosted_video import LumaVideoEngine, RunwayVideoEngine
from models.registry import ENGINES, Capability, EngineInfo, build_engine, engine_info
from pipeline.render.dag import EngineChoice, RenderInputs, plan_scenes, video_request
from pipeline.render.spec import FilmSpec
from pipeline.render.thumbnails import fill_frame
from tests.fakes.hosted_video import LUMA_KEY, RUNWAY_KEY, FakeHostedVideo
from tests.neural.test_video import shot

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

VIDEO = [info for info in ENGINES if info.capability is Capability.video]
TINY_OPTIONS: dict[str, dict[str, Any]] = {
    "ltx": {"steps": 2, "base_size": (64, 32), "max_frames": 9},
    "ltx-2": {"steps": 2, "base_size": (64, 32), "max_frames": 9, "stg_blocks": None},
    "wan": {"steps": 2, "base_size": (64, 32), "max_frames": 9},
    "cogvideox": {"steps": 2},
    "cogvideox-2b": {"steps": 2},
    "svd": {"steps": 2, "base_size": (64, 32)},
}
SIZE = (16, 12)
MOST_MEAN_DIFFERENCE = 6.0  # levels of 255: resampling noise; another image is 40+ away


def picture() -> tuple[bytes, np.ndarray]:
    """A picture no other one is mistaken for: a diagonal gradient with a dark disc, off-centre."""
    y, x = np.mgrid[0:90, 0:160]
    pixels = np.stack([x * 255 // 159, y * 255 // 89, (x + y) * 255 // 248], axis=-1)
    pixels = pixels.astype(np.uint8)
    cv2.circle(pixels, (110, 35), 22, (20, 20, 20), -1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue(), pixels


def animatic_window(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """What a static animatic shot's first frame shows: the middle of the picture laid out
    `MARGIN` times larger than the frame."""
    laid = cover(pixels, round(width * MARGIN), round(height * MARGIN))
    x, y = (laid.shape[1] - width) // 2, (laid.shape[0] - height) // 2
    return laid[y : y + height, x : x + width]


def small(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, SIZE, interpolation=cv2.INTER_AREA).astype(float)


def as_array(image: Any) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    return np.asarray(image)


class PipelineSpy:
    """Records the keyword arguments of every call to the engine's diffusers pipelines."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.calls: list[dict[str, Any]] = []

    def watch(self, engine: Any) -> None:
        for value in vars(engine).values():
            if isinstance(value, DiffusionPipeline):
                self.monkeypatch.setattr(type(value), "__call__", self._recorded(type(value)))

    def _recorded(self, cls: type) -> Callable[..., Any]:
        original = cls.__call__

        def recorded(pipe: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls.append(kwargs)
            return original(pipe, *args, **kwargs)

        return recorded


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> PipelineSpy:
    return PipelineSpy(monkeypatch)


def built(info: EngineInfo, tiny: Callable[[str], Path], fake: FakeHostedVideo) -> Any:
    if info.name == "runway":
        return RunwayVideoEngine(RUNWAY_KEY, base_url=fake.url, poll_s=0.01)
    if info.name == "luma":
        return LumaVideoEngine(LUMA_KEY, base_url=fake.url, poll_s=0.01)
    if info.model_folder is None:
        return build_engine(info, Path("."), {})
    for folder in (info.model_folder, info.image_folder):
        if folder is not None:
            tiny(folder)
    return build_engine(info, tiny(info.model_folder).parent, TINY_OPTIONS[info.name])


@pytest.mark.parametrize("info", VIDEO, ids=lambda info: info.name)
def test_every_video_engine_starts_from_the_scene_image_or_refuses_it(
    info: EngineInfo, tiny: Callable[[str], Path], spy: PipelineSpy, fake_video: FakeHostedVideo
) -> None:
    data, pixels = picture()
    request: VideoRequest = shot(keyframe_png=data)
    engine = built(info, tiny, fake_video)
    spy.watch(engine)
    if not info.takes_image:
        with pytest.raises(UnsupportedRequest):
            engine.generate(request)
        assert not fake_video.requests, "nothing was sent to a provider"
        return
    frames = engine.generate(request)
    if fake_video.requests:
        sent = fake_video.requests[0].body["promptImage"].removeprefix("data:image/png;base64,")
        assert base64.b64decode(sent) == data, f"{info.name} sent another image, or none"
        return
    if spy.calls:
        (call,) = spy.calls
        assert "image" in call, f"{info.name} called its pipeline without the scene's image"
        given = as_array(call["image"])
        expected = small(cover(pixels, given.shape[1], given.shape[0]))
    else:
        given = frames.frame(0)
        expected = small(animatic_window(pixels, given.shape[1], given.shape[0]))
    assert np.abs(small(given) - expected).mean() < MOST_MEAN_DIFFERENCE, info.name


def test_the_comparison_tells_another_image_apart() -> None:
    """The threshold is far below the difference between the picture and a plain one."""
    _, pixels = picture()
    plain = np.full_like(pixels, 128)
    assert np.abs(small(pixels) - small(plain)).mean() > 5 * MOST_MEAN_DIFFERENCE


def test_a_talking_characters_clip_is_made_from_its_image_and_lip_synced(
    tiny: Callable[[str], Path], spy: PipelineSpy, fake_video: FakeHostedVideo
) -> None:
    """The DAG's request for a character scene carries the character (fitted whole into the
    frame); Wan's image-to-video pipeline is called with it; lip-sync takes the clip Wan made."""
    spec = FilmSpec.model_validate(
        {
            "title": "t", "aspect_ratio": "1:1", "resolution": 144, "fps": 12,
            "scenes": [{"prompt": "an astronaut speaks", "duration_s": 1, "narration": "Hi.",
                        "character": "assets/astronaut.png"}],
        }
    )  # fmt: skip
    inputs = RenderInputs(
        settings=Settings(_env_file=None), spec=spec,
        engines=EngineChoice(video="wan", lipsync="mouth"), spec_dir=str(EXAMPLES),
    )  # fmt: skip
    (plan,) = plan_scenes(inputs, [None])
    request = video_request(inputs, plan)
    engine = built(engine_info(Capability.video, "wan"), tiny, fake_video)
    spy.watch(engine)
    frames = engine.generate(request)

    (call,) = spy.calls
    given = as_array(call["image"])
    character = np.asarray(Image.open(EXAMPLES / "assets" / "astronaut.png").convert("RGB"))
    fitted = np.asarray(fill_frame(character, spec.frame_size))
    expected = small(cover(fitted, given.shape[1], given.shape[0]))
    assert np.abs(small(given) - expected).mean() < MOST_MEAN_DIFFERENCE
    audio = Audio(np.sin(np.linspace(0, 400, 24_000)).astype(np.float32), 24_000)
    synced = MouthLipSyncEngine().sync(frames, audio)
    assert len(synced.frames) == len(frames) and synced.frames.fps == frames.fps
