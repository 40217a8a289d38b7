"""Google sign-in joins only verified accounts: the account pre-hijacking scenario fails, the
owner of an address reclaims it by email and connects Google from the profile, and a Google
sign-up receives its plan's credits."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from cluster.settings import Settings
from db.addresses import normalise
from db.models import OAuthAccount, Plan
from db.session import session_scope
from deployments.api.security import decode_token
from tests.accounts.conftest import (
    PASSWORD,
    Mailbox,
    assert_problem,
    bearer,
    google_flow,
    login,
    new_email,
    register,
)
from tests.fakes.google import FakeGoogle

VICTIMS_PASSWORD = "the owner's own new password"


def identities(database_url: str, subject: str) -> list[OAuthAccount]:
    with session_scope(database_url) as session:
        return list(session.exec(select(OAuthAccount).where(OAuthAccount.subject == subject)))


def subject_of(settings: Settings, tokens: dict[str, str]) -> str:
    return str(decode_token(settings, tokens["access_token"], "access")["sub"])


def test_pre_hijacking_fails(
    api: TestClient, google: FakeGoogle, studio: Settings, mailbox: Mailbox
) -> None:
    """Someone registers the victim's address with a password; the victim signs in with Google.
    No merge happens; the victim reclaims the address by email, connects Google, and the first
    registrant's password opens nothing."""
    victim = google.account.email
    squatter_id = register(studio, victim, password=PASSWORD)
    squatter = login(api, victim).json()

    refused = google_flow(api, google)

    assert_problem(refused, 409, "sign-in-with-password")
    assert "sign in with" in refused.json()["detail"]
    assert identities(studio.resolved_database_url, google.account.sub) == []

    # The owner of the inbox resets the password: every login of the squatter ends.
    assert api.post("/api/users/password-reset", json={"email": victim}).status_code == 202
    reset = {"token": mailbox.token(victim), "new_password": VICTIMS_PASSWORD}
    assert api.post("/api/users/password-reset/confirm", json=reset).status_code == 204
    assert_problem(login(api, victim, PASSWORD), 401, "unauthorized")
    stale = api.post("/api/users/refresh", json={"refresh_token": squatter["refresh_token"]})
    assert_problem(stale, 401, "unauthorized")

    # Signed in with the new password, the owner connects Google; Google sign-in then opens it.
    owner = login(api, victim, VICTIMS_PASSWORD).json()
    connected = google_flow(api, google, "connect", **bearer(owner))
    assert connected.status_code == 200, connected.text
    assert connected.json()["connected"] is True
    signed_in = google_flow(api, google)
    assert signed_in.status_code == 200, signed_in.text
    assert subject_of(studio, signed_in.json()) == squatter_id == subject_of(studio, owner)
    assert_problem(login(api, victim, PASSWORD), 401, "unauthorized")


def test_the_squatters_account_is_not_the_google_users(
    api: TestClient, google: FakeGoogle, studio: Settings
) -> None:
    """Refused sign-ins leave the password account exactly as it was: no Google identity."""
    register(studio, google.account.email)
    for _ in range(2):
        assert_problem(google_flow(api, google), 409, "sign-in-with-password")

    tokens = login(api, google.account.email).json()
    profile = api.get("/api/users/profile", headers=bearer(tokens)).json()
    assert profile["email_verified"] is False
    assert identities(studio.resolved_database_url, google.account.sub) == []


def test_sign_in_joins_an_account_whose_email_was_verified(
    api: TestClient, google: FakeGoogle, studio: Settings, mailbox: Mailbox
) -> None:
    email = google.account.email
    user_id = register(studio, email)
    tokens = login(api, email).json()
    assert api.post("/api/users/verify-email", headers=bearer(tokens)).status_code == 202
    confirm = {"token": mailbox.token(email)}
    assert api.post("/api/users/verify-email/confirm", json=confirm).status_code == 204

    signed_in = google_flow(api, google)

    assert signed_in.status_code == 200, signed_in.text
    assert subject_of(studio, signed_in.json()) == user_id
    [identity] = identities(studio.resolved_database_url, google.account.sub)
    assert str(identity.user_id) == user_id


def test_a_google_address_in_another_form_is_the_same_account(
    api: TestClient, google: FakeGoogle, studio: Settings
) -> None:
    """Someone registered the address in its normal form (the domain as IDNA A-labels); Google
    gives it in Unicode and capitals. It is the same address: the sign-in is refused as for any
    unverified account with that address, and no second account is made with it."""
    google.account.email = f"ada.{uuid.uuid4().hex[:8]}@BÜCHER.example"
    register(studio, normalise(google.account.email))

    assert_problem(google_flow(api, google), 409, "sign-in-with-password")
    assert identities(studio.resolved_database_url, google.account.sub) == []


@pytest.mark.ray
def test_a_google_sign_up_receives_the_plans_grant(
    api: TestClient, google: FakeGoogle, studio: Settings, ray_session: None
) -> None:
    signed_in = google_flow(api, google)

    assert signed_in.status_code == 200, signed_in.text
    balance = api.get("/api/credits/balance", headers=bearer(signed_in.json())).json()
    with session_scope(studio.resolved_database_url) as session:
        free = session.exec(select(Plan).where(Plan.code == "free")).one()
    assert free.monthly_credits > 0
    assert balance == {"available": free.monthly_credits, "held": 0}


def test_connecting_needs_a_signed_in_user(api: TestClient) -> None:
    assert_problem(api.get("/api/auth/google/start?purpose=connect"), 401, "unauthorized")


def test_a_google_account_connects_to_one_studio_account_only(
    api: TestClient, google: FakeGoogle, studio: Settings
) -> None:
    first, second = new_email(), new_email()
    register(studio, first)
    register(studio, second)
    connected = google_flow(api, google, "connect", **bearer(login(api, first).json()))
    assert connected.status_code == 200, connected.text

    refused = google_flow(api, google, "connect", **bearer(login(api, second).json()))

    assert_problem(refused, 409, "conflict")
