"""The web studio's account pages in process, with mail through the local SMTP server: a
password reset and an email verification done entirely through pages and the mailed links."""

from __future__ import annotations

from urllib.parse import urlparse

from fastapi.testclient import TestClient
from sqlmodel import select

from cluster.settings import Settings
from db.models import User
from db.session import session_scope
from deployments.api.app import create_app
from deployments.api.ratelimit import LocalLimiter
from tests.accounts.conftest import PASSWORD, Mailbox, new_email, register
from tests.web.conftest import form_token

NEW_PASSWORD = "a brand new passphrase"


def link_in_mail(mailbox: Mailbox, email: str) -> str:
    """The path and query of the link in the latest mail to `email`."""
    body = mailbox.wait_for(email, len(mailbox.to(email))).get_body(("plain",))
    assert body is not None
    link = next(w for w in body.get_content().split() if w.startswith("http"))
    parsed = urlparse(link)
    return f"{parsed.path}?{parsed.query}"


def sign_in(api: TestClient, email: str, password: str) -> int:
    token = form_token(api.get("/sign-in"))
    form = {"email": email, "password": password, "csrf_token": token}
    return api.post("/sign-in", data=form, follow_redirects=False).status_code


def test_a_password_is_reset_through_the_pages_and_the_mailed_link(
    api: TestClient, studio: Settings, mailbox: Mailbox
) -> None:
    email = new_email()
    register(studio, email)
    asked = api.post(
        "/reset-password",
        data={"email": email, "csrf_token": form_token(api.get("/reset-password"))},
    )
    assert asked.status_code == 200 and "reset link is on its way" in asked.text
    reset_page = api.get(link_in_mail(mailbox, email))
    assert 'name="new_password"' in reset_page.text
    token = reset_page.text.split('name="token" value="')[1].split('"')[0]
    form = {"token": token, "new_password": NEW_PASSWORD, "csrf_token": form_token(reset_page)}
    done = api.post("/reset-password/confirm", data=form, follow_redirects=False)
    assert done.status_code == 303 and "/sign-in?notice=" in done.headers["location"]
    # The token worked once; the old password no longer signs in, the new one does.
    again = api.post("/reset-password/confirm", data=form)
    assert again.status_code == 400 and 'class="error"' in again.text
    assert sign_in(api, email, PASSWORD) == 401
    assert sign_in(api, email, NEW_PASSWORD) == 303
    assert api.get("/", follow_redirects=False).status_code == 200


def test_an_email_is_verified_through_the_pages_and_the_mailed_link(
    api: TestClient, studio: Settings, mailbox: Mailbox
) -> None:
    email = new_email()
    register(studio, email)
    assert sign_in(api, email, PASSWORD) == 303
    credits = api.get("/credits")
    assert "(not verified)" in credits.text
    sent = api.post("/verify-email/send", data={"csrf_token": form_token(credits)})
    assert sent.status_code == 200 and "verification link is on its way" in sent.text
    confirm_page = api.get(link_in_mail(mailbox, email))
    token = confirm_page.text.split('name="token" value="')[1].split('"')[0]
    verified = api.post(
        "/verify-email", data={"token": token, "csrf_token": form_token(confirm_page)}
    )
    assert verified.status_code == 200 and "Your email is verified" in verified.text
    with session_scope(studio.resolved_database_url) as session:
        user = session.exec(select(User).where(User.email == email)).one()
        assert user.email_verified
    assert "(verified)" in api.get("/credits").text


def test_behind_https_the_session_cookie_is_secure(studio: Settings) -> None:
    email = new_email()
    register(studio, email)
    behind_tls = studio.model_copy(update={"public_url": "https://studio.example"})
    # The browser speaks HTTPS: a Secure cookie is only sent back over it.
    with TestClient(
        create_app(behind_tls, LocalLimiter()), base_url="https://studio.example"
    ) as api:
        token = form_token(api.get("/sign-in"))
        form = {"email": email, "password": PASSWORD, "csrf_token": token}
        signed_in = api.post("/sign-in", data=form, follow_redirects=False)
    assert signed_in.status_code == 303
    cookie = signed_in.headers["set-cookie"].lower()
    assert cookie.startswith("studio_session=")
    assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie
