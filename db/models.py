"""The studio's tables. API shapes live with the routers; these are rows only.

UUID keys, UTC timestamps, JSON columns (JSONB on PostgreSQL). Every schema change is an alembic
migration in db/migrations.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from db.types import JSONType, UTCDateTime, utcnow


def _id() -> uuid.UUID:
    return uuid.uuid4()


def _created() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def _when() -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=True)


def _state(default: Any = None) -> Any:
    """An enum column stored as a plain string, so migrations need no database enum types."""
    if default is None:
        return Field(sa_type=String(16))
    return Field(default=default, sa_type=String(16))


def _json(default: Any = dict) -> Any:
    return Field(default_factory=default, sa_column=Column(JSONType, nullable=False))


class Role(StrEnum):
    user = "user"
    admin = "admin"


class Plan(SQLModel, table=True):
    __tablename__ = "plans"

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    code: str = Field(unique=True, max_length=32)
    name: str = Field(max_length=64)
    monthly_credits: int
    price_cents: int
    max_resolution: int
    max_concurrent_renders: int
    rate_limit_per_minute: int
    upload_limit_mb: int
    priority: int = Field(description="higher runs first when renders wait for the same engine")
    allowed_licences: list[str] = _json(list)
    created_at: datetime = _created()


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    email: str = Field(unique=True, index=True, max_length=320)
    email_verified: bool = False
    password_hash: str | None = None
    full_name: str | None = Field(default=None, max_length=200)
    role: Role = _state(Role.user)
    is_active: bool = True
    plan_code: str = Field(default="free", foreign_key="plans.code", max_length=32)
    # Access tokens carry the version they were issued at; ending a login bumps it.
    token_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_at: datetime = _created()
    updated_at: datetime = _created()


class SubscriptionStatus(StrEnum):
    incomplete = "incomplete"
    active = "active"
    past_due = "past_due"
    canceled = "canceled"
    ended = "ended"


class Subscription(SQLModel, table=True):
    """A paid plan, mirrored from its Stripe subscription by the webhook. `ends_at` is when the
    plan ends unless an invoice is paid first: the end of the grace period after a failed
    payment, or the end of the paid period after a cancellation; the billing sweep then moves
    the user to the free plan (status `ended`)."""

    __tablename__ = "subscriptions"

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    plan_code: str = Field(foreign_key="plans.code", max_length=32)
    status: str = Field(default="active", max_length=16)
    current_period_start: datetime = _created()
    current_period_end: datetime | None = _when()
    last_grant_at: datetime | None = _when()
    created_at: datetime = _created()
    stripe_subscription_id: str | None = Field(default=None, unique=True, max_length=255)
    stripe_customer_id: str | None = Field(default=None, max_length=255)
    cancel_at_period_end: bool = False
    ends_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True, index=True)
    updated_at: datetime = _created()


class RefreshToken(SQLModel, table=True):
    """One row per issued refresh token; `family_id` ties a login's rotations together so a
    reused token can revoke the whole family."""

    __tablename__ = "refresh_tokens"

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    family_id: uuid.UUID = Field(index=True)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = _when()
    revoked_at: datetime | None = _when()
    created_at: datetime = _created()


class OAuthAccount(SQLModel, table=True):
    """A linked identity. Tokens are AES-256-GCM ciphertext (nonce || ciphertext || tag) with the
    row id as associated data; `key_id` names the key that sealed them."""

    __tablename__ = "oauth_accounts"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    provider: str = Field(max_length=32)
    subject: str = Field(max_length=255)
    email: str | None = Field(default=None, max_length=320)
    scopes: list[str] = _json(list)
    key_id: str | None = Field(default=None, max_length=32)
    access_token: bytes | None = Field(default=None, sa_type=LargeBinary)
    refresh_token: bytes | None = Field(default=None, sa_type=LargeBinary)
    expires_at: datetime | None = _when()
    created_at: datetime = _created()
    updated_at: datetime = _created()


class ProjectStatus(StrEnum):
    draft = "draft"
    rendering = "rendering"
    ready = "ready"
    failed = "failed"


class Project(SQLModel, table=True):
    __tablename__ = "projects"
    __table_args__ = (Index("ix_projects_owner_status", "owner_id", "status"),)

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    owner_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    title: str = Field(max_length=200)
    status: ProjectStatus = _state(ProjectStatus.draft)
    spec: dict[str, Any] = _json()
    outputs: dict[str, Any] = _json()
    created_at: datetime = _created()
    updated_at: datetime = _created()
    story: str | None = Field(default=None, sa_type=Text, description="The text planned from.")
    plan_style: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSONType, nullable=True)
    )


class Asset(SQLModel, table=True):
    """A stored file: an upload or a render output. `storage_key` is content-addressed."""

    __tablename__ = "assets"

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    owner_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    project_id: uuid.UUID | None = Field(
        default=None, foreign_key="projects.id", index=True, ondelete="CASCADE"
    )
    kind: str = Field(max_length=32)
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=100)
    size: int
    sha256: str = Field(max_length=64)
    storage_key: str = Field(max_length=512)
    created_at: datetime = _created()


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    paused = "paused"
    held = "held"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_priority", "status", "priority", "created_at"),
        Index("ix_jobs_user_status", "user_id", "status"),
    )

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE")
    project_id: uuid.UUID | None = Field(
        default=None, foreign_key="projects.id", index=True, ondelete="CASCADE"
    )
    type: str = Field(max_length=32)
    status: JobStatus = _state(JobStatus.queued)
    progress: int = 0
    stages: dict[str, Any] = _json()
    input: dict[str, Any] = _json()
    output: dict[str, Any] = _json()
    error: str | None = None
    warnings: list[str] = _json(list)
    priority: int = 0
    reservation_id: uuid.UUID | None = None
    cost_estimate: int = 0
    attempts: int = 0
    created_at: datetime = _created()
    started_at: datetime | None = _when()
    completed_at: datetime | None = _when()
    updated_at: datetime = _created()


class JobLog(SQLModel, table=True):
    __tablename__ = "job_logs"

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    job_id: uuid.UUID = Field(foreign_key="jobs.id", index=True, ondelete="CASCADE")
    stage: str = Field(max_length=64)
    level: str = Field(max_length=16)
    message: str
    created_at: datetime = _created()


class CreditAccount(SQLModel, table=True):
    """Cached balances, updated in the same transaction as the ledger entries that move them."""

    __tablename__ = "credit_accounts"
    __table_args__ = (
        CheckConstraint("available >= 0 AND held >= 0", name="ck_credit_accounts_non_negative"),
    )

    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    available: int = 0
    held: int = 0
    updated_at: datetime = _created()


class LedgerKind(StrEnum):
    grant = "grant"
    topup = "topup"
    reserve = "reserve"
    capture = "capture"
    release = "release"
    refund = "refund"
    adjustment = "adjustment"


class LedgerEntry(SQLModel, table=True):
    """Double entry: every transaction (`txn_id`) writes entries that sum to zero across accounts
    such as `user:<id>:available`, `user:<id>:held`, `system:grants`, `system:revenue`."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_account", "account", "created_at"),
        Index("ux_ledger_entries_key_account", "idempotency_key", "account", unique=True),
    )

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    txn_id: uuid.UUID = Field(index=True)
    account: str = Field(max_length=80)
    user_id: uuid.UUID | None = Field(default=None, index=True)
    kind: LedgerKind = _state()
    amount: int
    job_id: uuid.UUID | None = Field(default=None, index=True)
    reservation_id: uuid.UUID | None = Field(default=None, index=True)
    idempotency_key: str | None = Field(default=None, max_length=200)
    created_by: str = Field(max_length=80)
    memo: str | None = None
    created_at: datetime = _created()


class ReservationStatus(StrEnum):
    held = "held"
    captured = "captured"
    released = "released"


class Reservation(SQLModel, table=True):
    __tablename__ = "reservations"
    __table_args__ = (Index("ix_reservations_status_expires", "status", "expires_at"),)

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    job_id: uuid.UUID | None = Field(default=None, index=True)
    amount: int
    captured: int = 0
    status: ReservationStatus = _state(ReservationStatus.held)
    idempotency_key: str = Field(unique=True, max_length=200)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    created_at: datetime = _created()
    settled_at: datetime | None = _when()


class OAuthState(SQLModel, table=True):
    """A started authorization flow, consumed (deleted) by its callback: a forged `state` or a
    replayed callback finds no row. The PKCE verifier is sealed like the tokens."""

    __tablename__ = "oauth_states"

    state_hash: str = Field(primary_key=True, max_length=64)
    purpose: str = Field(max_length=16)
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="CASCADE")
    nonce: str = Field(max_length=64)
    key_id: str = Field(max_length=32)
    code_verifier: bytes = Field(sa_type=LargeBinary)
    binding_hash: str = Field(max_length=64)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    created_at: datetime = _created()


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE")
    key: str = Field(max_length=200)
    request_hash: str = Field(max_length=64)
    status_code: int | None = None
    response: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    created_at: datetime = _created()


class YoutubeVideo(SQLModel, table=True):
    __tablename__ = "youtube_videos"

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    project_id: uuid.UUID | None = Field(default=None, foreign_key="projects.id", index=True)
    job_id: uuid.UUID | None = Field(default=None, index=True)
    youtube_id: str | None = Field(default=None, max_length=32, index=True)
    title: str = Field(max_length=100)
    privacy: str = Field(default="private", max_length=16)
    status: str = Field(default="pending", max_length=32)
    processing_status: str | None = Field(default=None, max_length=32)
    upload_session_url: str | None = None
    bytes_sent: int = 0
    metadata_: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("metadata", JSONType, nullable=False)
    )
    created_at: datetime = _created()
    updated_at: datetime = _created()


class YoutubePlaylist(SQLModel, table=True):
    __tablename__ = "youtube_playlists"

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    youtube_id: str = Field(max_length=64, index=True)
    title: str = Field(max_length=150)
    privacy: str = Field(default="private", max_length=16)
    created_at: datetime = _created()


class AuditLog(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    actor_id: uuid.UUID | None = Field(default=None, index=True)
    action: str = Field(max_length=64, index=True)
    target_type: str = Field(max_length=32)
    target_id: str | None = Field(default=None, max_length=64)
    detail: dict[str, Any] = _json()
    ip: str | None = Field(default=None, max_length=64)
    created_at: datetime = _created()


class ModerationStatus(StrEnum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"


class ModerationFlag(SQLModel, table=True):
    __tablename__ = "moderation_flags"
    __table_args__ = (Index("ix_moderation_flags_status", "status", "created_at"),)

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    job_id: uuid.UUID | None = Field(default=None, index=True)
    project_id: uuid.UUID | None = Field(default=None, index=True)
    asset_id: uuid.UUID | None = None
    kind: str = Field(max_length=16)
    excerpt: str
    reason: str
    status: ModerationStatus = _state(ModerationStatus.pending)
    reviewer_id: uuid.UUID | None = None
    reviewed_at: datetime | None = _when()
    created_at: datetime = _created()


class BillingCustomer(SQLModel, table=True):
    """The Stripe customer that pays for a user (made at the user's first checkout)."""

    __tablename__ = "billing_customers"

    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    customer_id: str = Field(unique=True, max_length=255)
    created_at: datetime = _created()


class BillingEvent(SQLModel, table=True):
    """A Stripe webhook event already applied: written in the transaction that applies it, so a
    redelivered event (same id) finds its row and changes nothing."""

    __tablename__ = "billing_events"

    id: str = Field(primary_key=True, max_length=255)
    type: str = Field(max_length=100)
    outcome: str = Field(max_length=200)
    created_at: datetime = _created()


class PaymentKind(StrEnum):
    topup = "topup"
    subscription = "subscription"


class PaymentStatus(StrEnum):
    paid = "paid"
    refunded = "refunded"


class Payment(SQLModel, table=True):
    """Money received: a paid top-up Checkout Session or a paid subscription invoice, with the
    credits it granted. `stripe_id` is the payment's id in Stripe (the PaymentIntent of a
    top-up, the invoice of a subscription); it is also the ledger key of the grant. Kept for
    the books when the user is deleted (`user_id` set to null)."""

    __tablename__ = "payments"
    __table_args__ = (Index("ix_payments_user_created", "user_id", "created_at"),)

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    kind: PaymentKind = _state()
    stripe_id: str = Field(unique=True, max_length=255)
    payment_intent: str | None = Field(default=None, max_length=255)
    plan_code: str | None = Field(default=None, max_length=32)
    credits: int
    amount_cents: int
    currency: str = Field(max_length=3)
    status: PaymentStatus = _state(PaymentStatus.paid)
    period_start: datetime | None = _when()
    period_end: datetime | None = _when()
    refund_id: str | None = Field(default=None, max_length=255)
    refunded_credits: int = 0
    created_at: datetime = _created()


class EmailTokenPurpose(StrEnum):
    verify_email = "verify_email"
    reset_password = "reset_password"


class EmailToken(SQLModel, table=True):
    """A token mailed to the user (email verification, password reset). Only its sha256 is
    stored; it works once (`used_at`) and until `expires_at`, and only for the address it was
    sent to (`email`)."""

    __tablename__ = "email_tokens"
    __table_args__ = (Index("ix_email_tokens_user_purpose", "user_id", "purpose"),)

    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE")
    purpose: EmailTokenPurpose = _state()
    email: str = Field(max_length=320)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    used_at: datetime | None = _when()
    created_at: datetime = _created()


class NotificationPreference(SQLModel, table=True):
    """How a user is told that a job ended: a webhook (signed with `webhook_secret`, made at
    registration and shown once) and/or an email."""

    __tablename__ = "notification_preferences"

    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    webhook_url: str | None = Field(default=None, max_length=2048)
    webhook_secret: str | None = Field(default=None, max_length=64)
    email: bool = False
    updated_at: datetime = _created()


class NotificationChannel(StrEnum):
    webhook = "webhook"
    email = "email"


class NotificationState(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class Notification(SQLModel, table=True):
    """One message to send about a job's end on one channel, queued in the transaction that
    ends the job and sent after it (`pipeline.notify.outbox.deliver_due`)."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_state_due", "state", "next_attempt_at"),)

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    job_id: uuid.UUID = Field(foreign_key="jobs.id", index=True, ondelete="CASCADE")
    channel: NotificationChannel = _state()
    event: JobStatus = _state()
    state: NotificationState = _state(NotificationState.pending)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_at: datetime = _created()


class NotificationDelivery(SQLModel, table=True):
    """One attempt at sending a notification: the receiver's status code or the error."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (Index("ix_notification_deliveries_user_created", "user_id", "created_at"),)

    id: uuid.UUID = Field(default_factory=_id, primary_key=True)
    notification_id: uuid.UUID = Field(
        foreign_key="notifications.id", index=True, ondelete="CASCADE"
    )
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE")
    attempt: int
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=255)
    created_at: datetime = _created()
