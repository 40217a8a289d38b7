"""Who says what: a story cut into passages, each spoken by the narrator or by one character.

Prose: quoted lines (“…” or "…") are given to the name beside a said-verb next to them ("said the
Fox", "Tom asked"); a pronoun ("she said") or a bare quote goes to the other party of the running
exchange. The tag itself is dropped from the narration. A screenplay: `NAME:` or upper-case cues
give the lines under them (parentheticals dropped), scene headings set the place, action lines are
narrated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.planning.text import (
    BARE_CUE,
    COLON_CUE,
    HEADING,
    PARENTHETICAL,
    StoryInvalid,
    is_cue,
    paragraphs,
)

SAID_VERBS = (
    "said|says|say|asked|asks|replied|replies|answered|answers|cried|cries|called|calls|shouted|"
    "shouts|whispered|whispers|exclaimed|exclaims|added|adds|continued|continues|muttered|"
    "mutters|began|begins|went on|told|tells|snapped|snaps|laughed|laughs|sighed|sighs|"
    "answered back|yelled|yells|croaked|croaks|pleaded|pleads|declared|declares|thought|"
    "agreed|agrees|growled|growls|sang|sings|begged|begs|remarked|remarks|observed|observes"
)
_EPITHET = r"(?:old|little|young|big|wise|clever|proud|poor)"
_NAME = rf"(?:the\s+(?:{_EPITHET}\s+)?[A-Za-z][a-z]+|[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)"
_PRONOUN = r"(?:he|she|they|I|we)"
_AFTER_NAME = re.compile(rf"^\W*(?:{SAID_VERBS})\s+({_NAME}|{_PRONOUN})\b", re.IGNORECASE)
_AFTER_NAME_VERB = re.compile(rf"^\W*({_NAME}|{_PRONOUN})\s+(?:{SAID_VERBS})\b")
_BEFORE = re.compile(rf"\b({_NAME}|{_PRONOUN})\s+(?:{SAID_VERBS})(?:\s+\w+){{0,3}}\W*$")
_BEFORE_VERB_NAME = re.compile(rf"\b(?:{SAID_VERBS})\s+({_NAME})\W*$")
_QUOTE = re.compile(r"“([^”]+)”|\"([^\"]+)\"")
_TRANSITION = re.compile(r"^\s*[A-Z ]+(?:TO:|IN:|OUT[.:]?)\s*$")
TAG_REST_WORDS = 6
"""Words left beside a said-tag ('in his gruff voice', 'sadly, alone') go with the tag."""
_QUOTE_LINE = re.compile(r"\n(?=\s*[“\"])")
_SUBJECT = re.compile(r"\b(?:[Tt]he\s+)?([A-Z][a-z]+)\b")
_PRONOUNS = {"he", "she", "they", "i", "we"}
_NOT_NAMES = {
    "the", "then", "and", "but", "so", "when", "as", "there", "it", "this", "that", "he", "she",
    "they", "i", "we", "what", "one", "once", "now", "at", "in", "on", "a", "an", "his", "her",
}  # fmt: skip


@dataclass(frozen=True)
class Passage:
    """A run of text with one voice: `speaker` None is the narrator."""

    text: str
    speaker: str | None
    paragraph: int
    setting: str | None = None
    quoted: bool = False
    """True for a line of dialogue (a quote or a cued line)."""


def character_name(raw: str) -> str:
    """One spelling per character: 'the Fox', 'FOX' and 'fox' are all 'Fox'."""
    words = [w for w in raw.replace("_", " ").split() if w.lower() != "the"]
    return " ".join(w[:1].upper() + w[1:].lower() for w in words)


def prose_passages(text: str) -> list[Passage]:
    """Narration and attributed quotes, paragraph by paragraph."""
    passages: list[Passage] = []
    exchange: list[str] = []  # speakers of the running dialogue, most recent last
    last_subject: str | None = None
    for number, paragraph in enumerate(paragraphs(_QUOTE_LINE.sub("\n\n", text))):
        quotes = list(_QUOTE.finditer(paragraph))
        if not quotes:
            passages.append(Passage(paragraph, None, number))
            last_subject = _last_subject(paragraph) or last_subject
            if len(paragraph.split()) > 40:
                exchange.clear()
            continue
        speaker_here: str | None = None
        cursor = 0
        pieces: list[tuple[str, str | None]] = []  # (text, speaker) in reading order
        for index, match in enumerate(quotes):
            before = paragraph[cursor : match.start()]
            after_end = quotes[index + 1].start() if index + 1 < len(quotes) else len(paragraph)
            after = paragraph[match.end() : after_end]
            line = _as_sentence((match.group(1) or match.group(2)).strip())
            subject = _last_subject(paragraph[: match.start()]) or last_subject
            speaker = _resolve(_attribution(before, after), speaker_here, exchange, subject)
            speaker_here = speaker
            if index > 0:  # between two quotes: the tag of the one before, then this one's
                before = _drop_tag(before, is_before=False)
            narration = _drop_tag(before, is_before=True)
            if narration:
                pieces.append((narration, None))
            pieces.append((line, speaker))
            cursor = match.end()
        tail = _drop_tag(paragraph[cursor:], is_before=False)
        if tail:
            pieces.append((tail, None))
        last_subject = _last_subject(paragraph) or last_subject
        for piece, speaker in pieces:
            passages.append(Passage(piece, speaker, number, quoted=speaker is not None))
            if speaker is not None and (not exchange or exchange[-1] != speaker):
                exchange.append(speaker)
    return _merge(passages)


def _attribution(before: str, after: str) -> str | None:
    """The name or pronoun in the said-tag after the quote, else before it."""
    for pattern, text in (
        (_AFTER_NAME, after),
        (_AFTER_NAME_VERB, after),
        (_BEFORE_VERB_NAME, before),
        (_BEFORE, before),
    ):
        match = pattern.search(text)
        if match and match.group(1).lower() not in _NOT_NAMES - _PRONOUNS:
            return match.group(1)
    return None


def _resolve(
    named: str | None, speaker_here: str | None, exchange: list[str], subject: str | None
) -> str | None:
    """A name is the speaker. Otherwise the paragraph's speaker goes on; a pronoun is the last
    one named in the narration; a bare quote is the other party of the running exchange."""
    if named is not None and named.lower() not in _PRONOUNS and character_name(named):
        return character_name(named)
    if speaker_here is not None:
        return speaker_here
    if named is not None and subject is not None:
        return subject
    if len(exchange) >= 2:
        return exchange[-2]
    return exchange[-1] if exchange else None


def _last_subject(text: str) -> str | None:
    """The last name ('the Crow', 'Anna') in narration, quotes left out."""
    names = [
        match.group(1)
        for match in _SUBJECT.finditer(_QUOTE.sub(" ", text))
        if match.group(1).lower() not in _NOT_NAMES
    ]
    return character_name(names[-1]) if names else None


def _as_sentence(line: str) -> str:
    """A quoted line ends as a sentence: 'Hi,' is spoken as 'Hi.'."""
    line = line.rstrip(" ,;:—-")
    return line if line and line[-1] in ".!?…" else line + "."


def _drop_tag(fragment: str, *, is_before: bool) -> str:
    """The narration left once a said-tag at the fragment's edge is taken out."""
    text = fragment.strip()
    if is_before:
        text = _BEFORE.sub("", text).strip()
        text = _BEFORE_VERB_NAME.sub("", text).strip()
    else:
        for pattern in (_AFTER_NAME, _AFTER_NAME_VERB):
            text = pattern.sub("", text, count=1).strip()
    text = text.strip(" ,;:—-")
    tagged = text != fragment.strip(" ,;:—-")
    if not any(char.isalnum() for char in text) or (tagged and len(text.split()) <= TAG_REST_WORDS):
        return ""
    text = text[0].upper() + text[1:] if text[0].islower() else text
    return text if text[-1] in ".!?…" else text + "."


def screenplay_passages(text: str) -> list[Passage]:
    """Cued lines, narrated action, scene headings as places; no lines at all is refused."""
    passages: list[Passage] = []
    setting: str | None = None
    speaker: str | None = None
    number = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            speaker = None
            number += 1
            continue
        if HEADING.match(line):
            setting = _place(line)
            speaker = None
            continue
        if _TRANSITION.match(line) or (line.startswith("(") and line.endswith(")")):
            continue
        colon = COLON_CUE.match(line)
        if colon and is_cue(line) and character_name(colon.group(1)):
            spoken = _spoken(colon.group(3))
            if spoken:
                name = character_name(colon.group(1))
                passages.append(Passage(spoken, name, number, setting, quoted=True))
            speaker = None
            continue
        bare = BARE_CUE.match(line)
        if bare and is_cue(line) and character_name(bare.group(1)):
            speaker = character_name(bare.group(1))
            continue
        spoken = _spoken(line)
        if spoken:
            passages.append(Passage(spoken, speaker, number, setting, quoted=speaker is not None))
    if not any(passage.quoted for passage in passages):
        raise StoryInvalid("the screenplay has no lines to speak: no cue is followed by dialogue")
    return _merge(passages)


def _place(heading: str) -> str:
    """'INT. KITCHEN - NIGHT' as 'kitchen, night'."""
    body = HEADING.sub("", heading).strip(" .")
    parts = [
        part.strip(" .").lower()
        for part in re.split(r"\s+[-\u2013\u2014]\s+", body)
        if part.strip()
    ]
    return ", ".join(parts)


def _spoken(line: str) -> str:
    return " ".join(PARENTHETICAL.sub("", line).split()).strip()


def _merge(passages: list[Passage]) -> list[Passage]:
    """Consecutive passages of one voice in one paragraph become one."""
    merged: list[Passage] = []
    for passage in passages:
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.speaker == passage.speaker
            and last.paragraph == passage.paragraph
            and last.setting == passage.setting
        ):
            joined = f"{last.text} {passage.text}"
            if passage.text[:1].islower() and last.text.endswith("."):
                joined = f"{last.text[:-1]}, {passage.text}"  # a quote interrupted by its tag
            merged[-1] = Passage(
                joined,
                last.speaker,
                last.paragraph,
                last.setting,
                last.quoted or passage.quoted,
            )
        else:
            merged.append(passage)
    return merged
