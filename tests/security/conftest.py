"""The standing adversarial suite: the studio's API on PostgreSQL, probed as a
hostile user would, with the routes and fields taken from its own `/openapi.json`, so that a new
route or field is probed without a new test.

Its own Serve app (`security-postgres`), beside that of tests/api.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ray import serve

from db.models import Role
from tests.api.conftest import (
    Account,
    Api,
    app_settings,
    create_project,
    deploy,
    put_on_plan,
    register,
    set_user,
)
from tests.services import own_processes

MB = 1024 * 1024


@pytest.fixture(scope="session")
def api(
    serve_http: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """The studio API on PostgreSQL (as `tests.api.conftest.api`)."""
    data_dir = tmp_path_factory.mktemp("security")
    name = "security-postgres"
    yield deploy(name, app_settings(data_dir, postgres_url), serve_http)
    serve.delete(name)


@pytest.fixture(scope="session")
def openapi(api: Api) -> dict[str, Any]:
    """The API's own description of itself: where every probe takes its routes and fields."""
    with api.client() as http:
        document: dict[str, Any] = http.get("/openapi.json").json()
    return document


@pytest.fixture
def client(api: Api) -> Iterator[httpx.Client]:
    with api.client() as http:
        yield http


@pytest.fixture
def account(api: Api, client: httpx.Client) -> Account:
    """A user on a plan without a request rate limit: the probes send hundreds of requests."""
    user = register(client)
    put_on_plan(api, user.id, "probe", rate_limit_per_minute=100_000)
    return user


@pytest.fixture
def other(client: httpx.Client) -> Account:
    """A second user, whose things `account` must never reach."""
    return register(client)


@pytest.fixture
def project(client: httpx.Client, account: Account) -> str:
    return str(create_project(client, account)["id"])


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every operation in the document."""
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method, path, operation


def json_body(document: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any] | None:
    """The resolved JSON schema of an operation's request body, if it takes JSON."""
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    return None if schema is None else resolve(document, schema)


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with its `$ref` followed, and an `anyOf` of one type and null unwrapped."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return resolve(document, document["components"]["schemas"][name])
    members = [s for s in schema.get("anyOf", schema.get("allOf", [])) if s.get("type") != "null"]
    if len(members) == 1:
        return resolve(document, members[0])
    return schema


def fill_path(path: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    return path


def png(width: int, height: int, rows: int | None = None) -> bytes:
    """A grey PNG of `width` x `height` pixels, all zero: a few hundred KB for 169 megapixels.
    `rows` writes only that many rows (a header that promises more than the data holds)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    data = b"".join(compressor.compress(row) for _ in range(height if rows is None else rows))
    data += compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def replica_rss(api: Api) -> int:
    """Resident bytes of the Serve replica that serves this API (the process a bomb would fill),
    found by the process title Ray gives it (`ray::ServeReplica:<app>:<deployment>`)."""
    replicas = own_processes(f"ray::ServeReplica:{api.name}:")
    assert len(replicas) == 1, replicas
    return int(replicas[0].memory_info().rss)


def make_admin(http: httpx.Client, api: Api) -> Account:
    user = register(http)
    set_user(api, user.id, role=Role.admin)
    return user
