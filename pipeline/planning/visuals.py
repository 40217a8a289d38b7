"""What a scene looks like: its visual prompt, mood, camera move and transition.

The prompt is built from the scene's own sentences: the characters in it, the place (a screenplay
heading or 'in/at/by the …'), the time of day. Mood comes from a word lexicon. Camera moves and
transitions are drawn from a seeded generator, suited to the mood and never the same as the
scene before's, so that a plan varies but is the same for the same input and seed.
"""

from __future__ import annotations

import random
import re
from collections import Counter

from models.base import CameraMove, Mood
from pipeline.render.spec import Transition

MOOD_WORDS: dict[Mood, frozenset[str]] = {
    Mood.joyful: frozenset(
        [
            "happy",
            "joy",
            "joyful",
            "laughed",
            "laugh",
            "laughing",
            "smiled",
            "smile",
            "glad",
            "delight",
            "delighted",
            "merry",
            "cheerful",
            "sang",
            "danced",
            "celebrate",
            "celebrated",
            "bright",
            "sunny",
            "wonderful",
            "fun",
            "hooray",
        ]
    ),
    Mood.sad: frozenset(
        [
            "sad",
            "sorrow",
            "wept",
            "weep",
            "cried",
            "tears",
            "tear",
            "alone",
            "lonely",
            "grief",
            "grieved",
            "lost",
            "mourn",
            "died",
            "dead",
            "death",
            "sigh",
            "sighed",
            "miss",
            "missed",
            "hungry",
            "poor",
            "cold",
            "broken",
        ]
    ),
    Mood.mysterious: frozenset(
        [
            "dark",
            "shadow",
            "shadows",
            "strange",
            "secret",
            "mist",
            "fog",
            "whisper",
            "whispered",
            "silent",
            "silence",
            "night",
            "moon",
            "hidden",
            "unknown",
            "mystery",
            "wondered",
            "ghost",
            "curious",
            "quiet",
        ]
    ),
    Mood.dramatic: frozenset(
        [
            "suddenly",
            "storm",
            "angry",
            "anger",
            "shouted",
            "fight",
            "fought",
            "danger",
            "fear",
            "afraid",
            "scream",
            "screamed",
            "attack",
            "ran",
            "rushed",
            "trap",
            "trick",
            "fell",
            "crash",
            "thunder",
            "furious",
            "seized",
            "snatched",
        ]
    ),
    Mood.epic: frozenset(
        [
            "great",
            "mighty",
            "kingdom",
            "army",
            "battle",
            "mountain",
            "mountains",
            "journey",
            "hero",
            "heroes",
            "victory",
            "vast",
            "ocean",
            "sky",
            "empire",
            "glory",
            "rose",
            "triumph",
            "king",
            "queen",
        ]
    ),
    Mood.devotional: frozenset(
        [
            "prayer",
            "prayed",
            "pray",
            "god",
            "gods",
            "temple",
            "holy",
            "sacred",
            "blessing",
            "blessed",
            "faith",
            "soul",
            "divine",
            "hymn",
            "worship",
            "shrine",
        ]
    ),
}
TIMES_OF_DAY: dict[str, str] = {
    "dawn": "at dawn",
    "sunrise": "at sunrise",
    "morning": "in the morning",
    "noon": "at midday",
    "afternoon": "in the afternoon",
    "evening": "in the evening",
    "dusk": "at dusk",
    "sunset": "at sunset",
    "night": "at night",
    "midnight": "at midnight",
}
CAMERA_BY_MOOD: dict[Mood, tuple[CameraMove, ...]] = {
    Mood.calm: (CameraMove.pan_left, CameraMove.pan_right, CameraMove.zoom_out, CameraMove.static),
    Mood.joyful: (CameraMove.pan_right, CameraMove.zoom_in, CameraMove.pan_left),
    Mood.mysterious: (CameraMove.dolly_in, CameraMove.pan_left, CameraMove.zoom_in),
    Mood.dramatic: (CameraMove.dolly_in, CameraMove.zoom_in, CameraMove.pan_right),
    Mood.sad: (CameraMove.zoom_out, CameraMove.static, CameraMove.pan_left),
    Mood.epic: (CameraMove.zoom_out, CameraMove.pan_right, CameraMove.dolly_in),
    Mood.devotional: (CameraMove.zoom_in, CameraMove.static, CameraMove.zoom_out),
}
_PLACE = re.compile(
    r"\b(?:in|at|by|on|under|near|inside|beside|across|into|through)\s+"
    r"((?:the|a|an|his|her|their)\s+(?:[a-z]+\s+){0,2}[a-z]+)",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z]+")
PROMPT_WORDS = 40


_MOOD_OF_WORD: dict[str, Mood] = {
    word: mood for mood, lexicon in reversed(MOOD_WORDS.items()) for word in lexicon
}
"""Each lexicon word's mood (a word in two lexicons counts for the first)."""


def scene_mood(text: str, default: Mood = Mood.calm) -> Mood:
    """The mood whose words the text uses most (ties: the lexicon listed first); `default` when
    none."""
    scores = Counter(_MOOD_OF_WORD[w] for w in _WORD.findall(text.lower()) if w in _MOOD_OF_WORD)
    if not scores:
        return default
    order = list(MOOD_WORDS)
    return max(scores, key=lambda mood: (scores[mood], -order.index(mood)))


def time_of_day(text: str) -> str | None:
    words = set(_WORD.findall(text.lower()))
    return next((phrase for word, phrase in TIMES_OF_DAY.items() if word in words), None)


def place(text: str) -> str | None:
    """The first 'in the forest'-like place the text names."""
    match = _PLACE.search(text)
    return match.group(1).lower() if match else None


def visual_prompt(
    text: str,
    characters: list[str],
    setting: str | None,
    descriptions: dict[str, str],
    style: str | None = None,
) -> str:
    """What the shot shows: its characters, its own words (shortened), the place and the time."""
    parts: list[str] = []
    if style:
        parts.append(style)
    for name in characters:
        description = descriptions.get(name)
        parts.append(f"{name} ({description})" if description else name)
    words = text.split()
    parts.append(
        " ".join(words[:PROMPT_WORDS]).rstrip(",;:") + ("…" if len(words) > PROMPT_WORDS else "")
    )
    where = setting or place(text)
    if where:
        parts.append(where)
    when = time_of_day(text)
    if when and (setting is None or when.split()[-1] not in setting):
        parts.append(when)
    return ", ".join(parts)[:2000]


class ShotChooser:
    """Camera moves and transitions for consecutive scenes: seeded, suited, never repeated."""

    def __init__(self, seed: str) -> None:
        self.random = random.Random(seed)
        self.camera: CameraMove | None = None
        self.transition: Transition | None = None

    def camera_for(self, mood: Mood) -> CameraMove:
        suited = [move for move in CAMERA_BY_MOOD[mood] if move != self.camera]
        self.camera = self.random.choice(suited)
        return self.camera

    def transition_for(self, *, new_paragraph: bool, last: bool) -> Transition:
        """Cuts and crossfades inside a paragraph, fades and crossfades between; the last fades."""
        if last:
            options = [Transition.fade]
        elif new_paragraph:
            options = [Transition.crossfade, Transition.fade]
        else:
            options = [Transition.cut, Transition.crossfade]
        different = [option for option in options if option != self.transition] or [
            option for option in Transition if option != self.transition
        ]
        self.transition = self.random.choice(different)
        return self.transition
