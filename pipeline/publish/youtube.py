"""The YouTube Data API v3 through google-api-python-client, with its static discovery document.

Uploads use the resumable protocol in chunks (multiples of 256 KiB, as YouTube requires). The
session URI and the bytes YouTube acknowledged go to `on_progress` after every chunk and every
failure, so a caller can persist them; `upload_video(resume_uri=...)` continues such a session
in a new process: it asks YouTube how much it holds (an empty `PUT` with
`Content-Range: bytes */TOTAL`) and sends only the rest. Within one call, a cut connection or a
5xx is retried with exponential backoff and jitter; googleapiclient then queries the session the
same way before sending the next chunk.

`quotaExceeded` is not retried: it raises `QuotaExceeded`, whose `retry_at` is when the daily
quota resets (midnight Pacific time) unless a fixed delay is configured. Retries that run out
raise `YoutubeUnavailable`, also with a `retry_at`.
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import mimetypes
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httplib2
from google.auth.credentials import Credentials
from google.auth.exceptions import RefreshError, TransportError
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest, MediaFileUpload

from cluster.errors import StudioError
from cluster.settings import Settings
from db.types import utcnow
from pipeline.publish.sealing import redact_token_logs

log = logging.getLogger(__name__)
T = TypeVar("T")

UPLOAD_GRANULARITY = 256 * 1024
PACIFIC = ZoneInfo("America/Los_Angeles")
QUOTA_REASONS = {"quotaExceeded", "dailyLimitExceeded"}
RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
TRANSIENT = (OSError, http.client.HTTPException, httplib2.HttpLib2Error, TransportError)
LIST_PAGE = 50

redact_token_logs()


class RetryLater(StudioError):
    """YouTube cannot take the request now; `retry_at` says when to try again."""

    slug, status, title = "retry-later", 503, "Try again later"

    def __init__(self, detail: str, retry_at: datetime) -> None:
        super().__init__(detail, retry_at=retry_at.isoformat())
        self.retry_at = retry_at


class QuotaExceeded(RetryLater):
    slug, status, title = "youtube-quota-exceeded", 429, "YouTube quota exceeded"


class YoutubeUnavailable(RetryLater):
    slug, status, title = "youtube-unavailable", 503, "YouTube unavailable"


class YoutubeRefused(StudioError):
    slug, status, title = "youtube-refused", 502, "YouTube refused the request"


@dataclass(frozen=True)
class UploadOptions:
    """How uploads are cut and retried. `quota_retry_delay_s` None means: retry when the daily
    quota resets at midnight Pacific time."""

    chunk_size: int = 32 * UPLOAD_GRANULARITY
    max_retries: int = 6
    backoff_s: float = 1.0
    max_backoff_s: float = 64.0
    quota_retry_delay_s: float | None = None
    unavailable_retry_delay_s: float = 300.0

    def __post_init__(self) -> None:
        if self.chunk_size <= 0 or self.chunk_size % UPLOAD_GRANULARITY:
            raise ValueError("chunk_size must be a positive multiple of 256 KiB")


@dataclass(frozen=True)
class VideoMetadata:
    title: str
    description: str = ""
    tags: list[str] = field(default_factory=list)
    category_id: str = "22"
    privacy_status: str = "private"
    made_for_kids: bool = False
    contains_synthetic_media: bool = False

    def body(self) -> dict[str, Any]:
        return {
            "snippet": {
                "title": self.title,
                "description": self.description,
                "tags": self.tags,
                "categoryId": self.category_id,
            },
            "status": {
                "privacyStatus": self.privacy_status,
                "selfDeclaredMadeForKids": self.made_for_kids,
                "containsSyntheticMedia": self.contains_synthetic_media,
            },
        }


@dataclass(frozen=True)
class UploadProgress:
    session_uri: str | None
    bytes_sent: int
    total: int


def next_quota_reset(now: datetime) -> datetime:
    """The next midnight in Pacific time (when YouTube's daily quota resets), in UTC."""
    tomorrow = now.astimezone(PACIFIC).date() + timedelta(days=1)
    return datetime.combine(tomorrow, clock(0), tzinfo=PACIFIC).astimezone(UTC)


class YouTube:
    """One channel's API client; not thread-safe (httplib2), so one per job."""

    def __init__(
        self, settings: Settings, credentials: Credentials, options: UploadOptions | None = None
    ) -> None:
        endpoint = settings.youtube_api_url.rstrip("/") + "/"
        self.options = options or UploadOptions()
        self._service = build(
            "youtube",
            "v3",
            credentials=credentials,
            static_discovery=True,
            client_options={"api_endpoint": endpoint},
            requestBuilder=_request_builder(endpoint),
        )

    def __enter__(self) -> YouTube:
        return self

    def __exit__(self, *_: object) -> None:
        self._service.close()

    def upload_video(
        self,
        path: Path,
        metadata: VideoMetadata,
        on_progress: Callable[[UploadProgress], None],
        resume_uri: str | None = None,
    ) -> dict[str, Any]:
        """Uploads the file (or the rest of it, continuing `resume_uri`) and returns the video
        resource YouTube created."""
        mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        media = MediaFileUpload(
            str(path), mimetype=mimetype, chunksize=self.options.chunk_size, resumable=True
        )
        request = self._service.videos().insert(
            part="snippet,status", body=metadata.body(), media_body=media
        )
        total = media.size()
        if resume_uri is not None:
            finished = self._attempt(lambda: _continue_session(request, resume_uri, total))
            if finished is not None:
                return finished

        def send_chunk() -> dict[str, Any] | None:
            try:
                _, done = request.next_chunk()
            finally:
                on_progress(
                    UploadProgress(request.resumable_uri, request.resumable_progress, total)
                )
            return done  # type: ignore[no-any-return]

        response = None
        while response is None:
            response = self._attempt(send_chunk)
        on_progress(UploadProgress(request.resumable_uri, total, total))
        return response

    def set_thumbnail(self, video_id: str, path: Path) -> None:
        mimetype = mimetypes.guess_type(path.name)[0] or "image/png"
        self._attempt(
            lambda: (
                self._service.thumbnails()
                .set(videoId=video_id, media_body=MediaFileUpload(str(path), mimetype=mimetype))
                .execute()
            )
        )

    def insert_caption(self, video_id: str, path: Path, language: str, name: str) -> dict[str, Any]:
        body = {"snippet": {"videoId": video_id, "language": language, "name": name}}
        return self._attempt(
            lambda: (
                self._service.captions()
                .insert(
                    part="snippet",
                    body=body,
                    media_body=MediaFileUpload(str(path), mimetype="application/octet-stream"),
                )
                .execute()
            )
        )

    def create_playlist(self, title: str, description: str, privacy: str) -> dict[str, Any]:
        body = {
            "snippet": {"title": title, "description": description},
            "status": {"privacyStatus": privacy},
        }
        return self._attempt(
            lambda: self._service.playlists().insert(part="snippet,status", body=body).execute()
        )

    def add_to_playlist(self, playlist_id: str, video_id: str) -> dict[str, Any]:
        body = {
            "snippet": {
                "playlistId": playlist_id,
                "resourceId": {"kind": "youtube#video", "videoId": video_id},
            }
        }
        return self._attempt(
            lambda: self._service.playlistItems().insert(part="snippet", body=body).execute()
        )

    def videos(self, ids: list[str]) -> list[dict[str, Any]]:
        """The videos with these ids (those still visible to the channel), with their upload
        and processing status."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), LIST_PAGE):
            page = ",".join(ids[start : start + LIST_PAGE])
            answer = self._attempt(
                lambda page=page: (
                    self._service.videos()  # type: ignore[misc]
                    .list(part="status,processingDetails,snippet", id=page, maxResults=LIST_PAGE)
                    .execute()
                )
            )
            found.extend(answer.get("items", []))
        return found

    def _attempt(self, call: Callable[[], T]) -> T:
        """Runs `call`, retrying 5xx, 429, rate limits and broken connections with exponential
        backoff and jitter; quota and other refusals raise at once."""
        for attempt in itertools.count():
            try:
                return call()
            except HttpError as error:
                status, reasons = error.resp.status, _reasons(error)
                if reasons & QUOTA_REASONS:
                    raise QuotaExceeded(
                        "YouTube's daily API quota is spent", self._quota_retry_at()
                    ) from None
                if status < 500 and status != 429 and not reasons & RATE_REASONS:
                    raise YoutubeRefused(f"YouTube answered {status}: {_message(error)}") from None
                failure = f"YouTube answered {status}"
            except RefreshError as error:
                if not error.retryable:
                    detail = f"Google refused to refresh the token: {error.args[0]}"
                    raise YoutubeRefused(detail) from None
                failure = "Google's token endpoint failed"
            except TRANSIENT as error:
                failure = f"the connection to YouTube failed ({type(error).__name__})"
            if attempt >= self.options.max_retries:
                retry_at = utcnow() + timedelta(seconds=self.options.unavailable_retry_delay_s)
                raise YoutubeUnavailable(f"{failure}, {attempt + 1} times", retry_at)
            delay = min(self.options.max_backoff_s, self.options.backoff_s * 2**attempt)
            delay *= 0.5 + random.random() / 2
            log.warning("%s; retrying in %.2f s", failure, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _quota_retry_at(self) -> datetime:
        if self.options.quota_retry_delay_s is not None:
            return utcnow() + timedelta(seconds=self.options.quota_retry_delay_s)
        return next_quota_reset(utcnow())


def _continue_session(request: HttpRequest, uri: str, total: int) -> dict[str, Any] | None:
    """Points `request` at an earlier upload session, at the offset YouTube reports for it.
    Returns the video when that session had already finished; a session YouTube no longer
    knows (expired) leaves `request` to start a new one."""
    headers = {"Content-Range": f"bytes */{total}", "Content-Length": "0"}
    resp, content = request.http.request(uri, "PUT", headers=headers)
    if resp.status in (200, 201):
        return json.loads(content)  # type: ignore[no-any-return]
    if resp.status in (404, 410):
        log.info("upload session expired; starting a new one")
        return None
    if resp.status != 308:
        raise HttpError(resp, content, uri=uri)
    request.resumable_uri = uri
    received = resp.get("range")
    request.resumable_progress = int(received.rsplit("-", 1)[1]) + 1 if received else 0
    return None


def _request_builder(endpoint: str) -> Callable[..., HttpRequest]:
    """googleapiclient 2.202 makes media URLs from the static document's rootUrl
    (`https://youtube.googleapis.com/upload/...`) and replaces only their host with
    `api_endpoint`'s (`discovery._fix_up_media_path_base_url`), keeping `https`. Giving every
    request the endpoint's scheme as well lets uploads reach a plain-HTTP endpoint too; for
    Google's own endpoint it changes nothing."""
    scheme = urlsplit(endpoint).scheme

    def build_request(http: Any, postproc: Any, uri: str, **kwargs: Any) -> HttpRequest:
        return HttpRequest(http, postproc, urlsplit(uri)._replace(scheme=scheme).geturl(), **kwargs)

    return build_request


def _error_body(error: HttpError) -> dict[str, Any]:
    try:
        body = json.loads(error.content)
    except (ValueError, TypeError):
        return {}
    inner = body.get("error") if isinstance(body, dict) else None
    return inner if isinstance(inner, dict) else {}


def _reasons(error: HttpError) -> set[str]:
    items = _error_body(error).get("errors") or []
    return {str(item.get("reason")) for item in items if isinstance(item, dict)}


def _message(error: HttpError) -> str:
    return str(_error_body(error).get("message") or error.resp.reason)[:300]
