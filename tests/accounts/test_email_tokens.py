"""Email verification and password reset through a local SMTP server: tokens arrive by mail,
are stored hashed, work once, expire, and a reset ends every login."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import text, update
from sqlmodel import col, select

from cluster.settings import Settings
from db.models import EmailToken
from db.session import session_scope
from db.types import utcnow
from pipeline.mail import SmtpServer
from tests.accounts.conftest import (
    Mailbox,
    assert_problem,
    bearer,
    client_for,
    login,
    new_email,
    register,
    smtp_with_login,
)

NEW_PASSWORD = "a brand new passphrase"


def ask_verification(api: TestClient, studio: Settings, mailbox: Mailbox) -> tuple[str, dict]:
    """A new account that asked for a verification mail: its email and tokens."""
    email = new_email()
    register(studio, email)
    tokens = login(api, email).json()
    assert api.post("/api/users/verify-email", headers=bearer(tokens)).status_code == 202
    mailbox.wait_for(email)
    return email, tokens


def ask_reset(api: TestClient, mailbox: Mailbox, email: str, count: int = 1) -> str:
    assert api.post("/api/users/password-reset", json={"email": email}).status_code == 202
    return mailbox.token(email, count)


def confirm_reset(api: TestClient, token: str, password: str = NEW_PASSWORD) -> int:
    body = {"token": token, "new_password": password}
    return api.post("/api/users/password-reset/confirm", json=body).status_code


def expire_tokens(studio: Settings, email: str) -> None:
    with session_scope(studio.resolved_database_url) as session:
        session.exec(
            update(EmailToken)
            .where(col(EmailToken.email) == email)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )


def test_verification_mail_verifies_the_email_once(
    api: TestClient, studio: Settings, mailbox: Mailbox
) -> None:
    email, tokens = ask_verification(api, studio, mailbox)
    message = mailbox.wait_for(email)
    token = mailbox.token(email)

    first = api.post("/api/users/verify-email/confirm", json={"token": token})
    again = api.post("/api/users/verify-email/confirm", json={"token": token})

    assert message["From"] == studio.mail_from and message["Subject"] == "Verify your email"
    assert first.status_code == 204, first.text
    assert_problem(again, 400, "token-invalid")
    assert api.get("/api/users/profile", headers=bearer(tokens)).json()["email_verified"] is True


def test_an_expired_verification_token_does_nothing(
    api: TestClient, studio: Settings, mailbox: Mailbox
) -> None:
    email, tokens = ask_verification(api, studio, mailbox)
    expire_tokens(studio, email)

    response = api.post("/api/users/verify-email/confirm", json={"token": mailbox.token(email)})

    assert_problem(response, 400, "token-invalid")
    assert api.get("/api/users/profile", headers=bearer(tokens)).json()["email_verified"] is False


def test_a_verified_email_is_not_verified_again(
    api: TestClient, studio: Settings, mailbox: Mailbox
) -> None:
    email, tokens = ask_verification(api, studio, mailbox)
    api.post("/api/users/verify-email/confirm", json={"token": mailbox.token(email)})

    assert_problem(api.post("/api/users/verify-email", headers=bearer(tokens)), 409, "conflict")


def test_tokens_are_stored_only_as_their_sha256(
    api: TestClient, studio: Settings, mailbox: Mailbox
) -> None:
    email, _ = ask_verification(api, studio, mailbox)
    token = mailbox.token(email)

    with session_scope(studio.resolved_database_url) as session:
        [row] = session.exec(select(EmailToken).where(EmailToken.email == email)).all()
        stored = session.execute(text("SELECT * FROM email_tokens")).all()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert not any(token in str(value) for line in stored for value in line)
    assert row.expires_at - row.created_at == timedelta(seconds=studio.email_verification_ttl_s)


def test_password_reset_sets_the_password_and_ends_every_login(
    api: TestClient, studio: Settings, mailbox: Mailbox
) -> None:
    email = new_email()
    register(studio, email)
    before = login(api, email).json()

    assert confirm_reset(api, ask_reset(api, mailbox, email)) == 204

    assert_problem(login(api, email), 401, "unauthorized")
    assert login(api, email, NEW_PASSWORD).status_code == 200
    refreshed = api.post("/api/users/refresh", json={"refresh_token": before["refresh_token"]})
    assert_problem(refreshed, 401, "unauthorized")


def test_a_reset_token_works_once(api: TestClient, studio: Settings, mailbox: Mailbox) -> None:
    email = new_email()
    register(studio, email)
    token = ask_reset(api, mailbox, email)

    assert confirm_reset(api, token) == 204
    body = {"token": token, "new_password": "the attacker's choice"}
    assert_problem(api.post("/api/users/password-reset/confirm", json=body), 400, "token-invalid")
    assert login(api, email, NEW_PASSWORD).status_code == 200


def test_an_expired_reset_token_does_nothing(
    api: TestClient, studio: Settings, mailbox: Mailbox
) -> None:
    email = new_email()
    register(studio, email)
    token = ask_reset(api, mailbox, email)
    expire_tokens(studio, email)

    body = {"token": token, "new_password": NEW_PASSWORD}
    assert_problem(api.post("/api/users/password-reset/confirm", json=body), 400, "token-invalid")
    assert login(api, email).status_code == 200


def test_a_new_reset_mail_voids_the_previous_link(
    api: TestClient, studio: Settings, mailbox: Mailbox
) -> None:
    email = new_email()
    register(studio, email)
    first = ask_reset(api, mailbox, email)
    second = ask_reset(api, mailbox, email, count=2)

    assert confirm_reset(api, first) == 400
    assert confirm_reset(api, second) == 204


def test_a_verification_token_does_not_reset_the_password(
    api: TestClient, studio: Settings, mailbox: Mailbox
) -> None:
    email, _ = ask_verification(api, studio, mailbox)

    assert confirm_reset(api, mailbox.token(email)) == 400
    assert login(api, email).status_code == 200


def test_a_reset_for_an_unknown_address_answers_the_same_and_sends_nothing(
    api: TestClient, studio: Settings, mailbox: Mailbox
) -> None:
    known, unknown = new_email(), new_email()
    register(studio, known)

    answers = [
        api.post("/api/users/password-reset", json={"email": address})
        for address in (known, unknown)
    ]

    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].json() == answers[1].json()
    mailbox.wait_for(known)
    assert mailbox.to(unknown) == []


def test_without_smtp_both_requests_answer_503(studio: Settings) -> None:
    email = new_email()
    register(studio, email)
    with client_for(studio.model_copy(update={"smtp_url": None})) as api:
        tokens = login(api, email).json()
        reset = api.post("/api/users/password-reset", json={"email": email})
        verify = api.post("/api/users/verify-email", headers=bearer(tokens))

    assert_problem(reset, 503, "mail-unavailable")
    assert_problem(verify, 503, "mail-unavailable")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SmtpServer("mail.example.com", 587, False)),
        ("smtps://mail.example.com", SmtpServer("mail.example.com", 465, True)),
        (
            "smtp://studio%40example.com:p%3Ass@127.0.0.1:2525",
            SmtpServer("127.0.0.1", 2525, False, "studio@example.com", "p:ss"),
        ),
    ],
)
def test_smtp_url_names_server_port_tls_and_login(url: str, expected: SmtpServer) -> None:
    assert SmtpServer.from_url(url) == expected


def test_an_smtp_url_of_another_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="smtp://"):
        SmtpServer.from_url("http://mail.example.com")


def test_mail_is_sent_with_the_configured_login(studio: Settings) -> None:
    """The server asks for AUTH; the studio logs in with the URL's user and password."""
    with smtp_with_login("studio", "s3cret") as (url, logins, box):
        settings = studio.model_copy(update={"smtp_url": SecretStr(url)})
        email = new_email()
        register(settings, email)
        with client_for(settings) as api:
            assert api.post("/api/users/password-reset", json={"email": email}).status_code == 202
        box.wait_for(email)
    assert logins == [("studio", "s3cret")]
