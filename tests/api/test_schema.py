"""Schemathesis against the published OpenAPI schema, authenticated with a real token: no
request it generates may cause a 5xx or a response the schema does not describe.

Bounded: the schema's examples, then at most 20 generated cases per operation (about 30 s on
Serve). The coverage phase (some 2,000 deterministic boundary cases, 80 s more on two cores)
passes too but is left to manual runs. Every router is covered: the admin routes as a non-admin
(403), the YouTube and Google routes with no channel linked (404, 409). The event stream alone
is left out: it is an endless response by design, tested in test_jobs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Account, Api, put_on_plan

pytestmark = pytest.mark.ray

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_headers_conformance,response_schema_conformance"
)


def test_no_server_errors_and_no_schema_violations(
    api: Api, client: httpx.Client, account: Account, tmp_path: Path
) -> None:
    put_on_plan(api, account.id, "fuzz", rate_limit_per_minute=100_000, upload_limit_mb=1)
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{api.url}/openapi.json",
        "--url",
        api.url,
        "--header",
        f"Authorization: Bearer {account.access_token}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,fuzzing",
        "--max-examples",
        "20",
        "--workers",  # one: with two, hypothesis's source parsing raced (SystemError, 3.11)
        "1",
        "--seed",
        "20261125",
        "--request-timeout",
        "30",
        "--exclude-path-regex",
        "/events$",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
