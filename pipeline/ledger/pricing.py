"""What a render costs: the price table per stage, the estimate reserved when a render is
submitted and the charge captured when it succeeds; and whether the user's plan allows it.

Rates are millicredits per second of output, so cheap stages can cost a fraction of a credit
per second; each stage's total is rounded up to whole credits. An estimate is an upper bound
(a scene fitted to its narration is timed at a slow speaking rate, lip-sync is priced on the
longest scenes), because the reservation must cover the render: capture takes what was really
used and releases the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from db.models import Plan
from pipeline.errors import PlanLimit, SpecInvalid

if TYPE_CHECKING:
    from pipeline.render.spec import FilmSpec

Quality = Literal["animatic", "final"]
RESOLUTIONS = (360, 480, 720, 1080)
TOPUP_CENTS_PER_CREDIT = 1
NARRATION_WORDS_PER_S = 2.2
NARRATION_PAD_S = 0.8
"""Timing a scene fitted to its narration: slow speech, plus the render's lead-in and tail."""
PREVIEW_STOPS = frozenset({"plan", "voice"})
"""Renders that stop after the narration (plan and storyboard, or the voice track) pay for the
voice only; a render that stops at the animatic pays animatic rates."""

VIDEO_RATES: dict[Quality, dict[int, int]] = {
    "animatic": {360: 500, 480: 750, 720: 1_000, 1080: 2_000},
    "final": {360: 4_000, 480: 6_000, 720: 10_000, 1080: 20_000},
}
"""Video: CPU animatic frames are cheap; neural (diffusion) frames dear, more so per pixel."""
VOICE_RATES: dict[Quality, int] = {"animatic": 100, "final": 1_000}
MUSIC_RATES: dict[Quality, int] = {"animatic": 100, "final": 500}
LIPSYNC_RATES: dict[Quality, int] = {"animatic": 500, "final": 4_000}
PLANNING_WORDS_PER_CREDIT = 200
"""Planning with a model: one credit per 200 words of story per answer (about 300 tokens read and
a spec's worth written); the CPU planner is free."""
PLANNING_ANSWERS = 2
"""A model plan is reserved for two answers, the plan and its one repair."""
IDEA_CREDITS = 2
"""Writing a story from a one-line idea: one answer of a few hundred words."""


class FilmLike(Protocol):
    """What pricing needs to know about a film (the film spec adapts to it)."""

    @property
    def scene_seconds(self) -> Sequence[float]: ...
    @property
    def resolution(self) -> int: ...
    @property
    def has_music(self) -> bool: ...
    @property
    def lipsync_scenes(self) -> int: ...


@dataclass(frozen=True)
class RenderShape:
    """A FilmLike as plain data; `from_spec` reads one off a film spec."""

    scene_seconds: Sequence[float]
    resolution: int
    has_music: bool = False
    lipsync_scenes: int = 0

    @classmethod
    def from_spec(cls, spec: FilmSpec) -> RenderShape:
        """A scene lasts its duration_s, or longer if its narration needs it (as the render
        times it), narration being timed at the slow rate above."""
        seconds = []
        for scene in spec.scenes:
            spoken = scene.word_count / NARRATION_WORDS_PER_S + NARRATION_PAD_S
            seconds.append(max(scene.duration_s or 0.0, spoken if scene.spoken_text else 0.0))
        talking = [scene.character or scene.podcast for scene in spec.scenes]
        return cls(
            scene_seconds=seconds,
            resolution=spec.resolution,
            has_music=spec.music.style != "none",
            lipsync_scenes=sum(1 for heads in talking if heads is not None),
        )


class Estimate(BaseModel):
    """What a render would cost: the credits to reserve, the seconds priced and the credits
    per stage. A dry run answers with it."""

    model_config = ConfigDict(frozen=True)

    credits: int
    seconds: float
    breakdown: dict[str, int]


def price_tier(resolution: int) -> int:
    """The smallest priced resolution at least as large as `resolution`."""
    for tier in RESOLUTIONS:
        if resolution <= tier:
            return tier
    raise SpecInvalid(f"resolution {resolution} is above the largest, {RESOLUTIONS[-1]}")


def estimate(film: FilmLike, quality: Quality | str, stop_at: str | None = None) -> Estimate:
    """The credits to reserve for rendering `film` at `quality`, stopping after `stop_at`
    (plan, voice or animatic; None renders everything)."""
    if quality not in VIDEO_RATES or stop_at not in (None, "animatic", *PREVIEW_STOPS):
        raise SpecInvalid(f"cannot price quality {quality!r} stopping at {stop_at!r}")
    rate: Quality = "animatic" if quality == "animatic" or stop_at == "animatic" else "final"
    seconds = [Decimal(str(s)) for s in film.scene_seconds]
    if not seconds or any(s <= 0 for s in seconds):
        raise SpecInvalid("a film has at least one scene, each longer than zero seconds")
    if not 0 <= film.lipsync_scenes <= len(seconds):
        raise SpecInvalid("more lip-sync scenes than scenes")
    total = sum(seconds, Decimal(0))
    lipsync = sum(sorted(seconds, reverse=True)[: film.lipsync_scenes], Decimal(0))
    breakdown = {"voice": _credits(VOICE_RATES[rate], total)}
    if stop_at not in PREVIEW_STOPS:
        breakdown["video"] = _credits(VIDEO_RATES[rate][price_tier(film.resolution)], total)
        breakdown["music"] = _credits(MUSIC_RATES[rate], total) if film.has_music else 0
        breakdown["lipsync"] = _credits(LIPSYNC_RATES[rate], lipsync)
    return Estimate(credits=sum(breakdown.values()), seconds=float(total), breakdown=breakdown)


def planning_estimate(words: int, idea: bool) -> Estimate:
    """The credits to reserve for planning a story of `words` words with a model: the story
    written first when the text is an idea, then the plan and its repair."""
    answer = max(1, math.ceil(words / PLANNING_WORDS_PER_CREDIT))
    breakdown = {"story": IDEA_CREDITS if idea else 0, "plan": answer * PLANNING_ANSWERS}
    return Estimate(credits=sum(breakdown.values()), seconds=0.0, breakdown=breakdown)


def planning_charge(estimate: Estimate, idea_written: bool, plan_answers: int) -> int:
    """What model planning pays: the idea's story when one was written and used, and each
    answer of a plan that was used; a plan that fell back to the CPU pays no plan answers."""
    per_answer = estimate.breakdown["plan"] // PLANNING_ANSWERS
    story = estimate.breakdown["story"] if idea_written else 0
    return story + per_answer * min(plan_answers, PLANNING_ANSWERS)


def charge_for(
    film: FilmLike, quality: Quality | str, stop_at: str | None, rendered_fraction: float
) -> int:
    """What a succeeded render pays: its estimate scaled by the fraction of the work that was
    really rendered (stages served from the cache are free), rounded up."""
    fraction = Decimal(str(min(1.0, max(0.0, rendered_fraction))))
    return math.ceil(estimate(film, quality, stop_at).credits * fraction)


def _credits(millicredits_per_s: int, seconds: Decimal) -> int:
    return math.ceil(millicredits_per_s * seconds / 1000)


def topup_price_cents(credits: int) -> int:
    if credits <= 0:
        raise ValueError("a top-up buys a positive number of credits")
    return credits * TOPUP_CENTS_PER_CREDIT


def check_plan(plan: Plan, film: FilmLike) -> None:
    """Raises PlanLimit if the plan does not allow a film of this resolution."""
    if film.resolution > plan.max_resolution:
        raise PlanLimit(
            f"resolution {film.resolution}p is above the {plan.code} plan's {plan.max_resolution}p",
            field="resolution",
        )


def check_concurrency(plan: Plan, active_jobs: int) -> None:
    """Raises PlanLimit if the user already has as many rendering jobs waiting or running as
    the plan runs at a time."""
    if active_jobs >= plan.max_concurrent_renders:
        raise PlanLimit(
            f"the {plan.code} plan runs {plan.max_concurrent_renders} render(s) at a time; "
            f"{active_jobs} are waiting or running"
        )
