"""Schemathesis's stateful phase: sequences of calls chained by the links it infers from the
OpenAPI document (a created project's id into the project's routes, an upload's id into its
download, ...), as the user who made them. No sequence may cause a 5xx or an answer the schema
does not describe, and a deleted object must stay gone (`use_after_free`). The stateless
phases run in tests/api/test_schema.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.conftest import Account, Api

pytestmark = pytest.mark.ray

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,use_after_free,ensure_resource_availability"
)


def test_chained_calls_cause_no_server_error(
    cpu_engines: None, api: Api, account: Account, tmp_path: Path
) -> None:
    """With the CPU engines deployed, as the studio runs: a render may be submitted."""
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
        "stateful",
        "--max-examples",
        "10",
        "--workers",
        "1",
        "--seed",
        "20261207",
        "--request-timeout",
        "30",
        "--exclude-path-regex",
        "/events$|/api/users/(me|logout)$",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path
    )
    output = result.stdout + result.stderr
    print(output[-3000:])
    assert result.returncode == 0, output[-6000:]
    assert "Stateful" in output and "links" in output.lower(), output[-3000:]
