"""Hosted video: Runway's API (Gen-4 image-to-video, text-to-video) and Luma's Dream Machine
API, over httpx with the hosted engines' retry policy (`models.neural.provider_http`).

A shot is one generation: create it, poll it until it succeeds, fails or outlasts
`generation_timeout_s` (then it is cancelled at the provider), download the clip (resuming a cut
download with an HTTP Range request, never creating the generation again, up to
`max_clip_bytes`), decode it with PyAV and fit it to the scene: its first `duration_s` seconds,
cover-fitted to the scene's size, at the scene's rate. What the provider charged for the clip
comes back with the frames (`HostedFrames.cost`), from the operator's price list.
"""

from __future__ import annotations

import base64
import contextlib
import io
import math
import re
import time
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import av
import httpx
import numpy as np

from models.base import HostedFrames, ProviderCost, VideoRequest
from models.errors import (
    GenerationFailed,
    ProviderError,
    ProviderRejected,
    ProviderTimedOut,
    ProviderUnavailable,
    UnsupportedRequest,
)
from models.neural.frames import cover, requested_frames
from models.neural.prompts import describe
from models.neural.provider_http import ProviderHttp

_MAX_SIDE = 4096  # a clip's frames are refused above this before any is decoded
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class HostedVideoEngine(ProviderHttp):
    """The generation's life cycle; subclasses speak their provider's protocol (`create`,
    `poll`, `cancel`) and price its clips (`cost`)."""

    version: ClassVar[str] = "1"
    licence: ClassVar[str]

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        durations: Sequence[int],
        poll_s: float,
        generation_timeout_s: float,
        max_clip_bytes: int,
        timeout_s: float,
        max_retries: int,
        backoff_s: float,
        max_wait_s: float,
    ) -> None:
        super().__init__(
            base_url,
            headers,
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_wait_s=max_wait_s,
        )
        # Clips are fetched from the provider's storage (a CDN), without the API's credentials.
        self._downloads = httpx.Client(timeout=timeout_s, follow_redirects=True)
        self.durations = sorted(durations)
        self.poll_s = poll_s
        self.generation_timeout_s = generation_timeout_s
        self.max_clip_bytes = max_clip_bytes

    def close(self) -> None:
        super().close()
        self._downloads.close()

    @abstractmethod
    def create(self, request: VideoRequest, seconds: int) -> str:
        """Starts the generation; its id."""

    @abstractmethod
    def poll(self, generation: str) -> str | None:
        """The clip's URL once the generation succeeded, None while it runs; raises
        GenerationFailed with the provider's reason when it failed."""

    @abstractmethod
    def cancel(self, generation: str) -> None:
        """Stops (or deletes) the generation at the provider."""

    @abstractmethod
    def cost(self, request: VideoRequest, seconds: int) -> ProviderCost:
        """What the provider charges for a clip of `seconds`."""

    def clip_seconds(self, duration_s: float) -> int:
        """The shortest clip length the provider makes that covers the scene, else its
        longest (the scene's frames then stretch over the clip)."""
        return next((d for d in self.durations if d >= duration_s), self.durations[-1])

    def generate(self, request: VideoRequest) -> HostedFrames:
        seconds = self.clip_seconds(request.duration_s)
        generation = self.create(request, seconds)
        url = self._wait(generation)
        pixels = decode_clip(self.name, self._download(url), request)
        return HostedFrames(pixels, request.fps, cost=self.cost(request, seconds))

    def _wait(self, generation: str) -> str:
        deadline = time.monotonic() + self.generation_timeout_s
        while (url := self.poll(generation)) is None:
            if time.monotonic() >= deadline:
                # The timeout is the failure to report; the provider may end it by itself.
                with contextlib.suppress(ProviderError):
                    self.cancel(generation)
                raise ProviderTimedOut(
                    self.name,
                    None,
                    f"generation {generation} did not finish in {self.generation_timeout_s:.0f} s",
                )
            time.sleep(self.poll_s)
        return url

    def _download(self, url: str) -> bytes:
        """The clip's bytes; a cut transfer resumes where it stopped (or starts over where the
        server ignores Range), up to `max_retries` times."""
        data = bytearray()
        failure: ProviderError = ProviderUnavailable(self.name, None, "the clip did not download")
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._pause(attempt - 1)
            headers = {"Range": f"bytes={len(data)}-"} if data else {}
            try:
                with self._downloads.stream("GET", url, headers=headers) as response:
                    total = self._expected_size(response, data)
                    for chunk in response.iter_bytes():
                        data += chunk
                        self._check_size(len(data))
                if total is None or len(data) == total:
                    return bytes(data)
                failure = ProviderUnavailable(self.name, None, "the clip arrived cut short")
            except httpx.TransportError as error:
                failure = ProviderUnavailable(self.name, None, f"download: {type(error).__name__}")
            except _RetryDownload as retry:
                failure = retry.failure
        raise failure

    def _expected_size(self, response: httpx.Response, data: bytearray) -> int | None:
        """The clip's full size from the response's headers (None when unsaid); `data` is
        emptied when the server answers the whole clip to a Range request."""
        status = response.status_code
        if status == 206 and data:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
            if match is None or int(match.group(1)) != len(data):
                data.clear()  # not the part asked for: start over
                raise _RetryDownload(ProviderUnavailable(self.name, 206, "unexpected range"))
            total = None if match.group(3) == "*" else int(match.group(3))
        elif status == 200:
            data.clear()
            length = response.headers.get("content-length")
            total = int(length) if length is not None else None
        elif status in (408, 429) or status >= 500:
            raise _RetryDownload(ProviderUnavailable(self.name, status, "clip download failed"))
        else:
            raise ProviderRejected(self.name, status, "the clip's URL was refused")
        if total is not None:
            self._check_size(total)
        return total

    def _check_size(self, size: int) -> None:
        if size > self.max_clip_bytes:
            raise ProviderRejected(
                self.name, None, f"the clip is larger than {self.max_clip_bytes} bytes"
            )


class _RetryDownload(Exception):
    def __init__(self, failure: ProviderError) -> None:
        self.failure = failure


def decode_clip(provider: str, data: bytes, request: VideoRequest) -> np.ndarray:
    """The clip's first `request.duration_s` seconds as the scene's frames (T, H, W, 3):
    each decoded frame cover-fitted to the scene's size, then picked to the scene's rate."""
    try:
        with av.open(io.BytesIO(data), "r") as container:
            if not container.streams.video:
                raise ProviderRejected(provider, None, "the provider's clip has no video")
            stream = container.streams.video[0]
            if max(stream.width, stream.height) > _MAX_SIDE:
                raise ProviderRejected(provider, None, "the provider's clip is too large")
            rate = float(stream.average_rate or request.fps)
            wanted = requested_frames(request.duration_s, rate)
            frames: list[np.ndarray] = []
            for frame in container.decode(stream):
                rgb = frame.to_ndarray(format="rgb24")
                frames.append(cover(rgb, request.width, request.height))
                if len(frames) == wanted:
                    break
    except av.FFmpegError as error:
        reason = f"the provider's clip does not decode: {error}"
        raise ProviderRejected(provider, None, reason) from None
    if not frames:
        raise ProviderRejected(provider, None, "the provider's clip has no frames")
    count = requested_frames(request.duration_s, request.fps)
    index = np.round(np.linspace(0, len(frames) - 1, count)).astype(int)
    return np.stack([frames[i] for i in index])


def _png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _nearest(ratios: Sequence[str], width: int, height: int) -> str:
    """The provider's aspect ratio ("W:H") nearest the scene's."""
    wanted = width / height

    def distance(ratio: str) -> float:
        w, h = (float(x) for x in ratio.split(":"))
        return abs(math.log(w / h) - math.log(wanted))

    return min(ratios, key=distance)


# Runway's published ratios for Gen-4 Turbo and Gen-4.5.
_RUNWAY_RATIOS = ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672")
# Runway's price list (credits per second of output; a credit is USD 0.01).
_RUNWAY_CREDITS_PER_S = {"gen4_turbo": 5.0, "gen4.5": 12.0, "gen3a_turbo": 5.0}
_RUNWAY_RUNNING = {"PENDING", "RUNNING", "THROTTLED"}


class RunwayVideoEngine(HostedVideoEngine):
    """POST {base}/v1/image_to_video (a scene that starts from a picture, sent as a data URI)
    or /v1/text_to_video, then GET /v1/tasks/{id} until SUCCEEDED (its `output` URLs) or FAILED
    (`failure`, `failureCode`); THROTTLED tasks wait in Runway's queue. Every request carries the
    `X-Runway-Version` the client was written for."""

    name: ClassVar[str] = "runway"
    # Runway's Terms of Use: the customer owns its outputs and may use them commercially.
    licence: ClassVar[str] = "runway-terms"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://api.dev.runwayml.com",
        api_version: str = "2024-11-06",
        image_model: str = "gen4_turbo",
        text_model: str = "gen4.5",
        ratios: Sequence[str] = _RUNWAY_RATIOS,
        durations: Sequence[int] = (5, 10),
        credits_per_second: Mapping[str, float] | None = None,
        poll_s: float = 5.0,
        generation_timeout_s: float = 900.0,
        max_clip_bytes: int = 200_000_000,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_wait_s: float = 30.0,
    ) -> None:
        super().__init__(
            base_url,
            {"Authorization": f"Bearer {api_key}", "X-Runway-Version": api_version},
            durations=durations,
            poll_s=poll_s,
            generation_timeout_s=generation_timeout_s,
            max_clip_bytes=max_clip_bytes,
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_wait_s=max_wait_s,
        )
        self.image_model = image_model
        self.text_model = text_model
        self.ratios = tuple(ratios)
        self.credits_per_second = {**_RUNWAY_CREDITS_PER_S, **(credits_per_second or {})}

    def _model(self, request: VideoRequest) -> str:
        return self.image_model if request.keyframe_png is not None else self.text_model

    def create(self, request: VideoRequest, seconds: int) -> str:
        body: dict[str, Any] = {
            "model": self._model(request),
            "promptText": describe(request)[:1000],
            "ratio": _nearest(self.ratios, request.width, request.height),
            "duration": seconds,
            "seed": request.seed % 2**32,
        }
        if request.keyframe_png is not None:
            body["promptImage"] = _png_data_uri(request.keyframe_png)
            path = "/v1/image_to_video"
        else:
            path = "/v1/text_to_video"
        return str(self._request("POST", path, json=body).json()["id"])

    def poll(self, generation: str) -> str | None:
        task = self._request("GET", f"/v1/tasks/{generation}").json()
        status = task.get("status")
        if status == "SUCCEEDED":
            return str(task["output"][0])
        if status in _RUNWAY_RUNNING:
            return None
        reason = task.get("failure") or f"task ended {status}"
        code = task.get("failureCode")
        raise GenerationFailed(self.name, None, f"{code}: {reason}" if code else str(reason))

    def cancel(self, generation: str) -> None:
        self._request("DELETE", f"/v1/tasks/{generation}")

    def cost(self, request: VideoRequest, seconds: int) -> ProviderCost:
        model = self._model(request)
        amount = seconds * self.credits_per_second.get(model, 0.0)
        return ProviderCost("runway", model, seconds, amount, "runway-credits")


# Luma's published aspect ratios.
_LUMA_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "9:21")
# Luma's price list for its API (US dollars per second of 540p output), per model.
_LUMA_USD_PER_S = {"ray-2": 0.1, "ray-flash-2": 0.033}


class LumaVideoEngine(HostedVideoEngine):
    """POST {base}/dream-machine/v1/generations with the prompt, model, aspect ratio, resolution
    and duration, then GET /dream-machine/v1/generations/{id} until its `state` is completed
    (`assets.video`) or failed (`failure_reason`). Luma takes keyframes only as URLs it can
    fetch, which a scene's private picture is not: this engine makes text-to-video shots."""

    name: ClassVar[str] = "luma"
    # Luma AI's API terms: the customer owns its outputs, commercial use allowed on paid plans.
    licence: ClassVar[str] = "luma-terms"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://api.lumalabs.ai",
        model: str = "ray-2",
        resolution: str = "540p",
        ratios: Sequence[str] = _LUMA_RATIOS,
        durations: Sequence[int] = (5, 9),
        usd_per_second: Mapping[str, float] | None = None,
        poll_s: float = 5.0,
        generation_timeout_s: float = 900.0,
        max_clip_bytes: int = 200_000_000,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_wait_s: float = 30.0,
    ) -> None:
        super().__init__(
            base_url,
            {"Authorization": f"Bearer {api_key}"},
            durations=durations,
            poll_s=poll_s,
            generation_timeout_s=generation_timeout_s,
            max_clip_bytes=max_clip_bytes,
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_wait_s=max_wait_s,
        )
        self.model = model
        self.resolution = resolution
        self.ratios = tuple(ratios)
        self.usd_per_second = {**_LUMA_USD_PER_S, **(usd_per_second or {})}

    def create(self, request: VideoRequest, seconds: int) -> str:
        if request.keyframe_png is not None:
            raise UnsupportedRequest("luma makes text-to-video shots: it takes no scene image")
        body = {
            "prompt": describe(request)[:5000],
            "model": self.model,
            "aspect_ratio": _nearest(self.ratios, request.width, request.height),
            "resolution": self.resolution,
            "duration": f"{seconds}s",
            "loop": False,
        }
        return str(self._request("POST", "/dream-machine/v1/generations", json=body).json()["id"])

    def poll(self, generation: str) -> str | None:
        found = self._request("GET", f"/dream-machine/v1/generations/{generation}").json()
        state = found.get("state")
        if state == "completed":
            video = (found.get("assets") or {}).get("video")
            if not video:
                raise GenerationFailed(self.name, None, "completed without a video")
            return str(video)
        if state in ("queued", "dreaming"):
            return None
        raise GenerationFailed(self.name, None, str(found.get("failure_reason") or state))

    def cancel(self, generation: str) -> None:
        self._request("DELETE", f"/dream-machine/v1/generations/{generation}")

    def cost(self, request: VideoRequest, seconds: int) -> ProviderCost:
        amount = round(seconds * self.usd_per_second.get(self.model, 0.0), 4)
        return ProviderCost("luma", self.model, seconds, amount, "usd")
