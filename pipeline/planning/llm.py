"""The LLM planner: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama).

The model answers with structured output against the film spec's JSON schema. The answer is
validated like any spec; on a schema error the model is shown the problems and asked once to
repair its answer; when that fails too, or the endpoint cannot be reached, the CPU planner plans
the story and the plan carries a warning saying why. A one-line idea is first expanded into a
short story by the same model. Planning settings: STUDIO_LLM_BASE_URL, STUDIO_LLM_MODEL,
STUDIO_LLM_API_KEY.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from cluster.errors import StudioError
from cluster.settings import Settings
from pipeline.errors import SpecInvalid
from pipeline.ledger import pricing
from pipeline.ledger.interface import Ledger
from pipeline.planning.planner import Plan, PlanStyle, film_fields, plan_story
from pipeline.planning.text import MAX_STORY_WORDS, check_story, story_kind, word_count
from pipeline.render.spec import FilmSpec

log = logging.getLogger(__name__)

SYSTEM_PROMPT = """You plan films for an AI film studio. Answer with one JSON object: a film spec
that validates against the JSON schema you are given, and nothing else.
- Cut the story into scenes of at most {seconds:.0f} seconds of narration each, at paragraph and
  sentence boundaries. Keep the story's own words; drop dialogue tags such as "said the fox".
- A scene has one voice: the narrator's, or one character's. For a line of dialogue set `speaker`
  to the character's name and give the scene that character's voice.
- Give every speaking character an entry in `characters` (name, description, voice, seed); one
  voice per character for the whole film, and the narrator a voice no character has.
- Give every scene a visual `prompt` from its own sentences (who, where, when), a `mood`, a
  `camera` move and a `transition`; consecutive scenes never share a camera move.
- Write in the story's language and set `language` (and each voice's) to its code."""
IDEA_PROMPT = """Write a short story of about {words} words from this idea, in plain paragraphs,
with a title on the first line and dialogue in double quotes naming who speaks. Idea: {idea}"""
REPAIR_PROMPT = """That answer is not a valid film spec:
{problems}
Answer again with the whole corrected JSON object."""
IDEA_WORDS_PER_SECOND = 2.5


class LlmUnavailable(StudioError):
    """The chat-completions endpoint could not be reached or refused the request."""

    slug, status, title = "llm-unavailable", 503, "Planning model unavailable"


class ChatClient:
    """A chat-completions client: one POST per answer, the assistant's text back."""

    def __init__(self, settings: Settings) -> None:
        if not settings.llm_base_url or not settings.llm_model:
            raise LlmUnavailable("STUDIO_LLM_BASE_URL and STUDIO_LLM_MODEL are not both set")
        headers = {}
        if settings.llm_api_key is not None:
            headers["Authorization"] = f"Bearer {settings.llm_api_key.get_secret_value()}"
        self.model = settings.llm_model
        self.http = httpx.Client(
            base_url=settings.llm_base_url.rstrip("/"),
            headers=headers,
            timeout=settings.llm_timeout_s,
        )

    def answer(
        self, messages: list[dict[str, str]], response_format: dict[str, Any] | None = None
    ) -> str:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": 0}
        if response_format is not None:
            body["response_format"] = response_format
        try:
            response = self.http.post("/chat/completions", json=body)
        except httpx.HTTPError as error:
            raise LlmUnavailable(f"the planning model could not be reached: {error}") from error
        if response.status_code != 200:
            raise LlmUnavailable(
                f"the planning model answered {response.status_code}: {response.text[:300]}"
            )
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise LlmUnavailable("the planning model's answer has no message") from error
        return str(content or "")

    def close(self) -> None:
        self.http.close()


def spec_format() -> dict[str, Any]:
    """Structured output: the answer must follow the film spec's JSON schema."""
    return {
        "type": "json_schema",
        "json_schema": {"name": "film_spec", "schema": FilmSpec.json_schema(), "strict": False},
    }


@dataclass(frozen=True)
class Payer:
    """Who pays for planning with a model, and the ledger the credits move through."""

    ledger: Ledger
    user_id: uuid.UUID


def plan_text(
    settings: Settings, text: str, style: PlanStyle | None = None, payer: Payer | None = None
) -> Plan:
    """A plan from the LLM when one is configured, else (or when it fails) from the CPU.
    Model planning is priced like a stage (`pricing.planning_estimate`): reserved from `payer`
    before the first answer, captured for the answers whose work the plan uses, the rest given
    back; the CPU planner is free."""
    style = style or PlanStyle()
    text = check_story(text, MAX_STORY_WORDS)
    if not settings.llm_base_url or not settings.llm_model:
        return plan_story(text, style)
    if payer is None:
        return _planned_by_model(settings, text, style)
    idea = story_kind(text) == "idea"
    price = pricing.planning_estimate(idea_words(style) if idea else word_count(text), idea)
    key = f"plan:{uuid.uuid4().hex}"
    reservation = payer.ledger.reserve(payer.user_id, price.credits, key)
    try:
        plan = _planned_by_model(settings, text, style)
    except BaseException:
        payer.ledger.release(reservation.id)
        raise
    plan.credits = pricing.planning_charge(price, plan.story is not None, plan.model_answers)
    if plan.credits:
        payer.ledger.capture(reservation.id, plan.credits)
    else:
        payer.ledger.release(reservation.id)
    return plan


def _planned_by_model(settings: Settings, text: str, style: PlanStyle) -> Plan:
    client = ChatClient(settings)
    try:
        return _plan_with(client, text, style)
    finally:
        client.close()


def _plan_with(client: ChatClient, text: str, style: PlanStyle) -> Plan:
    story = text
    if story_kind(text) == "idea":
        try:
            story = expand_idea(client, text, style)
        except StudioError as error:
            return _fallback(text, text, style, f"the idea was not expanded: {error.detail}")
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT.format(seconds=style.scene_seconds)},
        {"role": "user", "content": f"Style: {style.model_dump_json()}\n\nStory:\n{story}"},
    ]
    problems: list[str] = []
    for attempt in range(2):
        try:
            answer = client.answer(messages, spec_format())
        except LlmUnavailable as error:
            return _fallback(text, story, style, error.detail)
        try:
            spec = _spec(answer, style)
        except SpecInvalid as error:
            problems = error.extra.get("problems") or [error.detail]
            log.info("planning model answer %d invalid: %s", attempt + 1, problems)
            messages += [
                {"role": "assistant", "content": answer},
                {"role": "user", "content": REPAIR_PROMPT.format(problems="\n".join(problems))},
            ]
            continue
        warnings = ["the model's first answer was repaired"] if attempt else []
        return Plan(
            spec,
            story_kind(story),
            planner="llm",
            warnings=warnings,
            story=story if story != text else None,
            model_answers=attempt + 1,
        )
    why = f"the model's plan was invalid twice: {'; '.join(problems)}"
    return _fallback(text, story, style, why)


def idea_words(style: PlanStyle) -> int:
    """How long a story written from an idea is asked to be: as long as the target duration."""
    return round((style.target_duration_s or 60.0) * IDEA_WORDS_PER_SECOND)


def expand_idea(client: ChatClient, idea: str, style: PlanStyle) -> str:
    """A short story from a one-line idea, about as long as the target duration allows."""
    prompt = IDEA_PROMPT.format(words=idea_words(style), idea=idea)
    story = client.answer([{"role": "user", "content": prompt}])
    return check_story(story, MAX_STORY_WORDS)


def _spec(answer: str, style: PlanStyle) -> FilmSpec:
    """The answer as a spec, with the user's style (size, frame rate, seed) applied."""
    fenced = re.fullmatch(r"\s*```(?:json)?\s*(.*?)\s*```\s*", answer, re.DOTALL)
    spec = FilmSpec.from_text(fenced.group(1) if fenced else answer, "json")
    fixed = film_fields(spec.title, style.language or spec.language, style)
    data = json.loads(spec.model_dump_json()) | fixed
    return FilmSpec.model_validate(data)


def _fallback(text: str, story: str, style: PlanStyle, why: str) -> Plan:
    """The CPU's plan of the story (the idea's story when the model wrote one), saying why."""
    log.warning("planning on CPU: %s", why)
    plan = plan_story(story, style)
    plan.warnings.insert(0, f"planned on CPU: {why}")
    plan.story = story if story != text else None
    return plan
