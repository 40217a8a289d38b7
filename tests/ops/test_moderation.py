"""Moderation: the blocklist matches whole words after normalising case, accents and leetspeak;
the classifier hook sees every text; uploads must be what they say; flags hold a job until a
reviewer approves it (the job is released) or rejects it (the job is failed)."""

from __future__ import annotations

import uuid
from pathlib import Path
from uuid import UUID

import pytest
from sqlmodel import select

from cluster.settings import ConfigError, Settings
from db.models import Job, JobStatus, ModerationFlag, ModerationStatus, User
from db.session import session_scope
from pipeline.errors import Conflict
from pipeline.jobs.moderation import (
    Finding,
    Policy,
    approve,
    check_spec_texts,
    flag_findings,
    load_policy,
    reject,
    spec_texts,
)
from pipeline.render.spec import FilmSpec

PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(16)
SEEN: list[str] = []


def recording_classifier(text: str) -> tuple[bool, str]:
    """A classifier for the policy file's import path: remembers what it saw, flags dragons."""
    SEEN.append(text)
    return "dragon" in text, "mentions a dragon"


def failing_classifier(text: str) -> tuple[bool, str]:
    raise RuntimeError("model server down")


@pytest.fixture
def policy() -> Policy:
    return Policy({"weapons": ["bomb", "pipe bomb"], "violence": ["kill"]})


def reasons(findings: list[Finding]) -> list[str]:
    return [finding.reason for finding in findings]


@pytest.mark.parametrize("text", ["a bomb", "Bomb.", "the bomb!", "(bomb)", "BOMB"])
def test_blocked_word_is_found_as_a_whole_word(policy: Policy, text: str) -> None:
    assert reasons(policy.check_text("prompt", "prompt", text)) == ["blocked term (weapons): bomb"]


@pytest.mark.parametrize("text", ["a bombastic speech", "skill and skillet", "kilo", "abomb"])
def test_blocked_word_inside_another_word_passes(policy: Policy, text: str) -> None:
    assert policy.check_text("prompt", "prompt", text) == []


@pytest.mark.parametrize(
    "text", ["b0mb", "k1ll", "K!LL", "8OMB", "bómb", "\uff42\uff4f\uff4d\uff42", "ki|l"]
)
def test_leetspeak_and_accents_are_read_as_letters(policy: Policy, text: str) -> None:
    assert policy.check_text("narration", "narration", text) != []


def test_leetspeak_does_not_invent_words(policy: Policy) -> None:
    assert policy.check_text("prompt", "prompt", "sk1ll at 4 pm, 10 b00ks") == []


def test_phrase_matches_across_any_separators(policy: Policy) -> None:
    findings = policy.check_text("prompt", "prompt", "a pipe-b0mb, pipe   bomb")
    assert "blocked term (weapons): pipe bomb" in reasons(findings)


def test_finding_quotes_the_original_text_around_the_match(policy: Policy) -> None:
    text = "x" * 100 + " then a b0mb goes off " + "y" * 100
    (finding, *_) = policy.check_text("scenes.0.narration", "narration", text)
    assert "then a b0mb goes off" in finding.excerpt
    assert len(finding.excerpt) <= 200
    assert (finding.where, finding.kind) == ("scenes.0.narration", "narration")


def test_clean_spec_passes_the_default_policy() -> None:
    spec = FilmSpec.model_validate(
        {
            "title": "The Lantern Keeper",
            "scenes": [
                {"narration": "An old keeper climbs the tower at dusk.", "prompt": "a lighthouse"},
                {
                    "narration": "Ships pass safely in the night.",
                    "prompt": "ships at sea",
                    "title": "Night",
                    "caption": "The light turns",
                },
            ],
        }
    )
    assert load_policy(None).check_spec(spec) == []


def test_spec_texts_name_every_screened_field() -> None:
    podcast = {"speakers": ["A"], "lines": [{"speaker": "A", "text": "L"}], "background": "#000000"}
    spec = FilmSpec.model_validate(
        {
            "title": "T",
            "characters": [{"name": "A", "reference": "a.png"}],
            "scenes": [
                {"narration": "N", "prompt": "P", "title": "S", "caption": "C"},
                {"podcast": podcast},
            ],
        }
    )
    assert spec_texts(spec) == [
        ("title", "T"),
        ("scenes.0.narration", "N"),
        ("scenes.0.prompt", "P"),
        ("scenes.0.title", "S"),
        ("scenes.0.caption", "C"),
        ("scenes.1.podcast.lines.0.text", "L"),
    ]


def test_spec_text_findings_take_their_kind_from_the_field(policy: Policy) -> None:
    findings = policy.check_spec_texts([("title", "kill"), ("scenes.3.prompt", "a bomb")])
    assert [(f.where, f.kind) for f in findings] == [
        ("title", "title"),
        ("scenes.3.prompt", "prompt"),
    ]


def test_policy_file_sets_terms_and_calls_the_classifier_on_every_text(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"blocked:\n  custom: [forbidden phrase]\nclassifier: {__name__}:recording_classifier\n"
    )
    policy = load_policy(path)
    SEEN.clear()
    findings = policy.check_spec_texts(
        [("title", "A dragon story"), ("scenes.0.narration", "a forbidden phrase"), ("x", "ok")]
    )
    assert SEEN == ["A dragon story", "a forbidden phrase", "ok"]
    assert reasons(findings) == [
        "classifier: mentions a dragon",
        "blocked term (custom): forbidden phrase",
    ]
    assert policy.check_text("p", "prompt", "a bomb") == []


def test_the_configured_policy_file_is_used(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("blocked:\n  custom: [moonbeam]\n")
    settings = Settings(data_dir=tmp_path, moderation_policy=path, _env_file=None)
    assert reasons(check_spec_texts([("title", "Moonbeam")], settings)) == [
        "blocked term (custom): moonbeam"
    ]


def test_failing_classifier_holds_the_text() -> None:
    policy = Policy({}, classifier=failing_classifier)
    (finding,) = policy.check_text("title", "title", "anything")
    assert "model server down" in finding.reason


def test_policy_file_with_unknown_keys_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("blocklist: [typo]\n")
    with pytest.raises(ConfigError, match="STUDIO_MODERATION_POLICY"):
        load_policy(path)


def test_policy_with_a_classifier_that_cannot_be_imported_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("classifier: no_such_module.anywhere:classify\n")
    with pytest.raises(ConfigError, match="no_such_module"):
        load_policy(path)


def test_allowed_image_upload_passes(policy: Policy) -> None:
    assert policy.check_upload("image/png", "keyframe.png", PNG_HEAD) == []


def test_upload_must_be_what_it_says(policy: Policy) -> None:
    findings = policy.check_upload("image/png", "keyframe.jpg", b"GIF89a" + bytes(20))
    assert reasons(findings) == [
        "content is image/gif, declared image/png",
        "file name says image/jpeg, declared image/png",
    ]


def test_upload_of_a_refused_type_or_name_is_reported(policy: Policy) -> None:
    findings = policy.check_upload("application/x-sh", "bomb.sh", b"#!/bin/sh\n")
    assert any(
        r.startswith("content type application/x-sh is not accepted") for r in reasons(findings)
    )
    assert "blocked term (weapons): bomb" in reasons(findings)


# -- flags and reviews -------------------------------------------------------------------------


def held_job(url: str, findings: list[Finding]) -> Job:
    with session_scope(url) as session:
        user = User(email=f"{uuid.uuid4().hex}@example.com")
        session.add(user)
        session.flush()
        job = Job(user_id=user.id, type="render", status=JobStatus.held)
        session.add(job)
        session.flush()
        flag_findings(session, job, findings)
    return job


def flags_of(url: str, job: Job) -> list[ModerationFlag]:
    with session_scope(url) as session:
        query = select(ModerationFlag).where(ModerationFlag.job_id == job.id)
        return list(session.exec(query.order_by(ModerationFlag.created_at, ModerationFlag.reason)))


FINDINGS = [
    Finding("scenes.0.prompt", "prompt", "blocked term (weapons): bomb", "a bomb"),
    Finding("title", "title", "classifier: violent", "Kill Bill"),
]


def test_flags_are_written_pending_for_the_job(database_url: str) -> None:
    job = held_job(database_url, FINDINGS)
    flags = flags_of(database_url, job)
    assert [(f.kind, f.excerpt, f.status, f.user_id) for f in flags] == [
        ("prompt", "a bomb", ModerationStatus.pending, job.user_id),
        ("title", "Kill Bill", ModerationStatus.pending, job.user_id),
    ]
    assert flags[0].reason == "scenes.0.prompt: blocked term (weapons): bomb"


def test_approving_the_last_pending_flag_releases_the_job(database_url: str) -> None:
    job = held_job(database_url, FINDINGS)
    first, second = flags_of(database_url, job)
    reviewer = uuid.uuid4()
    released: list[UUID] = []
    assert approve(database_url, first.id, reviewer, released.append).job_id is None
    assert released == []
    review = approve(database_url, second.id, reviewer, released.append)
    assert released == [job.id] and review.job_id == job.id
    assert review.flag.status == ModerationStatus.approved
    assert review.flag.reviewer_id == reviewer and review.flag.reviewed_at is not None


def test_rejecting_a_flag_rejects_the_job_and_its_other_flags(database_url: str) -> None:
    job = held_job(database_url, FINDINGS)
    first, _ = flags_of(database_url, job)
    rejected: list[tuple[UUID, str]] = []
    review = reject(
        database_url, first.id, uuid.uuid4(), "weapons", lambda j, r: rejected.append((j, r))
    )
    assert rejected == [(job.id, "weapons")] and review.job_id == job.id
    assert {f.status for f in flags_of(database_url, job)} == {ModerationStatus.rejected}


def test_a_decided_flag_cannot_be_decided_again(database_url: str) -> None:
    job = held_job(database_url, FINDINGS[:1])
    (flag,) = flags_of(database_url, job)
    calls: list[UUID] = []
    approve(database_url, flag.id, uuid.uuid4(), calls.append)
    with pytest.raises(Conflict):
        reject(database_url, flag.id, uuid.uuid4(), "late", lambda j, r: calls.append(j))
    assert calls == [job.id]
