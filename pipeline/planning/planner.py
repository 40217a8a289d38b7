"""The CPU planner: a story, a screenplay or an idea into a film spec, with no model.

    text ─► title, kind, language ─► passages (who speaks what) ─► cast (one voice each)
         ─► scenes cut to the target length ─► prompt, mood, camera, transition ─► FilmSpec

Scenes cut at paragraph and sentence boundaries (clauses, then words, for a sentence too long),
never across a change of voice, so that each scene's narration, read at its voice's rate, lasts
at most `PlanStyle.scene_seconds`. The same text, style and seed always give the same plan.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import ConfigDict, Field

from models.base import Mood, MusicStyle, Voice
from models.espeak import espeak_language
from pipeline.fields import StrictInput
from pipeline.planning import casting, visuals
from pipeline.planning.dialogue import Passage, prose_passages, screenplay_passages
from pipeline.planning.language import detect_language
from pipeline.planning.text import (
    MAX_STORY_WORDS,
    StoryInvalid,
    StoryKind,
    check_story,
    clauses,
    sentences,
    story_kind,
    word_count,
)
from pipeline.render.spec import LANGUAGE_PATTERN, AspectRatio, FilmSpec

MAX_SCENES = 60
MAX_CHARACTERS = 24
MAX_CAST = 12
MENTION_WORDS = 5
IDEA_BEATS = ("the world before", "the call", "the struggle", "the turn", "the ending")


class PlanStyle(StrictInput):
    """What the user asks of the plan, beside the text."""

    model_config = ConfigDict(extra="forbid")

    aspect_ratio: AspectRatio = "16:9"
    resolution: int = Field(default=720, ge=144, le=1080)
    fps: int = Field(default=24, ge=12, le=60)
    seed: int = Field(default=0, ge=0, lt=2**32)
    scene_seconds: float = Field(
        default=10.0, ge=3, le=30, description="Most narration per scene, at the voice's rate."
    )
    target_duration_s: float | None = Field(
        default=None, ge=5, le=600, description="Length of a film planned from a one-line idea."
    )
    language: str | None = Field(default=None, max_length=35, pattern=LANGUAGE_PATTERN)
    narrator: Voice | None = None
    visual_style: str | None = Field(default=None, max_length=200)
    captions: bool = True


@dataclass
class Plan:
    """A planned spec and what the planner wants the user to know about it."""

    spec: FilmSpec
    kind: StoryKind
    planner: str = "cpu"
    warnings: list[str] = field(default_factory=list)
    story: str | None = None
    """The story planned, when it is not the text given (an idea expanded by the model)."""
    model_answers: int = 0
    """The model's answers the plan is made of (its plan and a repair); 0 on the CPU."""
    credits: int = 0
    """What planning was charged (model planning only)."""


@dataclass
class _Unit:
    text: str
    speaker: str | None
    paragraph: int
    setting: str | None


def plan_story(text: str, style: PlanStyle | None = None) -> Plan:
    """The film spec for a story; `StoryInvalid` for text no plan can come from."""
    # 1. Check the text, find its title, kind and language
    style = style or PlanStyle()
    text = check_story(text, MAX_STORY_WORDS)
    title, body = split_title(text)
    kind = story_kind(body)
    warnings: list[str] = []
    language = style.language or detect_language(body)
    if espeak_language(language) is None:
        warnings.append(f"no voice speaks {language!r}; the plan is voiced in English")
        language = "en"
    if kind == "idea":
        return Plan(_plan_idea(body, title, language, style), kind, warnings=warnings)

    # 2. Who says what, and in which voice
    passages = screenplay_passages(body) if kind == "screenplay" else prose_passages(body)
    names = list(dict.fromkeys(p.speaker for p in passages if p.speaker is not None))
    if len(names) > MAX_CHARACTERS:
        raise StoryInvalid(f"the story has {len(names)} speakers; a film allows {MAX_CHARACTERS}")
    narration = [p.text for p in passages if p.speaker is None]
    castings = [casting.infer(name, _mentions(name, narration, names)) for name in names]
    narrator, voices = casting.cast_voices(castings, language, style.narrator or casting.NARRATOR)
    if len(names) >= len(casting.VOICES):
        warnings.append(f"{len(names)} characters share {len(casting.VOICES) - 1} voices")

    # 3. Scenes cut to the target length, stretched when a film would have too many
    said = [sentences(p.text) for p in passages]
    seconds = max(style.scene_seconds, _spoken_seconds(passages, voices, narrator) / MAX_SCENES)
    groups = _scenes(passages, said, voices, narrator, seconds)
    while len(groups) > MAX_SCENES and seconds < 60:
        seconds = min(60.0, seconds * 1.25)
        groups = _scenes(passages, said, voices, narrator, seconds)
    if len(groups) > MAX_SCENES:
        raise StoryInvalid(
            f"the story needs {len(groups)} scenes (speaker turns); a film allows {MAX_SCENES}"
        )
    if seconds != style.scene_seconds:
        warnings.append(
            f"scenes lengthened to {seconds:.0f} s to fit the film in {MAX_SCENES} scenes"
        )

    # 4. What each scene looks like
    descriptions = {c.name: _describe(c) for c in castings}
    chooser = visuals.ShotChooser(f"{style.seed}:{_digest(text)}")
    scenes: list[dict[str, Any]] = []
    for number, group in enumerate(groups):
        spoken = " ".join(unit.text for unit in group)
        speaker = group[0].speaker
        cast = [name for name in names if name != speaker and _names(name, spoken)][:MAX_CAST]
        mood = visuals.scene_mood(spoken, scenes[-1]["mood"] if scenes else Mood.calm)
        shown = ([speaker] if speaker else []) + cast
        new_paragraph = (
            number + 1 < len(groups) and groups[number + 1][0].paragraph != group[-1].paragraph
        )
        scene: dict[str, Any] = {
            "narration": spoken,
            "voice": voices[speaker] if speaker else narrator,
            "speaker": speaker,
            "cast": cast,
            "prompt": visuals.visual_prompt(
                spoken, shown, group[0].setting, descriptions, style.visual_style
            ),
            "mood": mood,
            "camera": chooser.camera_for(mood),
            "transition": chooser.transition_for(
                new_paragraph=new_paragraph, last=number == len(groups) - 1
            ),
        }
        if number == 0:
            scene["title"] = title[:120]
        scenes.append(scene)

    # 5. The spec, with a character sheet per speaking character
    characters = [
        {
            "name": name,
            "description": descriptions[name],
            "voice": voices[name],
            "seed": _seed(style.seed, name),
        }
        for name in names
    ]
    moods = Counter(scene["mood"] for scene in scenes)
    spec = FilmSpec.model_validate(
        {
            **film_fields(title, language, style),
            "music": {"mood": moods.most_common(1)[0][0], "style": MusicStyle.score},
            "characters": characters,
            "scenes": scenes,
        }
    )
    return Plan(spec, kind, warnings=warnings)


def split_title(text: str) -> tuple[str, str]:
    """The title (a short first line standing alone, else the opening words) and the body."""
    lines = text.strip().split("\n")
    first = lines[0].strip()
    standalone = len(lines) > 2 and not lines[1].strip()
    heading = first.strip("#* ")
    if standalone and heading and len(first.split()) <= 12 and not re.search(r"[.!?:\"”]$", first):
        return _title_case(heading), "\n".join(lines[2:]).strip()
    opening = sentences(" ".join(text.split()))[0]
    words = re.sub(r"[^\w\s'-]", "", opening).split()[:8]
    return (" ".join(words) or "Untitled"), text.strip()


def _title_case(line: str) -> str:
    return line.title() if line.isupper() else line


def _spoken_seconds(passages: list[Passage], voices: dict[str, Voice], narrator: Voice) -> float:
    """How long the whole story takes to say, at each voice's rate."""
    return sum(
        word_count(p.text) / casting.words_per_second(voices[p.speaker] if p.speaker else narrator)
        for p in passages
    )


def _scenes(
    passages: list[Passage],
    said: list[list[str]],
    voices: dict[str, Voice],
    narrator: Voice,
    seconds: float,
) -> list[list[_Unit]]:
    """Units (sentences, or pieces of a long one) grouped into scenes of one voice each;
    `said` holds each passage's sentences."""
    groups: list[list[_Unit]] = []
    words = 0
    for passage, passage_sentences in zip(passages, said, strict=True):
        voice = voices[passage.speaker] if passage.speaker else narrator
        limit = max(3, math.floor(seconds * casting.words_per_second(voice)))
        for piece in _pieces(passage_sentences, limit):
            unit = _Unit(piece, passage.speaker, passage.paragraph, passage.setting)
            size = word_count(piece)
            last = groups[-1][-1] if groups else None
            joins = (
                last is not None
                and last.speaker == unit.speaker
                and last.setting == unit.setting
                and words + size <= limit
                and (last.paragraph == unit.paragraph or words < limit / 2)
            )
            if joins:
                groups[-1].append(unit)
                words += size
            else:
                groups.append([unit])
                words = size
    return groups


def _pieces(text_sentences: list[str], limit: int) -> list[str]:
    """The sentences; one longer than `limit` words is cut at clauses, then at words."""
    pieces: list[str] = []
    for sentence in text_sentences:
        if word_count(sentence) <= limit:
            pieces.append(sentence)
            continue
        chunk: list[str] = []
        for part in clauses(sentence):
            part_words = part.split()
            if chunk and len(chunk) + len(part_words) > limit:
                pieces.append(" ".join(chunk))
                chunk = []
            if len(part_words) > limit:
                pieces += _even_chunks(part_words, limit)
            else:
                chunk += part_words
        if chunk:
            pieces.append(" ".join(chunk))
    return pieces


def _even_chunks(words: list[str], limit: int) -> list[str]:
    """Words cut into the fewest chunks of at most `limit`, of near-equal length."""
    count = math.ceil(len(words) / limit)
    size = math.ceil(len(words) / count)
    return [" ".join(words[start : start + size]) for start in range(0, len(words), size)]


def _plan_idea(idea: str, title: str, language: str, style: PlanStyle) -> FilmSpec:
    """A one-line idea without a model: the idea narrated over the opening shot, then silent
    shots of its beats, to the target length."""
    total = style.target_duration_s or 30.0
    count = max(2, min(len(IDEA_BEATS) + 1, round(total / style.scene_seconds)))
    seconds = round(min(60.0, total / count), 2)
    chooser = visuals.ShotChooser(f"{style.seed}:{_digest(idea)}")
    mood = visuals.scene_mood(idea)
    narrator = (style.narrator or casting.NARRATOR).model_copy(update={"language": language})
    scenes: list[dict[str, Any]] = []
    for number in range(count):
        beat = "the opening" if number == 0 else IDEA_BEATS[(number - 1) % len(IDEA_BEATS)]
        prompt = visuals.visual_prompt(f"{idea} ({beat})", [], None, {}, style.visual_style)
        scene: dict[str, Any] = {
            "prompt": prompt,
            "voice": narrator,
            "duration_s": seconds,
            "mood": mood,
            "camera": chooser.camera_for(mood),
            "transition": chooser.transition_for(new_paragraph=True, last=number == count - 1),
        }
        if number == 0:
            scene |= {"narration": idea, "title": title[:120]}
        scenes.append(scene)
    return FilmSpec.model_validate(
        {**film_fields(title, language, style), "music": {"mood": mood}, "scenes": scenes}
    )


def film_fields(title: str, language: str, style: PlanStyle) -> dict[str, Any]:
    """The spec's film-wide fields: the title and language found, the rest from the style."""
    return {
        "title": title[:200],
        "language": language,
        "aspect_ratio": style.aspect_ratio,
        "resolution": style.resolution,
        "fps": style.fps,
        "seed": style.seed,
        "captions": style.captions,
    }


def _mentions(name: str, narration: list[str], names: list[str]) -> list[str]:
    """The words around each time the narration names a character ('a girl in a white gown'),
    other characters' names left out."""
    pattern = re.compile(rf"\b{re.escape(name)}\b", re.IGNORECASE)
    others = [other for other in names if other != name]
    strip = re.compile("|".join(rf"\b{re.escape(o)}\b" for o in others), re.I) if others else None
    windows = []
    for text in narration:
        for match in pattern.finditer(text):
            before = text[: match.start()].split()[-MENTION_WORDS:]
            after = text[match.end() :].split()[:MENTION_WORDS]
            windows.append(" ".join([*before, match.group(0), *after]))
    return [strip.sub(" ", window) if strip else window for window in windows]


def _names(name: str, text: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", text, re.IGNORECASE) is not None


def _describe(character: casting.Casting) -> str:
    """A short look for the prompts: age and gender words, else the first mention."""
    words = [character.age.value if character.age else None]
    words.append(character.gender.value if character.gender else None)
    known = " ".join(word for word in words if word)
    return known or character.description[:80]


def _seed(seed: int, name: str) -> int:
    return int(_digest(f"{seed}:{name}")[:8], 16)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
