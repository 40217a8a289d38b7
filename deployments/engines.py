"""One Serve deployment class per capability; each engine runs as its own Serve application
named after it (`video-animatic`, `voice-espeak`, `lipsync-wav2lip`, ...), so that replicas,
autoscaling, batching and resources (`ray_actor_options`, with fractional `num_gpus` so that
engines share a GPU) are set per engine in the Serve config YAML. Only replicas hold GPUs: the
render DAG's tasks ask for none and reach engines through `call_engine`.

A replica whose model cannot load fails its health check with the reason. Serve runs that check
as the replica starts, so such a replica never takes a request; Serve retries it and reports the
reason in the deployment's status message, which `call_engine` turns into EngineUnavailable
instead of waiting for a replica forever.

Batching: the diffusers video engines take a list of requests (`generate_batch`: one pipeline
call per native shot, each request with its own seeded generator), so Serve batches concurrent
`generate` calls into one engine call. Scenes that start from an image go through the engines'
image-to-video pipelines one request per call (they take a single image). Voices are not
batched: Coqui synthesises one utterance per call and a request's seed drives torch's global
RNG, which batch-mates would share; Kokoro speaks one sentence per call too. Nor is lip-sync:
one request is a whole clip whose faces Wav2Lip and MuseTalk, and whose driving frames
FOMM, already batch (`batch_size`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, NonNegativeFloat, PositiveInt
from ray import serve
from ray.serve import Application

from cluster.settings import Settings
from models.base import (
    Audio,
    Frames,
    ImageRequest,
    LipSyncResult,
    MusicRequest,
    MusicResult,
    VideoRequest,
    VoiceRequest,
)
from models.registry import Capability, EngineInfo, build_engine, engine_info
from pipeline.errors import EngineUnavailable

T = TypeVar("T")
R = TypeVar("R")


class _EngineHost:
    """Loads one engine; a load failure becomes the reason the health check fails with."""

    def __init__(
        self, capability: str, engine: str, models_dir: str, options: dict[str, Any]
    ) -> None:
        self.info: EngineInfo = engine_info(capability, engine)
        self.problem: str | None = None
        try:
            self.engine = build_engine(self.info, Path(models_dir), options)
        except Exception as error:  # any load failure becomes an unhealthy, explained replica
            reason = " ".join(str(error).split())
            self.problem = f"{self.info.deployment}: cannot load model: {reason}"

    def check_health(self) -> None:
        if self.problem is not None:
            raise EngineUnavailable(self.problem)


class BatchConfig(BaseModel):
    """The video deployments' `user_config`: how Serve batches concurrent requests."""

    max_batch_size: PositiveInt = 2
    batch_wait_timeout_s: NonNegativeFloat = 0.05


_BATCHING = BatchConfig()


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class VideoEngineDeployment(_EngineHost):
    """Engines with `generate_batch` get concurrent requests in batches of up to the
    `user_config`'s size; the others take them one by one. Either way the engine computes in a
    thread, so that the replica keeps answering health checks during a long generation."""

    async def generate(self, request: VideoRequest) -> Frames:
        if hasattr(self.engine, "generate_batch"):
            return _raise_or_return(await self._generate_batch(request))
        return await asyncio.to_thread(self.engine.generate, request)

    @serve.batch(
        max_batch_size=_BATCHING.max_batch_size,
        batch_wait_timeout_s=_BATCHING.batch_wait_timeout_s,
    )
    async def _generate_batch(self, requests: list[VideoRequest]) -> list[Frames | Exception]:
        return await asyncio.to_thread(
            each_result, self.engine.generate_batch, self.engine.generate, requests
        )

    def reconfigure(self, config: dict[str, Any]) -> None:
        batching = BatchConfig.model_validate(config)
        queue: Any = self._generate_batch  # serve.batch's wrapper carries the setters
        queue.set_max_batch_size(batching.max_batch_size)
        queue.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class ImageEngineDeployment(_EngineHost):
    def keyframe(self, request: ImageRequest) -> Any:
        return self.engine.keyframe(request)


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class VoiceEngineDeployment(_EngineHost):
    def synthesize(self, request: VoiceRequest) -> Audio:
        return self.engine.synthesize(request)  # type: ignore[no-any-return]


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class LipSyncEngineDeployment(_EngineHost):
    def sync(self, frames: Frames, audio: Audio, driving: bytes | None = None) -> LipSyncResult:
        """`driving`: a scene's driving video, for the engines that take one (`takes_motion`)."""
        if driving is None:
            return self.engine.sync(frames, audio)  # type: ignore[no-any-return]
        return self.engine.sync(frames, audio, driving)  # type: ignore[no-any-return]


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class MusicEngineDeployment(_EngineHost):
    def compose(self, request: MusicRequest) -> MusicResult:
        return self.engine.compose(request)  # type: ignore[no-any-return]


# Any: Ray's annotations type a `@serve.deployment` class as the class, not as a Deployment.
DEPLOYMENTS: dict[Capability, Any] = {
    Capability.video: VideoEngineDeployment,
    Capability.image: ImageEngineDeployment,
    Capability.voice: VoiceEngineDeployment,
    Capability.lipsync: LipSyncEngineDeployment,
    Capability.music: MusicEngineDeployment,
}


def each_result(
    batch: Callable[[Sequence[T]], list[R]], one: Callable[[T], R], items: Sequence[T]
) -> list[R | Exception]:
    """`batch(items)`; when it fails, each item alone, so that a bad request fails by itself
    and not its batch-mates. Errors come back in place of their results."""
    try:
        return list(batch(items))
    except Exception as error:
        if len(items) == 1:
            return [error]
    results: list[R | Exception] = []
    for item in items:
        try:
            results.append(one(item))
        except Exception as error:
            results.append(error)
    return results


def _raise_or_return(result: T | Exception) -> T:
    if isinstance(result, Exception):
        raise result
    return result


def build_engine_app(
    capability: str,
    engine: str,
    settings: Settings,
    options: dict[str, Any] | None = None,
    **deployment_options: Any,
) -> Application:
    """The Serve application hosting one engine (named after `EngineInfo.deployment`);
    `options` from the Serve config (e.g. `runtime: {compile: true}`) reach its constructor,
    `deployment_options` (num_replicas, autoscaling_config, ...) its Serve deployment."""
    info = engine_info(capability, engine)
    deployment = DEPLOYMENTS[Capability(capability)].options(
        name=info.deployment, **deployment_options
    )
    models_dir = str(settings.resolved_models_dir.resolve())
    options = {**engine_options(settings, info), **(options or {})}
    return deployment.bind(capability, engine, models_dir, options)


def engine_options(settings: Settings, info: EngineInfo) -> dict[str, Any]:
    """Constructor options for the engines that need settings (hosted engines: key and
    endpoint)."""
    keys = {
        "openai": settings.openai_api_key,
        "elevenlabs": settings.elevenlabs_api_key,
        "runway": settings.runway_api_key,
        "luma": settings.luma_api_key,
    }
    urls = {
        "openai": settings.openai_base_url,
        "elevenlabs": settings.elevenlabs_base_url,
        "runway": settings.runway_base_url,
        "luma": settings.luma_base_url,
    }
    if info.name not in keys:
        return {}
    key = keys[info.name]
    return {"api_key": key.get_secret_value() if key else None, "base_url": urls[info.name]}


def app_builder(args: dict[str, Any]) -> Application:
    """For the Serve config YAML: `import_path: deployments.engines:app_builder` with args
    `capability`, `engine`, engine `options` and `settings` overrides (the rest comes from
    STUDIO_*); `studio serve` adds `deployments`, the config's deployment options by name."""
    settings = Settings(**args.get("settings", {}))
    capability, engine = args["capability"], args["engine"]
    deployment = args.get("deployments", {}).get(engine_info(capability, engine).deployment, {})
    return build_engine_app(capability, engine, settings, args.get("options"), **deployment)
