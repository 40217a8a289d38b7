"""Serve batches video requests, on the session's Ray with the tiny LTX-Video model: concurrent
requests become one engine call of the `user_config` batch size, each video is the one it would
be alone, and a request the engine cannot make fails by itself."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.engines import VideoEngineDeployment
from models.base import Frames, VideoRequest
from tests.deployments.conftest import TINY_OPTIONS

pytestmark = pytest.mark.ray

APP = "video-batching"


class RecordingVideoDeployment(VideoEngineDeployment.func_or_class):  # type: ignore[name-defined,misc]
    """The video deployment, recording the size of every batch that reaches its engine."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.sizes: list[int] = []
        batch = self.engine.generate_batch

        def recording(requests: Sequence[VideoRequest]) -> list[Frames]:
            self.sizes.append(len(requests))
            return batch(requests)  # type: ignore[no-any-return]

        self.engine.generate_batch = recording

    def batch_sizes(self) -> list[int]:
        sizes, self.sizes = self.sizes, []
        return sizes


def shot(seed: int, **changes: Any) -> VideoRequest:
    fields: dict[str, Any] = {"width": 64, "height": 36, "fps": 8, "duration_s": 1.0, **changes}
    return VideoRequest(prompt="a fox runs through snow", seed=seed, **fields)


@pytest.fixture(scope="module")
def handle(ray_session: None, tiny_models: Callable[[Iterable[str]], Path]) -> Iterator[Any]:
    """The tiny LTX-Video deployment with a `user_config` batch size above the default (2)."""
    deployment = serve.deployment(RecordingVideoDeployment).options(
        name=APP,
        max_ongoing_requests=4,
        user_config={"max_batch_size": 3, "batch_wait_timeout_s": 1.0},
        ray_actor_options={"num_cpus": 0.25},
    )
    models_dir = tiny_models(["ltx-video"])
    app = deployment.bind("video", "ltx", str(models_dir), TINY_OPTIONS["video-ltx"])
    yield serve.run(app, name=APP, route_prefix=None)
    serve.delete(APP)


def concurrently(handle: DeploymentHandle, requests: list[VideoRequest]) -> list[Any]:
    responses = [handle.generate.remote(request) for request in requests]
    results: list[Any] = []
    for response in responses:
        try:
            results.append(response.result(timeout_s=120))
        except Exception as error:
            results.append(error)
    return results


def test_concurrent_requests_reach_the_engine_as_one_batch(handle: DeploymentHandle) -> None:
    requests = [shot(1), shot(2), shot(3)]
    alone = [handle.generate.remote(request).result(timeout_s=120) for request in requests]
    assert handle.batch_sizes.remote().result() == [1, 1, 1]

    together = concurrently(handle, requests)
    assert handle.batch_sizes.remote().result() == [3], "the batch size of the user_config"
    for frames, expected in zip(together, alone, strict=True):
        difference = np.abs(frames.pixels.astype(int) - expected.pixels).max()
        assert difference <= 1, "a video is the one it is alone, to within float rounding"


def test_a_bad_request_fails_alone_and_not_its_batch_mates(handle: DeploymentHandle) -> None:
    good, bad = concurrently(handle, [shot(1), shot(2, height=0)])
    assert handle.batch_sizes.remote().result()[0] == 2
    assert isinstance(good, Frames) and good.pixels.shape == (8, 36, 64, 3)
    assert isinstance(bad, ZeroDivisionError)
