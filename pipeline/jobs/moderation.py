"""Content moderation: a configurable policy that screens a film's texts and uploads, and the
review flow for what it flags.

A policy is a blocklist of words and phrases by category, matched on whole words after a simple
normalisation (case, accents, leetspeak: `b0mb` reads as `bomb`, `bombastic` is not `bomb`),
plus an optional classifier: any callable `(text) -> (flagged, reason)` named by import path.
Operators write it as YAML (`STUDIO_MODERATION_POLICY`):

    blocked:
      weapons: [pipe bomb, how to make a bomb]
    classifier: mypackage.safety:classify   # optional
    upload_types: [image/png, image/jpeg, image/webp]

A flagged job is held (by its caller) until a reviewer approves it (the job runs) or rejects it
(the job fails and its credits are released); both decisions reach the job through callbacks,
so this module needs neither the job state machine nor the ledger.
"""

from __future__ import annotations

import logging
import mimetypes
import pkgutil
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from uuid import UUID

import filetype
import yaml
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from cluster.settings import ConfigError, Settings, get_settings
from db.models import Job, ModerationFlag, ModerationStatus
from db.session import session_scope
from db.types import utcnow
from pipeline.errors import Conflict, NotFound
from pipeline.render.spec import FilmSpec

logger = logging.getLogger(__name__)

Classifier = Callable[[str], tuple[bool, str]]

DEFAULT_BLOCKED: dict[str, list[str]] = {
    "sexual-minors": ["child porn", "underage sex", "loli porn"],
    "extremism": ["beheading video", "join isis", "white genocide"],
    "weapons": ["how to make a bomb", "pipe bomb instructions", "nerve agent recipe"],
    "self-harm": ["how to kill myself", "suicide method"],
}
DEFAULT_UPLOAD_TYPES = ["image/png", "image/jpeg", "image/webp"]
POLICY_SETTING = "STUDIO_MODERATION_POLICY"
EXCERPT_CONTEXT = 40
MAX_EXCERPT = 200

_TYPE_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
}
_LEET_DIGITS = str.maketrans("0345789", "oeastbg")
_LEET_SYMBOLS = str.maketrans("@$!+|", "asitl")


@dataclass(frozen=True)
class Finding:
    """One reason to hold content for review. `kind` becomes `ModerationFlag.kind`."""

    where: str
    kind: str
    reason: str
    excerpt: str


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    blocked: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_BLOCKED))
    classifier: str | None = Field(
        default=None, description="import path of a `(text) -> (flagged, reason)` callable"
    )
    upload_types: list[str] = Field(default_factory=lambda: list(DEFAULT_UPLOAD_TYPES))


@dataclass(frozen=True)
class _Term:
    category: str
    text: str
    pattern: re.Pattern[str]


class Policy:
    def __init__(
        self,
        blocked: Mapping[str, Iterable[str]],
        classifier: Classifier | None = None,
        upload_types: Iterable[str] = DEFAULT_UPLOAD_TYPES,
    ) -> None:
        self.classifier = classifier
        self.upload_types = frozenset(_canonical_type(t) for t in upload_types)
        self._terms = [
            _Term(category, term, _term_pattern(term))
            for category, terms in blocked.items()
            for term in terms
            if term.strip()
        ]

    def check_text(self, where: str, kind: str, text: str) -> list[Finding]:
        """Blocklist hits (one per term) and the classifier's verdict on one text."""
        findings = []
        variants = _variants(text)
        for term in self._terms:
            start = _first_match(term.pattern, variants)
            if start is not None:
                reason = f"blocked term ({term.category}): {term.text}"
                findings.append(Finding(where, kind, reason, excerpt(text, *start)))
        if self.classifier is not None:
            flagged, reason = self._classify(text)
            if flagged:
                findings.append(Finding(where, kind, f"classifier: {reason}", excerpt(text)))
        return findings

    def check_spec_texts(self, texts: Iterable[tuple[str, str]]) -> list[Finding]:
        """Screens `(where, text)` pairs such as `spec_texts(spec)` gives; the kind of each
        finding is the last part of `where` (`scenes.2.narration` → `narration`)."""
        findings = []
        for where, text in texts:
            findings += self.check_text(where, where.rsplit(".", 1)[-1], text)
        return findings

    def check_spec(self, spec: FilmSpec) -> list[Finding]:
        return self.check_spec_texts(spec_texts(spec))

    def check_upload(self, content_type: str, filename: str, head: bytes) -> list[Finding]:
        """Screens an upload from its declared type, its name and its first bytes (a few KiB):
        the type must be allowed and agree with both the content and the file's extension, and
        the name must pass the blocklist. Callers refuse an upload with findings."""
        declared = _canonical_type(content_type)
        findings = []
        if declared not in self.upload_types:
            allowed = ", ".join(sorted(self.upload_types))
            reason = f"content type {declared or 'none'} is not accepted ({allowed})"
            findings.append(Finding("upload.content_type", "upload", reason, content_type))
        sniffed = filetype.guess(head)
        actual = _canonical_type(sniffed.mime) if sniffed else "unknown"
        if actual != declared:
            reason = f"content is {actual}, declared {declared or 'none'}"
            findings.append(Finding("upload.content", "upload", reason, filename))
        by_name = mimetypes.guess_type(filename)[0]
        if by_name is not None and _canonical_type(by_name) != declared:
            reason = f"file name says {by_name}, declared {declared or 'none'}"
            findings.append(Finding("upload.filename", "upload", reason, filename))
        return findings + self.check_text("upload.filename", "upload", filename)

    def _classify(self, text: str) -> tuple[bool, str]:
        """Runs the classifier; one that fails holds the content rather than passing it."""
        assert self.classifier is not None
        try:
            flagged, reason = self.classifier(text)
        except Exception as error:  # any classifier failure must hold the text for a human
            logger.exception("moderation classifier failed")
            return True, f"failed ({type(error).__name__}: {error}), held for review"
        return bool(flagged), str(reason)


def load_policy(path: Path | None) -> Policy:
    """The policy in a YAML file, or the defaults when `path` is None; ConfigError (naming
    STUDIO_MODERATION_POLICY) when the file or its classifier cannot be used."""
    try:
        data = (
            PolicyFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
            if path is not None
            else PolicyFile()
        )
        classifier = pkgutil.resolve_name(data.classifier) if data.classifier else None
    except (OSError, yaml.YAMLError, ValueError, ImportError, AttributeError) as error:
        raise ConfigError(POLICY_SETTING, f"{path}: {error}") from error
    if classifier is not None and not callable(classifier):
        raise ConfigError(POLICY_SETTING, f"classifier {data.classifier} is not callable")
    return Policy(data.blocked, classifier, data.upload_types)


def policy_for(settings: Settings) -> Policy:
    """The configured policy, read once per process."""
    return _cached_policy(settings.moderation_policy)


@lru_cache(maxsize=4)
def _cached_policy(path: Path | None) -> Policy:
    return load_policy(path)


def spec_texts(spec: FilmSpec) -> list[tuple[str, str]]:
    """Every text of a spec that reaches the screen or the voice, as `(where, text)`."""
    texts = [("title", spec.title)]
    for i, scene in enumerate(spec.scenes):
        for field in ("narration", "prompt", "title", "caption"):
            value = getattr(scene, field)
            if value:
                texts.append((f"scenes.{i}.{field}", value))
        for j, line in enumerate(scene.podcast.lines if scene.podcast else ()):
            texts.append((f"scenes.{i}.podcast.lines.{j}.text", line.text))
    return texts


def normalise(text: str, one: str = "i", symbols: bool = True) -> str:
    """Case-folded text with accents dropped from Latin letters and leetspeak read as letters:
    digits (`1` as `one`) and, when `symbols`, `@$!+|`; other scripts are kept as they are."""
    return _normalised(text, one, symbols)[0]


def excerpt(text: str, start: int = 0, end: int = 0) -> str:
    """The text around `text[start:end]`, at most MAX_EXCERPT characters."""
    lo = max(0, start - EXCERPT_CONTEXT)
    hi = min(len(text), max(end + EXCERPT_CONTEXT, lo + MAX_EXCERPT // 2))
    return text[lo:hi][:MAX_EXCERPT]


def check_spec_texts(
    texts: Iterable[tuple[str, str]], settings: Settings | None = None
) -> list[Finding]:
    """`Policy.check_spec_texts` under the configured policy (of `settings`, else of the
    process's environment)."""
    return policy_for(settings or get_settings()).check_spec_texts(texts)


def flag_findings(session: Session, job: Job, findings: Sequence[Finding]) -> list[ModerationFlag]:
    """Adds one pending flag per finding to the caller's transaction, the one that holds the job."""
    flags = [
        ModerationFlag(
            user_id=job.user_id,
            job_id=job.id,
            project_id=job.project_id,
            kind=finding.kind[:16],
            excerpt=finding.excerpt,
            reason=f"{finding.where}: {finding.reason}",
        )
        for finding in findings
    ]
    session.add_all(flags)
    return flags


@dataclass(frozen=True)
class Review:
    """A decided flag; `job_id` is the job the decision was passed on to, if any."""

    flag: ModerationFlag
    job_id: UUID | None


def approve(
    database_url: str, flag_id: UUID, reviewer_id: UUID, on_release: Callable[[UUID], Any]
) -> Review:
    """Approves a pending flag. When it was the last pending flag of its job, `on_release(job_id)`
    is called after the decision is committed (it opens its own transaction)."""
    with session_scope(database_url) as session:
        decided, others = _decide(session, flag_id, reviewer_id, ModerationStatus.approved)
    job_id = decided.job_id if not others else None
    if job_id is not None:
        on_release(job_id)
    return Review(decided, job_id)


def reject(
    database_url: str,
    flag_id: UUID,
    reviewer_id: UUID,
    reason: str,
    on_reject: Callable[[UUID, str], Any],
) -> Review:
    """Rejects a pending flag and every other pending flag of its job, then, after the decision
    is committed, calls `on_reject(job_id, reason)`: the caller fails the job and releases its
    credits."""
    with session_scope(database_url) as session:
        decided, others = _decide(session, flag_id, reviewer_id, ModerationStatus.rejected)
        for other in others:
            _mark(other, reviewer_id, ModerationStatus.rejected)
    if decided.job_id is not None:
        on_reject(decided.job_id, reason)
    return Review(decided, decided.job_id)


def _decide(
    session: Session, flag_id: UUID, reviewer_id: UUID, status: ModerationStatus
) -> tuple[ModerationFlag, list[ModerationFlag]]:
    """Marks a pending flag decided; returns it and its job's other pending flags. All of them
    are locked in id order first, so two reviewers deciding flags of one job wait for each
    other instead of deadlocking or both missing the last one."""
    found = session.get(ModerationFlag, flag_id)
    if found is None:
        raise NotFound(f"moderation flag {flag_id} does not exist")
    same = (
        col(ModerationFlag.id) == flag_id
        if found.job_id is None
        else col(ModerationFlag.job_id) == found.job_id
    )
    query = (
        select(ModerationFlag)
        .where(same, col(ModerationFlag.status) == ModerationStatus.pending)
        .order_by(col(ModerationFlag.id))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    pending = list(session.exec(query).all())
    if found not in pending:
        raise Conflict(f"moderation flag {flag_id} is already {found.status}")
    _mark(found, reviewer_id, status)
    return found, [other for other in pending if other is not found]


def _mark(flag: ModerationFlag, reviewer_id: UUID, status: ModerationStatus) -> None:
    flag.status = status
    flag.reviewer_id = reviewer_id
    flag.reviewed_at = utcnow()


def _term_pattern(term: str) -> re.Pattern[str]:
    """Whole words of the normalised term, any run of separators between them; a lookahead so
    that overlapping candidates are all tried against the word boundaries."""
    words = normalise(term).split()
    return re.compile("(?=(" + r"[\W_]+".join(re.escape(w) for w in words) + "))")


def _first_match(
    pattern: re.Pattern[str], variants: Sequence[tuple[str, list[int]]]
) -> tuple[int, int] | None:
    """(start, end) in the original text of the first whole-word match in any variant."""
    for text, origin in variants:
        for match in pattern.finditer(text):
            start, end = match.span(1)
            if not _is_word_char(text, start - 1) and not _is_word_char(text, end):
                return origin[start], origin[end - 1] + 1
    return None


def _is_word_char(text: str, i: int) -> bool:
    if i < 0 or i >= len(text):
        return False
    char = text[i]
    return char.isalnum() or char == "_" or unicodedata.category(char).startswith("M")


def _variants(text: str) -> list[tuple[str, list[int]]]:
    """The readings of a text worth matching: `1` as `i` and as `l`, and symbols both as
    letters (`k!ll`) and as punctuation (`bomb!`), where the text has them."""
    ones = ("i", "l") if "1" in text else ("i",)
    symbols = (True, False) if text != text.translate(_LEET_SYMBOLS) else (False,)
    return [_normalised(text, one, symbol) for one in ones for symbol in symbols]


def _normalised(text: str, one: str, symbols: bool) -> tuple[str, list[int]]:
    """The normalised text and, for each of its characters, the index it came from."""
    chars: list[str] = []
    origin: list[int] = []
    for i, char in enumerate(text):
        base = "".join(
            c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
        )
        if not base.isascii():
            base = char
        base = base.casefold().translate(_LEET_DIGITS).replace("1", one)
        if symbols:
            base = base.translate(_LEET_SYMBOLS)
        chars.extend(base)
        origin.extend([i] * len(base))
    return "".join(chars), origin


def _canonical_type(content_type: str) -> str:
    mime = content_type.split(";", 1)[0].strip().lower()
    return _TYPE_ALIASES.get(mime, mime)
