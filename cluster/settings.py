"""The studio's one `Settings`, read from `STUDIO_*` environment variables and an optional `.env`.

Nothing else reads `os.environ`. The defaults are the embedded ones: a SQLite file and a storage
folder under `STUDIO_DATA_DIR` (./var), a local Ray, CPU engines.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, computed_field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cluster.errors import StudioError


class ConfigError(StudioError):
    """A setting that cannot work; start-up prints it as one line naming the setting."""

    slug, status, title = "configuration-invalid", 500, "Invalid configuration"
    internal = True

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIO_", env_file=".env", extra="ignore")

    data_dir: Path = Path("var")
    database_url: str | None = None
    storage_url: str | None = None
    models_dir: Path | None = None
    ray_address: str | None = None

    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_path_style: bool = False
    s3_multipart_threshold_mb: int = 16
    s3_multipart_chunk_mb: int = 16
    presign_expiry_s: int = 3600

    host: str = "127.0.0.1"
    port: int = 8000
    dashboard_port: int = Field(
        default=8265,
        description="the Ray dashboard and job server of `studio serve` (on 127.0.0.1)",
    )
    metrics_export_port: int | None = Field(
        default=None,
        description="where `studio serve`'s Ray node exports metrics for Prometheus "
        "(unset: a free port, found through the head's service discovery file)",
    )
    public_url: str = "http://127.0.0.1:8000"
    frontend_url: str | None = Field(
        default=None,
        description="a frontend hosted elsewhere: Google sign-in sends the browser back to it "
        "with a one-time code (`?code=`) that it exchanges for tokens",
    )
    serve_config: Path | None = None

    jwt_secret: SecretStr | None = None
    token_encryption_key: SecretStr | None = Field(
        default=None, description="base64 of 32 bytes: AES-256-GCM key for OAuth tokens at rest"
    )
    jwt_issuer: str = "ai-film-studio"
    jwt_audience: str = "ai-film-studio-api"
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 30 * 24 * 3600

    max_request_body_mb: int = 2
    rate_limit_per_minute_ip: int = 600
    redis_url: str | None = None

    # The engine per capability for final renders, named as in the engine registry
    # (models/registry.py, which checks them at start-up); unset, the capability's CPU default.
    video_engine: str | None = None
    image_engine: str | None = None
    voice_engine: str | None = None
    lipsync_engine: str | None = None
    music_engine: str | None = None
    video_sound: Literal["ambience", "drop"] = Field(
        default="ambience",
        description="The sound a video engine makes with its clips (LTX-2): laid under the "
        "narration and music as an ambience bed, or dropped",
    )
    ambience_volume: float = Field(default=0.3, ge=0.0, le=1.0)
    render_workers: int = Field(
        default=2,
        description="render_slot resources of the local node (how many CPU-heavy "
        "stages it runs side by side)",
    )
    render_jobs_max: int = Field(
        default=64,
        description="the most renders at once; below it, one per render_slot of "
        "the cluster as nodes join and leave",
    )
    # Stage cache hits come from the same user's earlier renders only; True shares them between
    # users (faster and cheaper, but a free, instant render tells a user that someone else
    # rendered that exact spec). Stored bytes are de-duplicated by content either way.
    stage_cache_shared: bool = False
    stage_cache_budget_bytes: int | None = Field(
        default=20 * 1024**3,
        ge=0,
        description="The stage cache's size in bytes: as each render ends, the entries used "
        "least recently are evicted until the rest fit (None: no bound)",
    )
    storage_gc_grace_s: int = Field(
        default=24 * 3600,
        ge=0,
        description="Unreferenced stored objects younger than this are never collected: a "
        "render running during a collection keeps what it wrote",
    )
    storage_gc_interval_s: float = Field(
        default=6 * 3600,
        ge=0,
        description="How often the scheduler collects unreferenced stored objects (0: never; "
        "`studio storage gc` runs it by hand)",
    )

    watchdog_floor_s: float = Field(
        default=900,
        gt=0,
        description="The shortest time an engine call may go without an answer before the "
        "render watchdog cancels it and asks again (once): covers a replica loading its model "
        "and other renders' requests queued ahead (`pipeline.render.watchdog`)",
    )
    watchdog_factor: float = Field(
        default=4.0,
        gt=0,
        description="An engine call's limit as a multiple of its estimated seconds, where that "
        "is above the floor",
    )

    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com"
    elevenlabs_api_key: SecretStr | None = None
    elevenlabs_base_url: str = "https://api.elevenlabs.io"
    runway_api_key: SecretStr | None = None
    runway_base_url: str = "https://api.dev.runwayml.com"
    luma_api_key: SecretStr | None = None
    luma_base_url: str = "https://api.lumalabs.ai"

    google_client_id: str | None = None
    google_client_secret: SecretStr | None = None
    google_auth_uri: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_token_uri: str = "https://oauth2.googleapis.com/token"
    google_revoke_uri: str = "https://oauth2.googleapis.com/revoke"
    google_jwks_uri: str = "https://www.googleapis.com/oauth2/v3/certs"
    google_issuer: str = "https://accounts.google.com"
    youtube_api_url: str = "https://youtube.googleapis.com"

    llm_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible chat completions for planning: https://api.openai.com/v1, "
        "a vLLM or Ollama server's /v1; unset plans on CPU",
    )
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = 120.0

    moderation_policy: Path | None = None
    sentry_dsn: str | None = None
    log_json: bool = True

    # Billing through Stripe. Without a secret key (and webhook secret) purchases answer 503.
    # Price ids live here, not in the plans table: they differ between Stripe's test and live
    # modes while the plans are the same everywhere.
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str = "https://api.stripe.com"
    stripe_webhook_tolerance_s: int = 300
    stripe_credit_packs: dict[int, str] = Field(
        default_factory=dict, description="credits -> Stripe price id of that credit pack"
    )
    stripe_plan_prices: dict[str, str] = Field(
        default_factory=dict, description="plan code -> Stripe price id of its monthly price"
    )
    billing_grace_period_s: int = 7 * 24 * 3600
    billing_sweep_interval_s: float = 60.0

    # Accounts: rotating keys, email, proxies.
    jwt_previous_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="comma-separated JWT keys that still verify (not sign): a rotation's old keys",
    )
    token_previous_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="comma-separated base64 AES-256 keys that still open (not seal) tokens at rest",
    )
    smtp_url: SecretStr | None = Field(
        default=None,
        description="smtp://[user:pass@]host[:port] (STARTTLS when offered) or smtps:// (TLS)",
    )
    mail_from: str = "AI Film Studio <no-reply@localhost>"
    email_verification_ttl_s: int = 24 * 3600
    password_reset_ttl_s: int = 3600
    reauthentication_window_s: int = 300
    # Job notifications: webhooks (HTTPS, signed, retried with exponential backoff) and email.
    notify_max_attempts: int = Field(default=6, ge=1, le=20)
    notify_backoff_s: float = Field(
        default=30.0, gt=0, description="the first retry's delay; each next one doubles it"
    )
    notify_timeout_s: float = Field(default=10.0, gt=0, le=60)
    notify_allow_loopback: bool = Field(
        default=False,
        description="tests only: webhooks may go to http:// on a loopback address",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated IPs or CIDRs whose X-Forwarded-For names the client",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated origins (scheme://host[:port]) of frontends hosted "
        "elsewhere that may call the API from a browser",
    )

    @field_validator(
        "jwt_previous_secrets",
        "token_previous_keys",
        "trusted_proxies",
        "cors_origins",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """A list from the environment: JSON (`["a", "b"]`) or comma-separated (`a,b`)."""
        if isinstance(value, str) and value.lstrip().startswith("["):
            return json.loads(value)
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        """Exact origins only: no wildcard, path, query or credentials."""
        for origin in origins:
            parsed = urlsplit(origin)
            if (
                parsed.scheme not in ("http", "https")
                or not parsed.hostname
                or "*" in origin
                or parsed.username is not None
                or origin != f"{parsed.scheme}://{parsed.netloc}"
            ):
                raise ValueError(f"{origin!r} is not an origin: scheme://host[:port]")
        return origins

    @computed_field  # type: ignore[prop-decorator]
    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'studio.db').resolve()}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def resolved_storage_url(self) -> str:
        if self.storage_url:
            return self.storage_url
        return f"file://{(self.data_dir / 'storage').resolve()}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    def jwt_key(self) -> bytes:
        """The JWT signing key: given, or generated once into data_dir/secrets."""
        if self.jwt_secret:
            return self.jwt_secret.get_secret_value().encode()
        return _secret_file(self.data_dir, "jwt.key", lambda: secrets.token_urlsafe(64).encode())

    def jwt_verify_keys(self) -> list[bytes]:
        """Every key a JWT may be signed with: the signing key first, then the previous ones."""
        return [self.jwt_key(), *(s.get_secret_value().encode() for s in self.jwt_previous_secrets)]

    def token_key(self) -> bytes:
        """The 32-byte AES-256 key for OAuth tokens at rest: given, or generated once."""
        if self.token_encryption_key:
            key = base64.b64decode(self.token_encryption_key.get_secret_value())
        else:
            key = base64.b64decode(
                _secret_file(
                    self.data_dir, "token.key", lambda: base64.b64encode(secrets.token_bytes(32))
                )
            )
        if len(key) != 32:
            raise ValueError("STUDIO_TOKEN_ENCRYPTION_KEY must be base64 of exactly 32 bytes")
        return key

    def token_keys(self) -> list[bytes]:
        """The sealing key first, then the previous keys that only open."""
        previous = [base64.b64decode(s.get_secret_value()) for s in self.token_previous_keys]
        if any(len(key) != 32 for key in previous):
            raise ValueError("STUDIO_TOKEN_PREVIOUS_KEYS must be base64 of exactly 32 bytes each")
        return [self.token_key(), *previous]


def _secret_file(data_dir: Path, name: str, make: Callable[[], bytes]) -> bytes:
    """Reads a generated secret, creating it atomically (0600) the first time: concurrent first
    starts agree on one value because only one hard link can win."""
    path = data_dir / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(make())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    return path.read_bytes().strip()


@lru_cache
def get_settings() -> Settings:
    return Settings()
