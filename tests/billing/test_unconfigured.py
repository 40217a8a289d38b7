"""A studio with no payment provider configured (no Stripe keys): purchases and webhooks answer
503 "payments are not configured" and nothing is granted. The app runs in-process (FastAPI's
TestClient): no route here needs Ray."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from cluster.settings import Settings
from db.models import Payment
from db.session import session_scope
from deployments.api.app import create_app
from deployments.api.security import create_access_token
from tests.billing.conftest import available, new_user
from tests.fakes.stripe import FakeStripe


@pytest.fixture
def unconfigured(database_url: str, tmp_path: Path) -> Iterator[tuple[Settings, TestClient]]:
    settings = Settings(data_dir=tmp_path, database_url=database_url, _env_file=None)
    with TestClient(create_app(settings)) as client:
        yield settings, client


def test_a_studio_without_a_provider_refuses_topups_and_grants_nothing(
    unconfigured: tuple[Settings, TestClient], fake_stripe: FakeStripe
) -> None:
    settings, client = unconfigured
    url = settings.resolved_database_url
    user = new_user(url)
    auth = {"Authorization": f"Bearer {create_access_token(settings, user.id, 'user')}"}
    event = fake_stripe.event(
        "checkout.session.completed",
        {
            "id": "cs_test_1",
            "mode": "payment",
            "payment_status": "paid",
            "payment_intent": "pi_1",
            "metadata": {"user_id": str(user.id), "credits": "500"},
        },
    )
    payload = json.dumps(event).encode()

    topup = client.post(
        "/api/credits/topup", headers={**auth, "Idempotency-Key": "k1"}, json={"credits": 500}
    )
    subscribe = client.post("/api/billing/subscribe", headers=auth, json={"plan": "creator"})
    webhook = client.post(
        "/api/billing/webhook",
        content=payload,
        headers={"Stripe-Signature": fake_stripe.sign(payload)},
    )

    for response in (topup, subscribe, webhook):
        assert response.status_code == 503, response.text
        problem = response.json()
        assert problem["type"].endswith("/payments-not-configured")
        assert problem["detail"] == "payments are not configured"
    assert available(url, user.id) == 0
    with session_scope(url) as session:
        assert session.exec(select(Payment).where(Payment.user_id == user.id)).all() == []
