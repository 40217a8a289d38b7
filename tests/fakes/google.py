"""A local Google: the OAuth 2.0 / OpenID Connect endpoints and the parts of the YouTube Data
API v3 the studio uses, speaking their wire protocol so the real client libraries run against it.

It is a stdlib `ThreadingHTTPServer` rather than an ASGI app because it must be able to read half
a request body and then reset the connection (SO_LINGER 0), as a network failure does; ASGI has
no way to express that. Everything it issues is recorded in `secrets`, every request in `calls`.

What tests can make it do: `fail` (answer a status, e.g. 503, the next N times), `quota_exceeded`
(YouTube's real 403 `quotaExceeded` body), `cut_upload` (reset the connection at a byte offset of
a resumable upload), `expire_access_tokens`, `revoke`, `id_token_claims` (override claims of the
next ID tokens), `sign_with_foreign_key`, `account` (who "signs in" at the consent screen) and
`granted_scopes` (what that person grants).
"""

from __future__ import annotations

import base64
import email
import hashlib
import json
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

CHUNK_GRANULARITY = 256 * 1024
ISSUER = "https://accounts.google.com"
_YT = "https://www.googleapis.com/auth/youtube"
# Who may call what, as the v3 discovery document lists it.
UPLOAD_SCOPES = (_YT, f"{_YT}.force-ssl", f"{_YT}.upload", f"{_YT}partner")
CAPTION_SCOPES = (f"{_YT}.force-ssl", f"{_YT}partner")
MANAGE_SCOPES = (_YT, f"{_YT}.force-ssl", f"{_YT}partner")
READ_SCOPES = (_YT, f"{_YT}.force-ssl", f"{_YT}.readonly", f"{_YT}partner")
QUOTA_MESSAGE = (
    "The request cannot be completed because you have exceeded your "
    '<a href="/youtube/v3/getting-started#quota">quota</a>.'
)


@dataclass
class GoogleAccount:
    """Someone with a Google account: new for every fake, so databases shared between tests
    never see the same person twice by accident."""

    sub: str = field(default_factory=lambda: str(secrets.randbelow(10**21) + 10**20))
    email: str = field(default_factory=lambda: f"ada.{secrets.token_hex(4)}@example.com")
    email_verified: bool = True
    name: str = "Ada Lovelace"


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    content_range: str | None = None
    form: dict[str, str] = field(default_factory=dict)


@dataclass
class _Code:
    redirect_uri: str
    scopes: list[str]
    challenge: str | None
    nonce: str | None
    offline: bool
    account: GoogleAccount
    issued: float
    used: bool = False


@dataclass
class _Grant:
    """What a refresh token stands for; its access tokens die with it."""

    account: GoogleAccount
    scopes: list[str]
    nonce: str | None
    revoked: bool = False


@dataclass
class UploadSession:
    id: str
    account: GoogleAccount
    metadata: dict[str, Any]
    total: int
    data: bytearray = field(default_factory=bytearray)
    received: int = 0
    chunks: int = 0
    video_id: str | None = None


class _Failure:
    def __init__(self, method: str, path: str, status: int, times: int) -> None:
        self.method, self.path, self.status, self.times = method, path, status, times


class FakeGoogle:
    def __init__(self) -> None:
        self.client_id = "studio-test.apps.googleusercontent.com"
        self.client_secret = "GOCSPX-" + secrets.token_urlsafe(18)
        self.account = GoogleAccount()
        self.granted_scopes: list[str] | None = None
        self.id_token_claims: dict[str, Any] = {}
        self.sign_with_foreign_key = False
        self.quota_exceeded = False
        self.calls: list[Call] = []
        self.secrets: list[str] = [self.client_secret]
        self.sessions: dict[str, UploadSession] = {}
        self.videos: dict[str, dict[str, Any]] = {}
        self.thumbnails: dict[str, bytes] = {}
        self.captions: list[dict[str, Any]] = []
        self.playlists: dict[str, dict[str, Any]] = {}
        self.playlist_items: list[dict[str, Any]] = []
        self.kid = secrets.token_hex(8)
        self._key, self._foreign_key = _signing_keys()
        self._codes: dict[str, _Code] = {}
        self._grants: dict[str, _Grant] = {}
        self._access: dict[str, tuple[_Grant | None, GoogleAccount, list[str], bool]] = {}
        self._failures: list[_Failure] = []
        self._cut: tuple[int, int] | None = None
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[FakeGoogle]:
        fake = cls()
        thread = threading.Thread(target=fake._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield fake
        finally:
            fake._server.shutdown()
            fake._server.server_close()
            thread.join(5)

    # -- what tests change ------------------------------------------------------------------

    def fail(self, method: str, path: str, status: int = 503, times: int = 1) -> None:
        """The next `times` requests `method path...` are answered `status` (body drained)."""
        with self._lock:
            self._failures.append(_Failure(method, path, status, times))

    def cut_upload(self, at_byte: int, times: int = 1) -> None:
        """The next `times` upload chunks that reach byte `at_byte` of their file are read up to
        it, then the connection is reset. Bytes read before the cut are kept, as Google does."""
        with self._lock:
            self._cut = (at_byte, times)

    def expire_access_tokens(self) -> None:
        with self._lock:
            for token, (grant, account, scopes, _) in self._access.items():
                self._access[token] = (grant, account, scopes, True)

    def revoke(self, refresh_token: str) -> None:
        with self._lock:
            self._grants[refresh_token].revoked = True

    def finish_processing(self, video_id: str) -> None:
        with self._lock:
            self.videos[video_id]["processing"] = "succeeded"
            self.videos[video_id]["status"]["uploadStatus"] = "processed"

    # -- what tests read --------------------------------------------------------------------

    def calls_to(self, method: str, path: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.startswith(path)]

    def refresh_tokens(self) -> list[str]:
        return list(self._grants)

    def access_tokens(self) -> list[str]:
        return list(self._access)

    def is_revoked(self, refresh_token: str) -> bool:
        return self._grants[refresh_token].revoked

    def authorize(self, authorization_url: str) -> tuple[str, str]:
        """The user's browser at the consent screen: returns (code, state) from the redirect."""
        response = httpx.get(authorization_url, follow_redirects=False, timeout=10)
        assert response.status_code == 302, response.text
        query = parse_qs(urlsplit(response.headers["location"]).query)
        return query["code"][0], query["state"][0]

    # -- tokens -----------------------------------------------------------------------------

    def _issue(self, value: str) -> str:
        self.secrets.append(value)
        return value

    def _id_token(self, account: GoogleAccount, nonce: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "azp": self.client_id,
            "aud": self.client_id,
            "sub": account.sub,
            "email": account.email,
            "email_verified": account.email_verified,
            "name": account.name,
            "iat": now,
            "exp": now + 3600,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        claims.update(self.id_token_claims)
        key = self._foreign_key if self.sign_with_foreign_key else self._key
        return self._issue(jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid}))

    def jwks(self) -> dict[str, Any]:
        public = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.kid, "alg": "RS256", "use": "sig"}]}


@cache
def _signing_keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """Google's key and an impostor's, made once per test process (RSA generation is slow)."""
    return tuple(  # type: ignore[return-value]
        rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)
    )


def google_error(status: int, message: str, reason: str, domain: str = "global") -> dict[str, Any]:
    """Google's JSON error body (googleapis `error.errors[].reason`)."""
    names = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
             404: "NOT_FOUND", 500: "INTERNAL", 503: "UNAVAILABLE"}  # fmt: skip
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
            "status": names.get(status, "UNKNOWN"),
        }
    }


class _Reset(Exception):
    """The handler reset the connection: nothing more is sent."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    @property
    def fake(self) -> FakeGoogle:
        return self.server.fake  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read `calls`."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # -- plumbing ---------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.url_path = url.path
        self.query = {k: v[0] for k, v in parse_qs(url.query).items()}
        routes = {
            ("GET", "/o/oauth2/v2/auth"): self._authorize,
            ("POST", "/token"): self._token,
            ("POST", "/revoke"): self._revoke,
            ("GET", "/oauth2/v3/certs"): self._certs,
            ("POST", "/upload/youtube/v3/videos"): self._start_upload,
            ("PUT", "/upload/youtube/v3/videos"): self._upload_chunk,
            ("POST", "/upload/youtube/v3/thumbnails/set"): self._set_thumbnail,
            ("POST", "/upload/youtube/v3/captions"): self._insert_caption,
            ("POST", "/youtube/v3/playlists"): self._insert_playlist,
            ("POST", "/youtube/v3/playlistItems"): self._insert_playlist_item,
            ("GET", "/youtube/v3/videos"): self._list_videos,
        }
        self._remaining = int(self.headers.get("Content-Length") or 0)
        self._read = b""
        call = Call(method, url.path, self.query, self.headers.get("Content-Range"))
        with self.fake._lock:
            self.fake.calls.append(call)
            failure = next(
                (
                    f
                    for f in self.fake._failures
                    if f.times > 0 and f.method == method and url.path.startswith(f.path)
                ),
                None,
            )
            if failure is not None:
                failure.times -= 1
        handler = routes.get((method, url.path))
        try:
            if failure is not None:
                self._drain_into_session()
                error = google_error(failure.status, "Backend Error", "backendError")
                self._json(failure.status, error)
            elif handler is None:
                self._json(404, google_error(404, "Not Found", "notFound"))
            else:
                if method == "POST" and url.path in ("/token", "/revoke"):
                    call.form = self._form()
                handler()
            self._body()
        except _Reset:
            self.close_connection = True

    def _take(self, size: int) -> bytes:
        data = self.rfile.read(size)
        self._remaining -= len(data)
        return data

    def _body(self) -> bytes:
        """The request body, read on first use; whatever a handler leaves unread is read after
        it answers, so the connection stays usable for the next request."""
        if self._remaining > 0:
            self._read += self._take(self._remaining)
        return self._read

    def _form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self._body().decode()).items()}

    def _json_body(self) -> dict[str, Any]:
        body = self._body()
        return json.loads(body) if body else {}

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, body: dict[str, Any], **headers: str) -> None:
        self._send(status, json.dumps(body).encode(), "application/json; charset=UTF-8", **headers)

    def _reset(self) -> None:
        """Closes the connection with an RST, as a network failure would."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        raise _Reset

    # -- OAuth 2.0 --------------------------------------------------------------------------

    def _authorize(self) -> None:
        q, fake = self.query, self.fake
        if q.get("client_id") != fake.client_id or q.get("response_type") != "code":
            self._send(400, b"Error 401: invalid_client", "text/html")
            return
        if "code_challenge" in q and q.get("code_challenge_method") != "S256":
            self._send(400, b"Error 400: invalid_request", "text/html")
            return
        requested = q.get("scope", "").split()
        with fake._lock:
            code = fake._issue("4/0A" + secrets.token_urlsafe(40))
            fake._codes[code] = _Code(
                redirect_uri=q["redirect_uri"],
                scopes=fake.granted_scopes if fake.granted_scopes is not None else requested,
                challenge=q.get("code_challenge"),
                nonce=q.get("nonce"),
                offline=q.get("access_type") == "offline",
                account=fake.account,
                issued=time.time(),
            )
            scopes = fake._codes[code].scopes
        redirect = {"state": q.get("state", ""), "code": code, "scope": " ".join(scopes)}
        self._send(302, b"", "text/html", Location=f"{q['redirect_uri']}?{urlencode(redirect)}")

    def _client_authenticated(self, form: dict[str, str]) -> bool:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        return client_id == self.fake.client_id and secret == self.fake.client_secret

    def _token(self) -> None:
        form, fake = self._form(), self.fake
        if not self._client_authenticated(form):
            self._json(401, {"error": "invalid_client", "error_description": "Unauthorized"})
            return
        with fake._lock:
            if form.get("grant_type") == "authorization_code":
                answer = self._exchange_code(form)
            elif form.get("grant_type") == "refresh_token":
                answer = self._refresh(form)
            else:
                answer = {"error": "unsupported_grant_type"}
        self._json(400 if "error" in answer else 200, answer)

    def _exchange_code(self, form: dict[str, str]) -> dict[str, Any]:
        fake = self.fake
        code = fake._codes.get(form.get("code", ""))
        if code is None or code.used or time.time() - code.issued > 600:
            return {"error": "invalid_grant", "error_description": "Bad Request"}
        code.used = True
        if form.get("redirect_uri") != code.redirect_uri:
            return {"error": "redirect_uri_mismatch", "error_description": "Bad Request"}
        if code.challenge is not None:
            verifier = form.get("code_verifier", "").encode()
            digest = hashlib.sha256(verifier).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != code.challenge:
                return {"error": "invalid_grant", "error_description": "Invalid code verifier."}
        grant = _Grant(code.account, code.scopes, code.nonce)
        answer: dict[str, Any] = {
            "access_token": self._new_access_token(grant, code.account, code.scopes),
            "expires_in": 3599,
            "scope": " ".join(code.scopes),
            "token_type": "Bearer",
        }
        if code.offline:
            refresh_token = fake._issue("1//0g" + secrets.token_urlsafe(40))
            fake._grants[refresh_token] = grant
            answer["refresh_token"] = refresh_token
        if "openid" in code.scopes:
            answer["id_token"] = fake._id_token(code.account, code.nonce)
        return answer

    def _refresh(self, form: dict[str, str]) -> dict[str, Any]:
        grant = self.fake._grants.get(form.get("refresh_token", ""))
        if grant is None or grant.revoked:
            return {
                "error": "invalid_grant",
                "error_description": "Token has been expired or revoked.",
            }
        return {
            "access_token": self._new_access_token(grant, grant.account, grant.scopes),
            "expires_in": 3599,
            "scope": " ".join(grant.scopes),
            "token_type": "Bearer",
        }

    def _new_access_token(
        self, grant: _Grant | None, account: GoogleAccount, scopes: list[str]
    ) -> str:
        token = self.fake._issue("ya29.a0" + secrets.token_urlsafe(60))
        self.fake._access[token] = (grant, account, scopes, False)
        return token

    def _revoke(self) -> None:
        token = self._form().get("token") or self.query.get("token", "")
        fake = self.fake
        with fake._lock:
            grant = fake._grants.get(token)
            if grant is None and token in fake._access:
                grant = fake._access[token][0]
                fake._access[token] = (*fake._access[token][:3], True)
            if grant is None or grant.revoked:
                answer = {"error": "invalid_token", "error_description": "Token expired or revoked"}
                self._json(400, answer)
                return
            grant.revoked = True
        self._json(200, {})

    def _certs(self) -> None:
        self._json(200, self.fake.jwks(), Cache_Control="public, max-age=3600")

    # -- YouTube Data API v3 ----------------------------------------------------------------

    def _caller(self, scope_needed: tuple[str, ...]) -> GoogleAccount | None:
        """The account of the bearer token; answers 401/403 itself and returns None if the
        request may not go on."""
        header = self.headers.get("Authorization", "")
        fake = self.fake
        with fake._lock:
            entry = fake._access.get(header.removeprefix("Bearer "))
        if entry is None or entry[3] or (entry[0] is not None and entry[0].revoked):
            message = "Request had invalid authentication credentials."
            error = google_error(401, message, "authError")
            realm = 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
            self._json(401, error, WWW_Authenticate=realm)
            return None
        if not any(scope in entry[2] for scope in scope_needed):
            message = "Request had insufficient authentication scopes."
            self._json(403, google_error(403, message, "insufficientPermissions"))
            return None
        if fake.quota_exceeded:
            self._json(403, google_error(403, QUOTA_MESSAGE, "quotaExceeded", "youtube.quota"))
            return None
        return entry[1]

    def _start_upload(self) -> None:
        account = self._caller(UPLOAD_SCOPES)
        if account is None:
            return
        if self.query.get("uploadType") != "resumable":
            self._json(400, google_error(400, "Only resumable uploads here", "badRequest"))
            return
        metadata = self._json_body()
        title = metadata.get("snippet", {}).get("title", "")
        privacy = metadata.get("status", {}).get("privacyStatus", "public")
        if not title or len(title) > 100 or privacy not in ("private", "unlisted", "public"):
            self._json(400, google_error(400, "Invalid video metadata", "invalidVideoMetadata"))
            return
        session = UploadSession(
            id=secrets.token_urlsafe(16),
            account=account,
            metadata=metadata,
            total=int(self.headers["X-Upload-Content-Length"]),
        )
        with self.fake._lock:
            self.fake.sessions[session.id] = session
        query = urlencode({"uploadType": "resumable", "part": self.query.get("part", ""),
                           "upload_id": session.id})  # fmt: skip
        location = f"{self.fake.url}/upload/youtube/v3/videos?{query}"
        self._send(200, b"", "text/plain", Location=location)

    def _session(self) -> UploadSession | None:
        return self.fake.sessions.get(self.query.get("upload_id", ""))

    def _drain_into_session(self) -> None:
        """Reads a request body; bytes meant for an upload session count as received by it."""
        received = len(self._body())
        session = self._session() if self.url_path == "/upload/youtube/v3/videos" else None
        if session is not None:
            with self.fake._lock:
                session.received += received

    def _upload_chunk(self) -> None:
        session = self._session()
        if session is None:
            self._json(404, google_error(404, "Upload session not found", "notFound"))
            return
        spec = self.headers.get("Content-Range", "").removeprefix("bytes ")
        span, _, total = spec.partition("/")
        if total not in ("*", str(session.total)):
            self._json(400, google_error(400, "Content-Range total mismatch", "badRequest"))
            return
        if span == "*":
            self._upload_status(session)
            return
        first, _, last = span.partition("-")
        start, length = int(first), int(last) - int(first) + 1
        declared = int(self.headers.get("Content-Length") or 0)
        if start != len(session.data) or length != declared:
            self._json(400, google_error(400, "Chunk does not continue the upload", "badRequest"))
            return
        if start + length < session.total and length % CHUNK_GRANULARITY:
            self._json(400, google_error(400, "Chunk size not a multiple of 256 KiB", "badRequest"))
            return
        self._receive(session, start, length)
        self._upload_status(session)

    def _receive(self, session: UploadSession, start: int, length: int) -> None:
        fake = self.fake
        with fake._lock:
            cut = fake._cut
            cut_here = cut is not None and cut[1] > 0 and start <= cut[0] < start + length
            if cut_here:
                assert cut is not None
                fake._cut = (cut[0], cut[1] - 1)
            session.chunks += 1
        wanted = cut[0] - start if cut_here and cut is not None else length
        read = 0
        while read < wanted:
            block = self._take(min(65536, wanted - read))
            if not block:
                break
            read += len(block)
            with fake._lock:
                session.data.extend(block)
                session.received += len(block)
        if cut_here:
            self._reset()

    def _upload_status(self, session: UploadSession) -> None:
        with self.fake._lock:
            if len(session.data) == session.total and session.video_id is None:
                session.video_id = self._create_video(session)
            video_id = session.video_id
        if video_id is not None:
            self._json(200, self._video_resource(video_id, ("snippet", "status")))
            return
        headers = {"Range": f"bytes=0-{len(session.data) - 1}"} if session.data else {}
        self._send(308, b"", "text/plain", **headers)

    def _create_video(self, session: UploadSession) -> str:
        video_id = secrets.token_urlsafe(8)[:11]
        snippet = session.metadata.get("snippet", {})
        status = session.metadata.get("status", {})
        self.fake.videos[video_id] = {
            "owner": session.account.sub,
            "bytes": bytes(session.data),
            "processing": "processing",
            "snippet": {
                "title": snippet.get("title"),
                "description": snippet.get("description", ""),
                "tags": snippet.get("tags", []),
                "categoryId": snippet.get("categoryId", "22"),
                "channelId": "UC" + session.account.sub[:22],
                "publishedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            "status": {
                "uploadStatus": "uploaded",
                "privacyStatus": status.get("privacyStatus", "public"),
                "selfDeclaredMadeForKids": status.get("selfDeclaredMadeForKids", False),
                "madeForKids": status.get("selfDeclaredMadeForKids", False),
                "containsSyntheticMedia": status.get("containsSyntheticMedia", False),
                "license": "youtube",
            },
        }
        return video_id

    def _video_resource(self, video_id: str, parts: tuple[str, ...]) -> dict[str, Any]:
        video = self.fake.videos[video_id]
        resource: dict[str, Any] = {"kind": "youtube#video", "id": video_id}
        if "snippet" in parts:
            resource["snippet"] = video["snippet"]
        if "status" in parts:
            resource["status"] = video["status"]
        if "processingDetails" in parts:
            resource["processingDetails"] = {"processingStatus": video["processing"]}
        return resource

    def _owned_video(self, account: GoogleAccount, video_id: str) -> bool:
        video = self.fake.videos.get(video_id)
        if video is None or video["owner"] != account.sub:
            self._json(404, google_error(404, "Video not found", "videoNotFound", "youtube.video"))
            return False
        return True

    def _set_thumbnail(self) -> None:
        account = self._caller(UPLOAD_SCOPES)
        if account is None:
            return
        image = self._body()
        video_id = self.query.get("videoId", "")
        if not self._owned_video(account, video_id):
            return
        if not image.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
            self._json(400, google_error(400, "Not an image", "invalidImage", "youtube.thumbnail"))
            return
        with self.fake._lock:
            self.fake.thumbnails[video_id] = image
        url = f"https://i.ytimg.com/vi/{video_id}/default.jpg"
        self._json(
            200,
            {
                "kind": "youtube#thumbnailSetResponse",
                "items": [{"default": {"url": url, "width": 120, "height": 90}}],
            },
        )

    def _insert_caption(self) -> None:
        account = self._caller(CAPTION_SCOPES)
        if account is None:
            return
        content_type = self.headers.get("Content-Type", "")
        if self.query.get("uploadType") != "multipart" or "multipart/related" not in content_type:
            self._json(400, google_error(400, "Expected a multipart upload", "badRequest"))
            return
        message = email.message_from_bytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + self._body()
        )
        metadata_part, media_part = message.get_payload()  # type: ignore[misc]
        snippet = json.loads(metadata_part.get_payload(decode=True))["snippet"]
        if not self._owned_video(account, snippet.get("videoId", "")):
            return
        track = media_part.get_payload(decode=True)
        if not snippet.get("language") or not track:
            self._json(400, google_error(400, "Invalid caption", "invalidMetadata"))
            return
        caption = {
            "kind": "youtube#caption",
            "id": "AUieDa" + secrets.token_urlsafe(12),
            "snippet": {**snippet, "trackKind": "standard", "status": "serving"},
        }
        with self.fake._lock:
            self.fake.captions.append({**caption, "track": track})
        self._json(200, caption)

    def _insert_playlist(self) -> None:
        account = self._caller(MANAGE_SCOPES)
        if account is None:
            return
        body = self._json_body()
        title = body.get("snippet", {}).get("title")
        if not title:
            self._json(400, google_error(400, "Playlist title required", "playlistTitleRequired"))
            return
        playlist = {
            "kind": "youtube#playlist",
            "id": "PL" + secrets.token_urlsafe(24)[:32],
            "snippet": {**body["snippet"], "channelId": "UC" + account.sub[:22]},
            "status": body.get("status", {"privacyStatus": "public"}),
        }
        with self.fake._lock:
            self.fake.playlists[playlist["id"]] = {**playlist, "owner": account.sub}
        self._json(200, playlist)

    def _insert_playlist_item(self) -> None:
        account = self._caller(MANAGE_SCOPES)
        if account is None:
            return
        snippet = self._json_body().get("snippet", {})
        playlist = self.fake.playlists.get(snippet.get("playlistId", ""))
        if playlist is None or playlist["owner"] != account.sub:
            message = "The playlist identified with the request's playlistId cannot be found."
            error = google_error(404, message, "playlistNotFound", "youtube.playlistItem")
            self._json(404, error)
            return
        if not self._owned_video(account, snippet.get("resourceId", {}).get("videoId", "")):
            return
        with self.fake._lock:
            position = sum(1 for i in self.fake.playlist_items if i["playlistId"] == playlist["id"])
            item = {**snippet, "position": position}
            self.fake.playlist_items.append(item)
        self._json(200, {"kind": "youtube#playlistItem", "id": secrets.token_urlsafe(16),
                         "snippet": item})  # fmt: skip

    def _list_videos(self) -> None:
        account = self._caller(READ_SCOPES)
        if account is None:
            return
        parts = tuple(self.query.get("part", "").split(","))
        ids = [i for i in self.query.get("id", "").split(",") if i in self.fake.videos]
        items = [self._video_resource(i, parts) for i in ids]
        self._json(
            200,
            {
                "kind": "youtube#videoListResponse",
                "items": items,
                "pageInfo": {"totalResults": len(items), "resultsPerPage": len(items)},
            },
        )
