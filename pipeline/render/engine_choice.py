"""Which engine makes each stage of a render, chosen at submit and recorded with the job.

The Serve config lists the engine applications; for each capability, the order they appear in
is the order of preference of a `final` render. A final render takes, per capability, the first
engine whose licence the user's plan allows and that is deployed and healthy (else the first
allowed one that is deployed: a replica still starting, or one whose failure the render will
report). Scenes that start from a picture (an image, a talking character) take the first such
video engine that takes an image, so that no scene's picture is dropped; scenes with a driving
video take the first such lip-sync engine that takes one (character animation). A plan that
allows none of the candidates is refused with the capability and the engines considered; an
`animatic` uses the CPU engines. Setting `STUDIO_<CAPABILITY>_ENGINE` pins that capability to
one engine.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from ray import serve

from cluster.settings import Settings
from models.registry import CPU_DEFAULTS, Capability, EngineInfo, engine_info
from pipeline.errors import EngineUnavailable, LicenceRefused
from pipeline.render.dag import EngineChoice
from pipeline.render.engine_calls import engine_problem
from pipeline.render.spec import FilmSpec

SHIPPED_SERVE_CONFIG = Path(__file__).resolve().parents[2] / "deployments" / "serve_config.yaml"
_ENGINE_BUILDER = "deployments.engines:app_builder"
# Hosted engines are candidates only where their key is set.
_KEYS = {
    "openai": "openai_api_key",
    "elevenlabs": "elevenlabs_api_key",
    "runway": "runway_api_key",
    "luma": "luma_api_key",
}


class EngineState(StrEnum):
    serving = "serving"
    failing = "failing"
    absent = "absent"


StateOf = Callable[[EngineInfo], EngineState]


def configured_order(config: Path) -> dict[Capability, list[str]]:
    """The engine applications of a Serve config, per capability, in the order listed."""
    raw: dict[str, Any] = yaml.safe_load(config.read_text())
    order: dict[Capability, list[str]] = {capability: [] for capability in Capability}
    for app in raw.get("applications", []):
        if app.get("import_path") == _ENGINE_BUILDER:
            args = app.get("args", {})
            order[Capability(args["capability"])].append(args["engine"])
    return order


def final_candidates(settings: Settings) -> dict[Capability, list[str]]:
    """Per capability, the engines a final render may take, best first: the pinned one, else
    the Serve config's order (hosted engines only with their key), else the CPU default."""
    order = configured_order(settings.serve_config or SHIPPED_SERVE_CONFIG)
    candidates = {}
    for capability in Capability:
        pinned: str | None = getattr(settings, f"{capability.value}_engine")
        keyed = [
            name for name in order[capability]
            if name not in _KEYS or getattr(settings, _KEYS[name]) is not None
        ]  # fmt: skip
        candidates[capability] = [pinned] if pinned else keyed or [CPU_DEFAULTS[capability]]
    return candidates


def serve_state(info: EngineInfo) -> EngineState:
    """Whether the engine's Serve application is deployed, and failing to start."""
    if info.deployment not in serve.status().applications:
        return EngineState.absent
    return EngineState.failing if engine_problem(info) else EngineState.serving


def choose_engines(
    settings: Settings,
    quality: str,
    plan_code: str,
    allowed_licences: Collection[str],
    spec: FilmSpec,
    state: StateOf = serve_state,
) -> EngineChoice:
    """The engines of one render (see the module's docstring). Licences are checked for every
    capability before Serve is asked which engines are deployed."""
    if quality == "animatic":
        return EngineChoice(**{c.value: name for c, name in CPU_DEFAULTS.items()})
    candidates = final_candidates(settings)
    allowed = {
        capability: _allowed(capability, names, plan_code, allowed_licences)
        for capability, names in candidates.items()
    }
    choice = EngineChoice(
        **{capability.value: _first(capability, infos, plan_code, state).name
           for capability, infos in allowed.items()}
    )  # fmt: skip
    if any(scene.image is not None or scene.character is not None for scene in spec.scenes):
        engine = _able(
            Capability.video, "animates a scene's image", lambda info: info.takes_image,
            allowed, candidates, plan_code, state,
        )  # fmt: skip
        if engine.name != choice.video:
            choice.image_video = engine.name
    if any(scene.driving_video is not None for scene in spec.scenes):
        engine = _able(
            Capability.lipsync, "moves a character by a driving video",
            lambda info: info.takes_motion, allowed, candidates, plan_code, state,
        )  # fmt: skip
        if engine.name != choice.lipsync:
            choice.motion_lipsync = engine.name
    return choice


def _able(
    capability: Capability,
    does: str,
    able: Callable[[EngineInfo], bool],
    allowed: Mapping[Capability, list[EngineInfo]],
    candidates: Mapping[Capability, list[str]],
    plan_code: str,
    state: StateOf,
) -> EngineInfo:
    """The first allowed engine of `capability` that is `able` to do what some scenes ask; none
    refuses the render: LicenceRefused when a candidate could, else EngineUnavailable."""
    able_allowed = [info for info in allowed[capability] if able(info)]
    if not able_allowed:
        considered = [engine_info(capability, name) for name in candidates[capability]]
        refusal = LicenceRefused if any(able(info) for info in considered) else EngineUnavailable
        raise refusal(
            f"no {capability} engine the {plan_code} plan may use {does}:"
            f" considered {_named(considered)}",
            capability=capability.value,
            engines=[info.name for info in considered],
        )
    return _first(capability, able_allowed, plan_code, state)


def _allowed(
    capability: Capability, names: Iterable[str], plan_code: str, licences: Collection[str]
) -> list[EngineInfo]:
    """The candidates whose licence the plan allows, in order; none refuses the render."""
    infos = [engine_info(capability, name) for name in names]
    allowed = [info for info in infos if info.licence in licences]
    if not allowed:
        raise LicenceRefused(
            f"no {capability} engine the {plan_code} plan may use: considered {_named(infos)}",
            capability=capability.value,
            engines=[info.name for info in infos],
            licences=sorted({info.licence for info in infos}),
        )
    return allowed


def _first(
    capability: Capability, allowed: list[EngineInfo], plan_code: str, state: StateOf
) -> EngineInfo:
    """The first allowed engine that serves, else the first deployed one (its render reports
    why it cannot start)."""
    states = {info.name: state(info) for info in allowed}
    for wanted in (EngineState.serving, EngineState.failing):
        for info in allowed:
            if states[info.name] is wanted:
                return info
    raise EngineUnavailable(
        f"no {capability} engine the {plan_code} plan may use is deployed: considered "
        f"{_named(allowed)}",
        capability=capability.value,
        engines=[info.name for info in allowed],
    )


def _named(infos: Iterable[EngineInfo]) -> str:
    return ", ".join(f"{info.name} ({info.licence}: {info.terms.use})" for info in infos)


def engine_record(
    choice: Mapping[str, Any], thumbnails: str | None = None
) -> dict[str, dict[str, Any]]:
    """Per stage, the engine that makes it and its licence: what the job shows. `thumbnails`
    says what made a finished render's thumbnails (`RenderReport.thumbnails`); until then the
    record says what is meant to. Thumbnails picked from the film (`frames`) are under its
    video engine's terms; those that fell back to frames name the engine they fell back from."""
    made = EngineChoice.model_validate(choice)
    stages = {capability.value: made.info(capability) for capability in Capability}
    if made.image_video is not None:
        stages["video_from_image"] = engine_info(Capability.video, made.image_video)
    if made.motion_lipsync is not None:
        stages["lipsync_from_driving_video"] = engine_info(Capability.lipsync, made.motion_lipsync)
    record = {stage: _terms(info) for stage, info in stages.items()}
    key_art = made.key_art()
    meant = "frames" if key_art is None else key_art.name
    drawn_by = thumbnails or meant
    if drawn_by == "frames":
        record["thumbnails"] = {**_terms(stages["video"]), "engine": "frames"}
    else:
        record["thumbnails"] = _terms(made.info(Capability.image))
    if drawn_by != meant:
        record["thumbnails"]["fallback_from"] = meant
    return record


def _terms(info: EngineInfo) -> dict[str, Any]:
    """The engine's name and its licence's terms."""
    return {
        "engine": info.name,
        "licence": info.licence,
        "use": info.terms.use.value,
        "revenue_cap_usd": info.terms.revenue_cap_usd,
    }
