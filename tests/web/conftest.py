"""The web studio under test: the real ingress on Ray Serve on the embedded default (SQLite, a
storage folder, the CPU engines), reached over HTTP by httpx and by Debian's Chromium driven by
Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ray import serve

from db.migrate import upgrade
from deployments.api.ingress import DEFAULTS
from tests.api.conftest import Api, app_settings, deploy
from tests.fakes.google import FakeGoogle
from tests.fakes.stripe import FakeStripe, stripe_settings
from tests.services import require_module, unavailable
from tests.youtube import studio_settings

CHROMIUM = "/usr/bin/chromium"
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


@pytest.fixture(scope="session")
def google() -> Iterator[FakeGoogle]:
    """The local Google (sign-in, channel linking, YouTube) for the session's studio."""
    with FakeGoogle.running() as fake:
        yield fake


@pytest.fixture(scope="session")
def studio(
    serve_http: str,
    tmp_path_factory: pytest.TempPathFactory,
    fake_stripe: FakeStripe,
    google: FakeGoogle,
) -> Iterator[Api]:
    """The studio with its pages on SQLite and local storage, as `studio serve` runs it,
    paying through the local Stripe and signing in with the local Google (whose plain-HTTP
    token endpoint oauthlib accepts only when told, in the ingress replica)."""
    data_dir = tmp_path_factory.mktemp("web")
    database_url = f"sqlite:///{data_dir / 'studio.db'}"
    upgrade(database_url)
    settings = studio_settings(
        app_settings(data_dir, database_url, **stripe_settings(fake_stripe)), google, database_url
    )
    insecure = {"env_vars": {"OAUTHLIB_INSECURE_TRANSPORT": "1"}}
    options = {"ray_actor_options": {**DEFAULTS["ray_actor_options"], "runtime_env": insecure}}
    yield deploy("web", settings, serve_http, **options)
    serve.delete("web")


@pytest.fixture
def artefacts(tmp_path: Path) -> Path:
    """Where the journey's screenshots go: $STUDIO_TEST_ARTEFACTS/web, else the test's tmp."""
    root = os.environ.get("STUDIO_TEST_ARTEFACTS")
    folder = Path(root) / "web" if root else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {folder}")
    return folder


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium (`apt-get install chromium`), headless."""
    sync_api = require_module("playwright.sync_api", "playwright drives the browser")
    if shutil.which(CHROMIUM) is None:
        unavailable(f"Chromium at {CHROMIUM}")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def form_token(response: httpx.Response) -> str:
    """The CSRF token of the (first) form on a page."""
    found = CSRF.search(response.text)
    assert found, response.text
    return found.group(1)
