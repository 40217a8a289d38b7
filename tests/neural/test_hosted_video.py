"""The Runway and Luma video clients against a local server that speaks their APIs: shots are
created, polled, downloaded and fitted to the scene; failures, timeouts and rate limits are
provider errors; a cut download resumes without a second generation."""

from __future__ import annotations

import base64
import io
import pickle

import numpy as np
import pytest
from PIL import Image

from models.base import HostedFrames, VideoRequest
from models.errors import (
    GenerationFailed,
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
    ProviderTimedOut,
    ProviderUnavailable,
)
from models.neural.hosted_video import HostedVideoEngine, LumaVideoEngine, RunwayVideoEngine
from tests.fakes.hosted_video import (
    CLIP_FPS,
    LUMA_KEY,
    RUNWAY_KEY,
    RUNWAY_VERSION,
    FakeHostedVideo,
    clip_colour,
)

FAST = {"poll_s": 0.01, "backoff_s": 0.01, "max_retries": 2}


def runway(fake: FakeHostedVideo, key: str = RUNWAY_KEY, **options: object) -> RunwayVideoEngine:
    return RunwayVideoEngine(key, base_url=fake.url, **{**FAST, **options})  # type: ignore[arg-type]


def luma(fake: FakeHostedVideo, **options: object) -> LumaVideoEngine:
    return LumaVideoEngine(LUMA_KEY, base_url=fake.url, **{**FAST, **options})  # type: ignore[arg-type]


def shot(keyframe: bool = False, duration_s: float = 1.5) -> VideoRequest:
    png = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(png, format="PNG")
    return VideoRequest(
        prompt="a lighthouse at dusk",
        width=96,
        height=64,
        fps=12,
        duration_s=duration_s,
        keyframe_png=png.getvalue() if keyframe else None,
        seed=2**40 + 7,
    )


def assert_fitted(frames: HostedFrames, request: VideoRequest) -> None:
    """The scene's frame count and size, taken from the clip's first `duration_s` seconds."""
    count = round(request.duration_s * request.fps)
    assert frames.pixels.shape == (count, request.height, request.width, 3)
    assert frames.fps == request.fps
    red = frames.pixels[:, 32, 48, 0].astype(int)
    assert np.all(np.diff(red) >= 0) and red[-1] > red[0]  # time runs forward
    last_source = round(request.duration_s * CLIP_FPS) - 1
    assert abs(red[-1] - clip_colour(last_source)[0]) <= 6  # not the clip's later seconds


def test_runway_animates_a_scene_image_and_prices_the_clip(fake_video: FakeHostedVideo) -> None:
    request = shot(keyframe=True)
    frames = runway(fake_video).generate(request)
    assert_fitted(frames, request)
    create = fake_video.requests[0]
    assert (create.method, create.path) == ("POST", "/v1/image_to_video")
    assert create.headers["authorization"] == f"Bearer {RUNWAY_KEY}"
    assert create.headers["x-runway-version"] == RUNWAY_VERSION
    image = create.body["promptImage"].removeprefix("data:image/png;base64,")
    assert base64.b64decode(image) == request.keyframe_png
    assert create.body["model"] == "gen4_turbo" and create.body["ratio"] == "1104:832"
    assert create.body["duration"] == 5 and create.body["seed"] == 7
    polls = [r for r in fake_video.requests if r.path.startswith("/v1/tasks/")]
    assert len(polls) == 3  # PENDING, RUNNING, SUCCEEDED
    assert "authorization" not in fake_video.requests[-1].headers  # the clip's own URL
    assert (frames.cost.provider, frames.cost.model, frames.cost.seconds) == (
        "runway", "gen4_turbo", 5,
    )  # fmt: skip
    assert (frames.cost.amount, frames.cost.unit) == (25.0, "runway-credits")


def test_runway_makes_a_text_only_scene_with_its_text_model(fake_video: FakeHostedVideo) -> None:
    request = shot(duration_s=6)
    frames = runway(fake_video).generate(request)
    assert_fitted(frames, request)
    create = fake_video.requests[0]
    assert create.path == "/v1/text_to_video" and "promptImage" not in create.body
    assert create.body["model"] == "gen4.5" and create.body["duration"] == 10
    assert "lighthouse at dusk" in create.body["promptText"]
    assert frames.cost.amount == 120.0


def test_luma_dreams_a_scene_and_prices_the_clip(fake_video: FakeHostedVideo) -> None:
    request = shot()
    frames = luma(fake_video).generate(request)
    assert_fitted(frames, request)
    create = fake_video.requests[0]
    assert create.path == "/dream-machine/v1/generations"
    assert create.headers["authorization"] == f"Bearer {LUMA_KEY}"
    assert create.body["model"] == "ray-2" and create.body["aspect_ratio"] == "4:3"
    assert create.body["duration"] == "5s" and create.body["resolution"] == "540p"
    assert (frames.cost.amount, frames.cost.unit) == (0.5, "usd")


@pytest.mark.parametrize("engine", [runway, luma])
def test_a_failed_generation_is_an_error_with_the_providers_reason(
    fake_video: FakeHostedVideo, engine: object
) -> None:
    fake_video.outcome = "fail"
    with pytest.raises(GenerationFailed, match="moderation"):
        engine(fake_video).generate(shot())  # type: ignore[operator]


@pytest.mark.parametrize("engine", [runway, luma])
def test_a_generation_that_outlasts_the_wait_is_cancelled_and_times_out(
    fake_video: FakeHostedVideo, engine: object
) -> None:
    fake_video.outcome = "hang"
    with pytest.raises(ProviderTimedOut, match="did not finish in 0 s"):
        engine(fake_video, generation_timeout_s=0.2).generate(shot())  # type: ignore[operator]
    (generation,) = fake_video.generations.values()
    assert generation.cancelled and generation.polls >= 2
    assert fake_video.requests[-1].method == "DELETE"


@pytest.mark.parametrize("engine", [runway, luma])
def test_a_rate_limit_that_lasts_is_an_error_after_the_retries(
    fake_video: FakeHostedVideo, engine: object
) -> None:
    fake_video.rate_limited = True
    with pytest.raises(ProviderUnavailable) as raised:
        engine(fake_video).generate(shot())  # type: ignore[operator]
    assert raised.value.provider_status == 429
    assert len(fake_video.requests) == 3 and not fake_video.generations  # 1 + 2 retries


@pytest.mark.parametrize("engine", [runway, luma])
def test_a_cut_download_resumes_where_it_stopped_without_a_second_generation(
    fake_video: FakeHostedVideo, engine: object
) -> None:
    fake_video.cut_downloads = 2
    request = shot()
    frames = engine(fake_video).generate(request)  # type: ignore[operator]
    assert_fitted(frames, request)
    (generation,) = fake_video.generations.values()
    size = len(fake_video.clip(generation))
    downloads = [r for r in fake_video.requests if r.path.startswith("/files/")]
    assert [r.headers.get("range") for r in downloads] == [
        None, f"bytes={size // 2}-", f"bytes={size // 2 + (size - size // 2) // 2}-",
    ]  # fmt: skip
    assert sum(r.method == "POST" for r in fake_video.requests) == 1


def test_a_download_cut_more_often_than_retried_fails(fake_video: FakeHostedVideo) -> None:
    fake_video.cut_downloads = 5
    with pytest.raises(ProviderUnavailable, match="download"):
        runway(fake_video).generate(shot())
    assert fake_video.created("runway") == 1


def test_a_clip_larger_than_the_bound_is_refused_before_it_downloads(
    fake_video: FakeHostedVideo,
) -> None:
    with pytest.raises(ProviderRejected, match="larger than 1000 bytes"):
        runway(fake_video, max_clip_bytes=1000).generate(shot())


def test_a_wrong_key_fails_at_once(fake_video: FakeHostedVideo) -> None:
    with pytest.raises(ProviderAuthError, match="Invalid API key"):
        runway(fake_video, key="wrong").generate(shot())
    assert len(fake_video.requests) == 1


def test_clip_lengths_cover_the_scene_or_are_the_longest() -> None:
    engine = RunwayVideoEngine("k")
    assert [engine.clip_seconds(s) for s in (0.5, 5, 5.1, 12)] == [5, 5, 10, 10]
    assert isinstance(engine, HostedVideoEngine)


@pytest.mark.parametrize(
    "error",
    [
        GenerationFailed("runway", None, "SAFETY.INPUT.IMAGE: refused"),
        ProviderTimedOut("luma", None, "generation g did not finish in 3 s"),
        ProviderUnavailable("runway", 429, "Rate limit exceeded"),
        ProviderAuthError("luma", 401, "Invalid API key"),
    ],
)
def test_provider_errors_cross_processes_whole(error: ProviderError) -> None:
    """Serve and Ray pickle an engine's error to the render task that called it."""
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
    assert (again.provider, again.provider_status, again.message) == (
        error.provider, error.provider_status, error.message,
    )  # fmt: skip
