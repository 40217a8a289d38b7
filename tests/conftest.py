"""Shared fixtures: settings on a temporary data folder, databases with migrations applied
(SQLite and a fresh PostgreSQL schema), a SeaweedFS S3 server."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError, EndpointConnectionError

from cluster.settings import Settings
from db.migrate import upgrade
from deployments.api.ratelimit import serve_environment
from tests.fakes.hosted_video import FakeHostedVideo
from tests.fakes.stripe import FakeStripe, studio_prices
from tests.services import S3Server, postgres_schema, seaweedfs


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that start Ray clusters of their own run first, before the session's Ray
    (`ray_session`) and its Serve applications: on two cores, that Ray's own processes would
    slow them several-fold."""
    items.sort(key=lambda item: item.get_closest_marker("own_cluster") is None)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh schema with the migrations applied, shared by the session's tests."""
    with postgres_schema() as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database with the migrations applied, made once: tests copy it."""
    path = tmp_path_factory.mktemp("sqlite-template") / "studio.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_sqlite: Path) -> str:
    """A fresh SQLite database of this test, with the migrations applied."""
    path = tmp_path / "studio.db"
    # SQLite's backup, not a file copy: the migrations' pages may still be in the WAL file.
    source, copy = sqlite3.connect(migrated_sqlite), sqlite3.connect(path)
    with closing(source), closing(copy):
        source.backup(copy)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using it runs twice: on SQLite and on PostgreSQL."""
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
        return str(request.getfixturevalue("postgres_url"))
    return str(request.getfixturevalue("sqlite_url"))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new bucket on the S3 server (created with retries: the filer comes up after S3)."""
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name="us-east-1",
        config=BotoConfig(s3={"addressing_style": "path"}),
    )
    bucket = f"studio-{uuid.uuid4().hex[:10]}"
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket=bucket)
            return bucket
        except (ClientError, EndpointConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture
def s3_settings(tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        storage_url=f"s3://{s3_bucket}/studio",
        s3_endpoint_url=s3_server.endpoint,
        s3_access_key_id=s3_server.access_key,
        s3_secret_access_key=s3_server.secret_key,
        s3_path_style=True,
        _env_file=None,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded defaults on a temporary data folder, ignoring the developer's environment."""
    return Settings(data_dir=tmp_path / "var", _env_file=None)


@pytest.fixture(scope="session")
def fake_stripe() -> Iterator[FakeStripe]:
    """A local Stripe (its REST API and signed webhooks) for the session, priced like the
    studio's credit packs and plans."""
    with FakeStripe.running(studio_prices()) as fake:
        yield fake


@pytest.fixture(scope="session")
def hosted_video_server() -> Iterator[FakeHostedVideo]:
    """A local Runway and Luma (their video APIs and clip storage) for the session."""
    fake = FakeHostedVideo()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_video(hosted_video_server: FakeHostedVideo) -> FakeHostedVideo:
    """The local Runway and Luma, succeeding, with no generation yet."""
    hosted_video_server.reset()
    return hosted_video_server


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the whole test session (ray.init costs seconds). Logical CPUs are
    declared above the machine's 2 cores on purpose: Serve replicas and light tasks ask for
    fractions, so the API, engines and render tasks never starve each other. Serve's HTTP proxy
    trusts `X-Forwarded-For` from no one, as `studio serve` starts it."""
    import ray

    ray.init(
        address="local",
        num_cpus=8,
        resources={"render_slot": 2},
        namespace="studio",
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={
            "env_vars": {
                "PYTHONPATH": str(Path(__file__).parents[1]),
                **serve_environment(Settings(_env_file=None)),
            }
        },
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def serve_http(ray_session: None) -> str:
    """Serve's HTTP proxy on a free loopback port (started once; later deploys reuse it)."""
    from ray import serve
    from ray.serve.context import _get_global_client

    from tests.services import free_port

    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    return f"http://127.0.0.1:{_get_global_client().http_config.port}"


@pytest.fixture(scope="session")
def cpu_engines(serve_http: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The CPU engines' Serve applications, deployed once from deployments/serve_config.yaml."""
    from ray import serve

    from cluster.runtime import deploy
    from models.registry import CPU_DEFAULTS, engine_info

    apps = {engine_info(c, n).deployment for c, n in CPU_DEFAULTS.items()}
    port = int(serve_http.rsplit(":", 1)[1])
    settings = Settings(data_dir=tmp_path_factory.mktemp("engines"), port=port, _env_file=None)
    deploy(settings, apps)
    yield
    for name in apps:
        serve.delete(name)
