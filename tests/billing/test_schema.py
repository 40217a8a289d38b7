"""Schemathesis over the billing routes of the published schema, on the studio paying through
the fake Stripe: no generated request causes a 5xx or an undocumented response, and every new
route is published with its problem documents. Once, on PostgreSQL (as tests/api/test_schema.py),
as an admin, so that the refund route is exercised beyond its 403."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from db.models import Role
from tests.api.conftest import Account, Api, put_on_plan, set_user
from tests.api.test_schema import CHECKS

pytestmark = pytest.mark.ray

NEW_ROUTES = {
    ("/api/credits/topup", "post"): {"401", "409", "422", "502", "503"},
    ("/api/credits/history", "get"): {"401", "422"},
    ("/api/billing/subscribe", "post"): {"401", "409", "422", "502", "503"},
    ("/api/billing/portal", "post"): {"401", "404", "502", "503"},
    ("/api/billing/invoices", "get"): {"401", "422"},
    ("/api/billing/webhook", "post"): {"400", "503"},
    ("/api/admin/payments/{payment_id}/refund", "post"): {"401", "403", "404", "409", "503"},
}


def test_the_billing_routes_are_published_with_their_problems(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    for (path, method), problems in NEW_ROUTES.items():
        responses = paths[path][method]["responses"]
        assert problems <= set(responses), (path, method)
        for status in problems:
            schema = responses[status]["content"]["application/problem+json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Problem"}


def test_no_server_errors_on_the_billing_routes(
    billing_api: Api, client: httpx.Client, account: Account, tmp_path: Path
) -> None:
    put_on_plan(billing_api, account.id, "fuzz", rate_limit_per_minute=100_000)
    set_user(billing_api, account.id, role=Role.admin)
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{billing_api.url}/openapi.json",
        "--url",
        billing_api.url,
        "--header",
        f"Authorization: Bearer {account.access_token}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,fuzzing",
        "--max-examples",
        "30",
        "--workers",
        "1",
        "--seed",
        "20261203",
        "--request-timeout",
        "30",
        "--include-path-regex",
        "^/api/(credits/topup|credits/history|billing/|admin/payments/)",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
