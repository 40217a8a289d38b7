"""The job state machine: transitions, stage progress and settling a job's credits."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from sqlmodel import col, select

from db.migrate import upgrade
from db.models import Job, JobLog, JobStatus
from db.session import session_scope
from pipeline.errors import Conflict, IllegalTransition, NotFound
from pipeline.ledger import store
from pipeline.ledger.actor import LedgerClient, ledger_handle
from pipeline.ledger.interface import Ledger
from pipeline.ledger.rules import Balance, ReservationInfo
from pipeline.ledger.store import DatabaseLedger
from pipeline.lifecycle import TERMINAL, TRANSITIONS, can_transition, set_stage, settle, transition
from tests.ledger import assert_books_balance, make_user


@pytest.fixture(scope="module")
def jobs_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite database for the many small state machine tests."""
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('jobs')) / 'studio.db'}"
    upgrade(url)
    return url


def make_job(
    url: str,
    status: JobStatus = JobStatus.queued,
    *,
    user_id: uuid.UUID | None = None,
    reservation_id: uuid.UUID | None = None,
) -> uuid.UUID:
    with session_scope(url) as session:
        job = Job(
            user_id=user_id or make_user(url),
            type="render",
            status=status,
            reservation_id=reservation_id,
        )
        session.add(job)
    return job.id


def move(url: str, job_id: uuid.UUID, to: JobStatus, error: str | None = None) -> Job:
    with session_scope(url) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return transition(session, job, to, error=error)


def logs(url: str, job_id: uuid.UUID) -> list[tuple[str, str, str]]:
    with session_scope(url) as session:
        rows = session.exec(
            select(JobLog).where(JobLog.job_id == job_id).order_by(col(JobLog.created_at))
        ).all()
    return [(row.stage, row.level, row.message) for row in rows]


@pytest.mark.parametrize(
    ("current", "to"), list(itertools.product(JobStatus, JobStatus)), ids=lambda s: s.value
)
def test_a_transition_is_allowed_exactly_when_the_table_says(
    jobs_url: str, current: JobStatus, to: JobStatus
) -> None:
    job_id = make_job(jobs_url, current)
    if to in TRANSITIONS[current]:
        assert move(jobs_url, job_id, to).status == to
        level = "error" if to == JobStatus.failed else "info"
        assert logs(jobs_url, job_id) == [("job", level, f"{current} -> {to}")]
    else:
        with pytest.raises(IllegalTransition):
            move(jobs_url, job_id, to)
        with session_scope(jobs_url) as session:
            assert session.get(Job, job_id).status == current
        assert logs(jobs_url, job_id) == []


def test_terminal_states_lead_nowhere() -> None:
    assert {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled} == TERMINAL
    assert not any(can_transition(end, to) for end in TERMINAL for to in JobStatus)


def test_starting_stamps_started_at_once(jobs_url: str) -> None:
    job_id = make_job(jobs_url)
    started = move(jobs_url, job_id, JobStatus.running).started_at
    assert started is not None
    move(jobs_url, job_id, JobStatus.queued)
    assert move(jobs_url, job_id, JobStatus.running).started_at == started


def test_ending_stamps_completed_at_and_success_completes_progress(jobs_url: str) -> None:
    job_id = make_job(jobs_url, JobStatus.running)
    job = move(jobs_url, job_id, JobStatus.succeeded)
    assert job.completed_at is not None and job.completed_at >= job.updated_at
    assert job.progress == 100


def test_a_failure_keeps_its_reason(jobs_url: str) -> None:
    job_id = make_job(jobs_url, JobStatus.running)
    assert move(jobs_url, job_id, JobStatus.failed, error="engine died").error == "engine died"
    assert logs(jobs_url, job_id) == [("job", "error", "running -> failed: engine died")]


def test_of_two_racing_transitions_one_wins(database_url: str) -> None:
    job_id = make_job(database_url, JobStatus.running)
    with session_scope(database_url) as first, session_scope(database_url) as second:
        finishing, cancelling = first.get(Job, job_id), second.get(Job, job_id)
        assert finishing is not None and cancelling is not None
        transition(first, finishing, JobStatus.succeeded)
        first.commit()
        with pytest.raises(IllegalTransition):
            transition(second, cancelling, JobStatus.cancelled)
    with session_scope(database_url) as session:
        assert session.get(Job, job_id).status == JobStatus.succeeded


def test_stages_report_their_progress_and_the_job_the_mean(jobs_url: str) -> None:
    job_id = make_job(jobs_url, JobStatus.running)
    steps = [
        ("voice", "pending", None, 0),
        ("video", "pending", None, 0),
        ("voice", "running", 50.4, 25),
        ("voice", "running", None, 25),
        ("voice", "succeeded", None, 50),
        ("video", "cached", None, 100),
    ]
    for stage, status, progress, overall in steps:
        with session_scope(jobs_url) as session:
            job = session.get(Job, job_id)
            assert job is not None
            assert set_stage(session, job, stage, status, progress).progress == overall
    with session_scope(jobs_url) as session:
        assert session.get(Job, job_id).stages == {
            "voice": {"status": "succeeded", "progress": 100},
            "video": {"status": "cached", "progress": 100},
        }
    assert [(s, m) for s, _, m in logs(jobs_url, job_id)] == [
        ("voice", "pending"),
        ("video", "pending"),
        ("voice", "running"),
        ("voice", "succeeded"),
        ("video", "cached"),
    ]


def reserved_job(url: str, status: JobStatus, amount: int = 40) -> tuple[uuid.UUID, uuid.UUID]:
    """A user granted 100 credits and a job in `status` holding a reservation of `amount`."""
    user = make_user(url, grant=100)
    job_id = uuid.uuid4()
    reservation = store.reserve(url, user, amount, f"job:{job_id}", job_id=job_id)
    with session_scope(url) as session:
        job = Job(id=job_id, user_id=user, type="render", status=status)
        job.reservation_id = reservation.id
        session.add(job)
    return user, job_id


def settle_job(
    url: str, job_id: uuid.UUID, used_credits: int, ledger: Ledger | None = None
) -> ReservationInfo | None:
    """Settles the job in a transaction of its own, through `ledger` or, as the transaction
    that ends a job does, through a `DatabaseLedger` on that transaction."""
    with session_scope(url) as session:
        return settle(session, job_id, ledger or DatabaseLedger(session), used_credits)


def test_settling_a_success_captures_what_was_used_once(database_url: str) -> None:
    user, job_id = reserved_job(database_url, JobStatus.succeeded)
    first = settle_job(database_url, job_id, 25)
    assert first is not None and (first.captured, first.released) == (25, 15)
    assert settle_job(database_url, job_id, 30) == first
    assert store.balance(database_url, user) == Balance(available=75, held=0)
    assert_books_balance(database_url, [user])


@pytest.mark.parametrize("status", [JobStatus.failed, JobStatus.cancelled])
def test_settling_a_failure_or_cancel_releases_everything_once(
    database_url: str, status: JobStatus
) -> None:
    user, job_id = reserved_job(database_url, status)
    first = settle_job(database_url, job_id, 25)
    assert first is not None and (first.captured, first.released) == (0, 40)
    assert settle_job(database_url, job_id, 25) == first
    assert store.balance(database_url, user) == Balance(available=100, held=0)


def test_an_unfinished_job_cannot_be_settled(database_url: str) -> None:
    user, job_id = reserved_job(database_url, JobStatus.running)
    with pytest.raises(Conflict):
        settle_job(database_url, job_id, 10)
    assert store.balance(database_url, user) == Balance(available=60, held=40)


def test_a_job_without_a_reservation_settles_to_nothing(jobs_url: str) -> None:
    job_id = make_job(jobs_url, JobStatus.succeeded)
    assert settle_job(jobs_url, job_id, 10) is None


def test_settling_an_unknown_job_is_not_found(jobs_url: str) -> None:
    with pytest.raises(NotFound):
        settle_job(jobs_url, uuid.uuid4(), 10)


@pytest.fixture
def ledger_actor(postgres_url: str, ray_session: None) -> Iterator[ray.actor.ActorHandle]:
    handle = ledger_handle(postgres_url, name=f"ledger-{uuid.uuid4().hex[:8]}")
    yield handle
    ray.kill(handle)


@pytest.mark.postgres
@pytest.mark.ray
def test_settling_through_the_ledger_actor(
    postgres_url: str, ledger_actor: ray.actor.ActorHandle
) -> None:
    user, job_id = reserved_job(postgres_url, JobStatus.succeeded)
    settled = settle_job(postgres_url, job_id, 10, LedgerClient(ledger_actor))
    assert settled is not None and settled.captured == 10
    assert store.balance(postgres_url, user) == Balance(available=90, held=0)
