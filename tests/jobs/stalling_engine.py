"""A test engine that hangs: the CPU animatic video engine as a Serve deployment, except that a shot
whose prompt holds `STALL` never returns. It counts the calls it stalled and those the caller
cancelled, which reach the replica as the awaiting coroutine's cancellation."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ray import serve

from models.base import Frames, VideoRequest
from models.registry import Capability, build_engine, engine_info

STALL = "STALL"
ANIMATIC = engine_info(Capability.video, "animatic")


@serve.deployment(name=ANIMATIC.deployment, ray_actor_options={"num_cpus": 0.25})
class StallingVideo:
    def __init__(self) -> None:
        self.engine = build_engine(ANIMATIC, Path("."), {})
        self.stalled = 0
        self.cancelled = 0

    async def generate(self, request: VideoRequest) -> Frames:
        if STALL in request.prompt:
            self.stalled += 1
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        frames: Frames = await asyncio.to_thread(self.engine.generate, request)
        return frames

    def counts(self) -> tuple[int, int]:
        """The calls stalled and the calls cancelled so far."""
        return self.stalled, self.cancelled
