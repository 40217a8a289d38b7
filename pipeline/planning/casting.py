"""Casting: one voice per character, for the whole film, and a narrator of its own.

A character's gender and age come from its cue or name ('Grandmother', 'the King', 'Mrs.
Bennet'), then from the words near its name (pronouns, 'old', 'little'); with nothing to go on,
characters get voices distinct by design. The narrator's voice is chosen first and no character
shares it while another voice is free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from models.base import AgeBand, Gender, Voice
from models.espeak import VOICES

_FEMALE = set(
    [
        "woman",
        "women",
        "girl",
        "queen",
        "princess",
        "mother",
        "mom",
        "mum",
        "grandmother",
        "grandma",
        "granny",
        "lady",
        "wife",
        "daughter",
        "sister",
        "aunt",
        "niece",
        "hen",
        "vixen",
        "mrs",
        "ms",
        "miss",
        "madam",
        "witch",
        "nun",
        "duchess",
        "countess",
        "maid",
        "mary",
        "anna",
        "alice",
        "jane",
        "emma",
        "lucy",
        "sarah",
        "elizabeth",
        "margaret",
        "helen",
        "ruth",
        "rose",
        "asha",
        "maya",
        "sita",
        "she",
        "her",
        "hers",
        "herself",
    ]
)
_MALE = set(
    [
        "man",
        "men",
        "boy",
        "king",
        "prince",
        "father",
        "dad",
        "grandfather",
        "grandpa",
        "gentleman",
        "husband",
        "son",
        "brother",
        "uncle",
        "nephew",
        "mr",
        "sir",
        "lord",
        "duke",
        "monk",
        "wolf",
        "lion",
        "fox",
        "tom",
        "jack",
        "john",
        "peter",
        "james",
        "william",
        "henry",
        "george",
        "arthur",
        "ram",
        "krishna",
        "he",
        "him",
        "his",
        "himself",
    ]
)
_CHILD = set(["boy", "girl", "child", "kid", "little", "baby", "cub", "kitten", "lamb"])
_GROWN = set(
    [
        "man",
        "woman",
        "king",
        "queen",
        "father",
        "mother",
        "lady",
        "gentleman",
        "husband",
        "wife",
        "mr",
        "mrs",
        "ms",
        "sir",
        "madam",
        "lord",
        "master",
        "mistress",
        "duke",
        "duchess",
    ]
)
_ELDER = set(
    [
        "old",
        "aged",
        "elder",
        "ancient",
        "grandfather",
        "grandmother",
        "grandma",
        "grandpa",
        "granny",
        "wise",
        "elderly",
    ]
)
_WORD = re.compile(r"[A-Za-z]+")

NARRATOR = Voice(gender=Gender.male, age=AgeBand.elder)
"""The storyteller, as in the examples: characters keep the adult and child voices."""
_ORDER: tuple[tuple[Gender, AgeBand], ...] = (
    (Gender.female, AgeBand.adult),
    (Gender.male, AgeBand.adult),
    (Gender.female, AgeBand.elder),
    (Gender.female, AgeBand.child),
    (Gender.male, AgeBand.child),
    (Gender.male, AgeBand.elder),
)
"""The voices a character without clues gets, in turn."""


@dataclass(frozen=True)
class Casting:
    """A character's inferred look and voice."""

    name: str
    gender: Gender | None
    age: AgeBand | None
    description: str


def infer(name: str, mentions: list[str]) -> Casting:
    """Gender and age from the name first, then from the sentences that mention it."""
    name_words = {word.lower() for word in _WORD.findall(name)}
    gender = _gender(name_words)
    age = _age(name_words) or (AgeBand.adult if name_words & _GROWN else None)
    context = [word.lower() for text in mentions for word in _WORD.findall(text)]
    if gender is None:
        gender = _gender_by_count(context)
    if age is None:
        age = _age(set(context)) or AgeBand.adult
    description = mentions[0] if mentions else name
    return Casting(name, gender, age, description[:500])


def _gender(words: set[str]) -> Gender | None:
    female, male = bool(words & _FEMALE), bool(words & _MALE)
    if female != male:
        return Gender.female if female else Gender.male
    return None


def _gender_by_count(words: list[str]) -> Gender | None:
    female = sum(word in _FEMALE for word in words)
    male = sum(word in _MALE for word in words)
    if female == male:
        return None
    return Gender.female if female > male else Gender.male


def _age(words: set[str]) -> AgeBand | None:
    if words & _ELDER:
        return AgeBand.elder
    if words & _CHILD:
        return AgeBand.child
    return None


def cast_voices(
    characters: list[Casting], language: str, narrator: Voice = NARRATOR
) -> tuple[Voice, dict[str, Voice]]:
    """The narrator's voice and one voice per character, distinct while voices last."""
    narrator = narrator.model_copy(update={"language": language})
    taken = {(narrator.gender, narrator.age)}
    voices: dict[str, Voice] = {}
    for character in characters:
        choice = _choose(character, taken)
        taken.add(choice)
        voices[character.name] = Voice(gender=choice[0], age=choice[1], language=language)
    return narrator, voices


def _choose(character: Casting, taken: set[tuple[Gender, AgeBand]]) -> tuple[Gender, AgeBand]:
    """The inferred voice if free, else the same gender at another age, else any free voice."""
    age = character.age or AgeBand.adult
    candidates: list[tuple[Gender, AgeBand]] = []
    if character.gender is not None:
        candidates.append((character.gender, age))
        candidates += [(character.gender, other) for other in AgeBand if other != age]
    candidates += [voice for voice in _ORDER if voice[1] == age] + list(_ORDER)
    for candidate in candidates:
        if candidate not in taken and candidate in VOICES:
            return candidate
    return candidates[0]


def words_per_second(voice: Voice) -> float:
    """How fast the default voice engine speaks this voice (its rate in words per minute)."""
    return VOICES[voice.gender, voice.age].rate / 60
