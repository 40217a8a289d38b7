"""The pages over plain HTTP: no page without a session, no form without its CSRF token, a
strict policy on every page, nothing of the pages in the OpenAPI schema; one test per family
of pages (render, watch and publish, Google sign-in, credits, admin) through the studio's
fakes of Stripe and Google."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest
from sqlmodel import col, select

from db.models import (
    AuditLog,
    Job,
    JobStatus,
    ModerationFlag,
    ModerationStatus,
    Project,
    Reservation,
    Role,
    User,
)
from db.session import session_scope
from db.types import utcnow
from pipeline.publish.disclosure import LABEL_OFF
from tests.api.conftest import PASSWORD, Api, insert_job, png_bytes, set_user
from tests.fakes.google import FakeGoogle, GoogleAccount
from tests.fakes.stripe import FakeStripe
from tests.web.conftest import form_token
from tests.youtube import rendered_project

pytestmark = [pytest.mark.ray]

# No film or job has it (a fixed id: test ids stay the same from run to run).
UNKNOWN = "0b3c5d7e-1f2a-4b6c-8d9e-0a1b2c3d4e5f"
PAGES = (
    "/",
    "/films/new",
    "/credits",
    f"/films/{UNKNOWN}",
    f"/films/{UNKNOWN}/watch",
    f"/films/{UNKNOWN}/subtitles.vtt",
    f"/jobs/{UNKNOWN}",
    f"/jobs/{UNKNOWN}/events",
    f"/films/{UNKNOWN}/publish",
    f"/films/{UNKNOWN}/publish/link",
    "/billing/done",
    "/admin",
    "/admin/moderation",
)
ROOT = "/web"
STORY = "A fox finds a grape vine. The grapes hang too high. The fox walks away."


def sign_up(client: httpx.Client) -> str:
    """Signs a new account up (and in); returns its email."""
    token = form_token(client.get("/sign-up"))
    email = f"pages-{uuid.uuid4().hex[:10]}@example.com"
    form = {"email": email, "password": PASSWORD, "csrf_token": token}
    response = client.post("/sign-up", data=form)
    assert response.status_code == 303, response.text
    return email


def signed_up(client: httpx.Client, studio: Api) -> User:
    email = sign_up(client)
    with session_scope(studio.database_url) as session:
        return session.exec(select(User).where(User.email == email)).one()


def page_path(response: httpx.Response) -> str:
    """Where a page redirects, as a path for the client (below the studio's root)."""
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(f"{ROOT}/"), location
    return location.removeprefix(ROOT)


def hidden(response: httpx.Response, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', response.text)
    assert found, response.text
    return found.group(1)


@pytest.mark.parametrize("path", PAGES)
def test_a_page_without_a_session_redirects_to_sign_in(studio: Api, path: str) -> None:
    with studio.client() as client:
        response = client.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == "/web/sign-in"


def test_a_form_without_its_csrf_token_is_refused(studio: Api) -> None:
    with studio.client() as client:
        page = client.get("/sign-up")
        email = f"csrf-{uuid.uuid4().hex[:10]}@example.com"
        form = {"email": email, "password": PASSWORD}
        assert client.post("/sign-up", data=form).status_code == 403
        wrong = client.post("/sign-up", data=form | {"csrf_token": "0" * 64})
        assert wrong.status_code == 403
        assert "text/html" in wrong.headers["content-type"]
        # Nothing was created: the address is still free.
        right = client.post("/sign-up", data=form | {"csrf_token": form_token(page)})
        assert right.status_code == 303, right.text
        # Signed in, the pre-session token no longer posts; the session's does.
        story = {"story": "A fox finds a grape vine.", "csrf_token": form_token(page)}
        assert client.post("/films/new", data=story).status_code == 403
        story["csrf_token"] = form_token(client.get("/films/new"))
        planned = client.post("/films/new", data=story)
        assert planned.status_code == 303, planned.text


def test_a_session_ends_when_signed_out(studio: Api) -> None:
    with studio.client() as client:
        sign_up(client)
        cookie = client.cookies["studio_session"]
        films = client.get("/")
        assert films.status_code == 200
        signed_out = client.post("/sign-out", data={"csrf_token": form_token(films)})
        assert signed_out.status_code == 303
        assert "studio_session" not in client.cookies
    with studio.client() as replay:
        replay.cookies.set("studio_session", cookie)
        assert replay.get("/").status_code == 303


def test_every_page_has_a_strict_policy_and_a_samesite_httponly_cookie(studio: Api) -> None:
    with studio.client() as client:
        page = client.get("/sign-up")
        cookie = page.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        policy = page.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "unsafe-inline" not in policy
        assert "form-action 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "<script>" not in page.text and " style=" not in page.text


def test_bad_input_on_a_page_is_a_4xx_page_with_the_reason(studio: Api) -> None:
    with studio.client() as client:
        sign_up(client)
        token = form_token(client.get("/films/new"))
        empty = client.post("/films/new", data={"story": "   ", "csrf_token": token})
        assert 400 <= empty.status_code < 500
        assert 'class="error"' in empty.text
        wrong = client.post(
            "/films/new", data={"story": "A tale.", "resolution": "4000", "csrf_token": token}
        )
        assert wrong.status_code == 422 and "resolution" in wrong.text
        missing = client.get(f"/films/{UNKNOWN}")
        assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]


def test_the_pages_add_nothing_to_the_openapi_schema(studio: Api) -> None:
    with studio.client() as client:
        schema = client.get("/openapi.json").json()
    assert all(path.startswith("/api/") for path in schema["paths"]), list(schema["paths"])
    for operations in schema["paths"].values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                assert "text/html" not in response.get("content", {})


def test_a_double_posted_render_is_one_job_charged_once(studio: Api) -> None:
    with studio.client() as client:
        signed_up(client, studio)
        token = form_token(client.get("/films/new"))
        film = page_path(
            client.post(
                "/films/new", data={"story": STORY, "resolution": "144", "csrf_token": token}
            )
        )
        page = client.get(film)
        form = {"quality": "animatic", "idempotency_key": hidden(page, "idempotency_key")}
        assert client.post(f"{film}/render", data=form).status_code == 403
        form["csrf_token"] = form_token(page)
        first, second = (client.post(f"{film}/render", data=form) for _ in range(2))
        job = page_path(first)
        assert page_path(second) == job
        # Another view of the page is another render key: without one, no render.
        unkeyed = client.post(f"{film}/render", data=form | {"idempotency_key": ""})
        assert unkeyed.status_code == 422 and 'class="error"' in unkeyed.text
        cancel = client.post(f"{job}/cancel", data={"csrf_token": form["csrf_token"]})
        assert cancel.status_code == 303
    project_id = uuid.UUID(film.rsplit("/", 1)[1])
    with session_scope(studio.database_url) as session:
        jobs = session.exec(select(Job).where(Job.project_id == project_id)).all()
        assert [str(j.id) for j in jobs] == [job.rsplit("/", 1)[1]]
        reservations = session.exec(
            select(Reservation).where(Reservation.job_id == jobs[0].id)
        ).all()
        assert len(reservations) == 1


def test_a_film_is_published_with_the_chosen_thumbnail_after_linking_the_channel(
    studio: Api, google: FakeGoogle
) -> None:
    chosen = png_bytes(10, 10)
    stills = {"thumbnail.jpg": png_bytes(8, 8), "thumbnail1.jpg": png_bytes(9, 9)}
    stills |= {"thumbnail2.jpg": chosen, "storyboard.png": png_bytes(12, 12)}
    google.account = GoogleAccount()
    with studio.client() as client:
        user = signed_up(client, studio)
        project = rendered_project(studio.settings, user, b"an mp4", stills)
        watch = client.get(f"/films/{project.id}/watch")
        assert watch.status_code == 200
        choices = re.findall(r'name="thumbnail" value="([^"]+)"', watch.text)
        assert choices == ["thumbnail.jpg", "thumbnail1.jpg", "thumbnail2.jpg"]
        assert 'class="storyboard"' in watch.text and 'download="subtitles.srt"' in watch.text
        publish = f"/films/{project.id}/publish"
        unlinked = client.get(publish, params={"thumbnail": "thumbnail2.jpg"})
        assert "Link your YouTube channel" in unlinked.text

        # Linking: to Google and back to this page, the channel linked.
        started = client.get(f"{publish}/link")
        assert started.status_code == 303
        code, state = google.authorize(started.headers["location"])
        back = client.get("/api/auth/google/callback", params={"code": code, "state": state})
        assert page_path(back) == publish
        page = client.get(publish, params={"thumbnail": "thumbnail2.jpg"})
        assert google.account.email in page.text
        assert re.search(r'value="thumbnail2.jpg" checked', page.text)

        # A realistic engine made the film: its label goes off only with a reason.
        with session_scope(studio.database_url) as session:
            row = session.get(Project, project.id)
            assert row is not None
            film_key = row.outputs["film.mp4"]["key"]
        insert_job(
            studio, user.id, str(project.id), status=JobStatus.succeeded, completed_at=utcnow(),
            input={"engines": {"video": "wan"}},
            output={"outputs": {"film.mp4": {"key": film_key}}},
        )  # fmt: skip
        page = client.get(publish)
        form = {"title": "The Clockwork Garden", "privacy_status": "unlisted"}
        form |= {"thumbnail": "thumbnail2.jpg", "captions": "on", "csrf_token": form_token(page)}
        unlabelled = client.post(publish, data=form)
        assert unlabelled.status_code == 422 and "needs a reason" in unlabelled.text
        reason = "An animation of an invented world: nobody could take it for real."
        job = page_path(client.post(publish, data=form | {"label_off_reason": reason}))
        progress = client.get(job)
        assert progress.status_code == 200 and "Publish to YouTube" in progress.text

    job_id = uuid.UUID(job.rsplit("/", 1)[1])
    deadline = time.monotonic() + 60
    while (status := _job(studio, job_id).status) != JobStatus.succeeded:
        assert status not in (JobStatus.failed, JobStatus.cancelled) and time.monotonic() < deadline
        time.sleep(0.5)
    youtube_id = _job(studio, job_id).output["youtube_id"]
    assert google.thumbnails[youtube_id] == chosen
    assert google.videos[youtube_id]["status"]["containsSyntheticMedia"] is False
    with session_scope(studio.database_url) as session:
        audit = session.exec(select(AuditLog).where(AuditLog.action == LABEL_OFF)).all()
        assert [a.detail["reason"] for a in audit if a.actor_id == user.id] == [reason]


def _job(studio: Api, job_id: uuid.UUID) -> Job:
    with session_scope(studio.database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_google_sign_in_ends_in_a_cookie_session_without_tokens_in_urls(
    studio: Api, google: FakeGoogle
) -> None:
    google.account = GoogleAccount()
    with studio.client() as client:
        assert "Sign in with Google" in client.get("/sign-in").text
        started = client.get("/sign-in/google")
        assert started.status_code == 303
        code, state = google.authorize(started.headers["location"])
        done = client.get("/api/auth/google/callback", params={"code": code, "state": state})
        assert page_path(done) == "/"
        assert "token" not in done.headers["location"] and "code" not in done.headers["location"]
        assert "studio_session" in client.cookies
        assert client.get("/").status_code == 200
        # A refused callback of a flow the pages started is a page, not a problem document.
        client.get("/sign-in/google")
        refused = client.get("/api/auth/google/callback", params={"code": "x", "state": "forged"})
        assert refused.status_code == 400 and "text/html" in refused.headers["content-type"]


def test_credits_are_bought_and_plans_chosen_through_stripe_checkout(
    studio: Api, fake_stripe: FakeStripe
) -> None:
    with studio.client() as client:
        signed_up(client, studio)
        page = client.get("/credits")
        assert f"form-action 'self' {fake_stripe.url};" in page.headers["content-security-policy"]
        form = {"credits": "100", "purchase_key": hidden(page, "purchase_key")}
        assert client.post("/credits/buy", data=form).status_code == 403
        form["csrf_token"] = form_token(page)
        first, again = (client.post("/credits/buy", data=form) for _ in range(2))
        assert first.status_code == 303
        assert first.headers["location"].startswith(f"{fake_stripe.url}/c/pay/")
        assert again.headers["location"] == first.headers["location"]
        odd = client.post("/credits/buy", data=form | {"credits": "7"})
        assert odd.status_code == 422 and "packs of" in odd.text
        plan = client.post(
            "/credits/plan", data={"plan": "creator", "csrf_token": form["csrf_token"]}
        )
        assert plan.status_code == 303
        assert plan.headers["location"].startswith(f"{fake_stripe.url}/c/pay/")
        back = client.get("/billing/done", params={"session_id": "cs_test"})
        assert page_path(back).startswith("/credits?notice=")


def test_the_admin_pages_answer_admins_only(studio: Api) -> None:
    with studio.client() as client:
        user = signed_up(client, studio)
        refused = client.get("/admin")
        assert refused.status_code == 403 and "text/html" in refused.headers["content-type"]
        assert client.get("/admin/moderation").status_code == 403
        set_user(studio, user.id, role=Role.admin)
        job = insert_job(studio, user.id, status=JobStatus.held)
        with session_scope(studio.database_url) as session:
            flag = ModerationFlag(
                user_id=user.id, job_id=job.id, kind="prompt", excerpt="a forbidden scene",
                reason="violence",
            )  # fmt: skip
            session.add(flag)
        analytics = client.get("/admin", params={"days": 7})
        assert analytics.status_code == 200 and "Users (all)" in analytics.text
        queue = client.get("/admin/moderation")
        assert "a forbidden scene" in queue.text
        reject = f"/admin/moderation/{flag.id}/reject"
        assert client.post(reject, data={"reason": "Not here."}).status_code == 403
        done = client.post(reject, data={"reason": "Not here.", "csrf_token": form_token(queue)})
        assert page_path(done).startswith("/admin/moderation?notice=")
    with session_scope(studio.database_url) as session:
        decided = session.get(ModerationFlag, flag.id)
        assert decided is not None and decided.status == ModerationStatus.rejected
        rejected = session.get(Job, job.id)
        assert rejected is not None and rejected.status == JobStatus.failed
        audit = session.exec(select(AuditLog).where(col(AuditLog.target_id) == str(flag.id))).one()
        assert audit.action == "moderation.rejected" and audit.actor_id == user.id
