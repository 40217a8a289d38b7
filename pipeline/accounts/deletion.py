"""Deleting an account: the person's data goes, the money's history stays.

Removed: projects, jobs and their logs, assets and the stored objects no other user's asset
still names (storage is content-addressed, so two users can share an object), the user's own
stage-cache entries (their blobs go with the next storage collection), linked Google
identities (channel grants revoked at Google as far as it answers), refresh tokens, email
tokens, idempotency records, YouTube records and moderation flags, and the email addresses
in the user's audit entries. Kept: the ledger, the credit account and reservations, which name
the user only by id; the user row stays as that id's anchor, anonymised (tombstone email, no
name, no password, inactive), so nothing left points to a person. A user with a job still
queued, running, paused or held is refused: its reserved credits must settle first.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, col, select

from cluster.settings import Settings
from db.models import (
    Asset,
    AuditLog,
    EmailToken,
    IdempotencyRecord,
    Job,
    JobStatus,
    ModerationFlag,
    Notification,
    NotificationPreference,
    Project,
    RefreshToken,
    User,
    YoutubePlaylist,
    YoutubeVideo,
)
from db.types import utcnow
from pipeline.errors import Conflict
from pipeline.publish.google_oauth import forget_user
from pipeline.render.stage_cache import drop_scope, user_scope
from pipeline.storage import Storage

log = logging.getLogger(__name__)

UNSETTLED = (JobStatus.queued, JobStatus.running, JobStatus.paused, JobStatus.held)
TOMBSTONE_DOMAIN = "deleted.invalid"


def tombstone_email(user_id: uuid.UUID) -> str:
    """The address a deleted account keeps: unique, and never deliverable (RFC 2606)."""
    return f"deleted-{user_id.hex}@{TOMBSTONE_DOMAIN}"


def delete_account(session: Session, settings: Settings, storage: Storage, user: User) -> None:
    """Deletes the user's data and anonymises the row (one transaction), then removes the
    stored objects nothing else names. Raises `Conflict` while a job of the user is unsettled."""
    unsettled = session.exec(
        select(Job.id).where(Job.user_id == user.id, col(Job.status).in_(UNSETTLED))
    ).first()
    if unsettled is not None:
        raise Conflict("cancel your queued and running jobs before deleting the account")
    keys = _storage_keys(session, user.id)
    for table, column in (
        (YoutubeVideo, YoutubeVideo.user_id),
        (YoutubePlaylist, YoutubePlaylist.user_id),
        (ModerationFlag, ModerationFlag.user_id),
        (IdempotencyRecord, IdempotencyRecord.user_id),
        (EmailToken, EmailToken.user_id),
        (Notification, Notification.user_id),
        (NotificationPreference, NotificationPreference.user_id),
        (RefreshToken, RefreshToken.user_id),
        (Job, Job.user_id),
    ):
        _delete(session, table, column, user.id)
    counts = {
        "assets": _delete(session, Asset, Asset.owner_id, user.id),
        "projects": _delete(session, Project, Project.owner_id, user.id),
        "objects": len(keys),
    }
    forget_user(session, settings, user.id)
    _scrub_audit(session, user.id)
    user.email = tombstone_email(user.id)
    user.email_verified = False
    user.full_name = None
    user.password_hash = None
    user.is_active = False
    user.updated_at = utcnow()
    session.add(user)
    session.add(
        AuditLog(
            actor_id=user.id,
            action="user.delete",
            target_type="user",
            target_id=str(user.id),
            detail=counts,
        )
    )
    session.commit()
    _remove_objects(session, storage, keys)
    drop_scope(storage, user_scope(user.id))


def _storage_keys(session: Session, user_id: uuid.UUID) -> set[str]:
    """The keys of the user's assets and of their projects' recorded outputs."""
    keys = set(session.exec(select(Asset.storage_key).where(Asset.owner_id == user_id)).all())
    for outputs in session.exec(select(Project.outputs).where(Project.owner_id == user_id)):
        keys.update(
            item["key"]
            for item in outputs.values()
            if isinstance(item, dict) and isinstance(item.get("key"), str)
        )
    return keys


def _scrub_audit(session: Session, user_id: uuid.UUID) -> None:
    """Drops the email addresses (of linked Google accounts) from the user's audit entries."""
    for entry in session.exec(select(AuditLog).where(AuditLog.actor_id == user_id)):
        if "email" in entry.detail:
            entry.detail = {k: v for k, v in entry.detail.items() if k != "email"}
            session.add(entry)


def _delete(session: Session, table: Any, column: Any, user_id: uuid.UUID) -> int:
    result = session.exec(delete(table).where(col(column) == user_id))
    return int(result.rowcount or 0)


def _remove_objects(session: Session, storage: Storage, keys: set[str]) -> None:
    """Deletes the objects no remaining asset names; one that fails is logged and left (an
    orphan costs space, not privacy: nothing links it to anyone)."""
    shared = set(
        session.exec(select(Asset.storage_key).where(col(Asset.storage_key).in_(keys))).all()
    )
    for key in sorted(keys - shared):
        try:
            storage.delete(key)
        except Exception as error:  # any backend's failure: the account is already deleted
            log.warning("could not delete stored object %s: %r", key, error)
    session.commit()
