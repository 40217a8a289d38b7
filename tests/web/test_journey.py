"""A new user's whole journey in Chromium: sign up, a film from a short story, one scene's
narration edited in place, the price, a render followed live to the end, the film played with
its subtitles, the .srt downloaded; a screenshot of every page."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import PASSWORD, Api

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("cpu_engines")]

STORY = """Mira climbed the hill before sunrise with her old camera.

At the top, the valley lay under a sea of fog, and the first light turned it gold.

"It was worth the climb," she whispered, and pressed the shutter."""


def test_a_new_user_plans_edits_renders_watches_and_downloads_a_film(
    studio: Api, browser: Any, artefacts: Path
) -> None:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    shots: list[str] = []

    def shot(name: str) -> None:
        path = artefacts / f"{len(shots) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path.name)

    # Sign up: a new account is signed in and sent to its (empty) films.
    page.goto(f"{studio.url}/sign-up")
    shot("sign-up")
    email = f"web-{uuid.uuid4().hex[:10]}@example.com"
    page.get_by_label("Email", exact=True).fill(email)
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(f"{studio.url}/")
    assert page.get_by_role("heading", name="Your films").is_visible()
    shot("films")

    # A new film from a short story: planned into scene cards.
    page.get_by_role("link", name="New film").first.click()
    page.get_by_label("Story", exact=True).fill(STORY)
    page.get_by_label("Resolution").select_option("144")
    shot("new-film")
    page.get_by_role("button", name="Plan the film").click()
    page.wait_for_url(re.compile(r"/films/[0-9a-f-]{36}$"))
    film_url = page.url
    scenes = page.locator("li.scene")
    assert scenes.count() >= 2
    assert "Mira" in page.locator("#narration-0").input_value()
    price = int(page.locator(".credits").get_attribute("data-credits") or "0")
    assert price > 0
    shot("plan")

    # On a phone the cards stack: nothing is wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    shot("plan-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 1100, "height": 900})

    # Edit the first scene's narration in place.
    edited = "Mira reached the summit as the fog turned to gold."
    page.locator("#narration-0").fill(edited)
    page.get_by_role("button", name="Save scene 1").click()
    page.wait_for_url(film_url)
    assert page.locator("#narration-0").input_value() == edited

    # The same form posted without its token is refused, and changes nothing.
    refused = context.request.post(
        f"{film_url}/scenes/0", form={"narration": "Forged.", "camera": "static"}
    )
    assert refused.status == 403
    page.reload()
    assert page.locator("#narration-0").input_value() == edited

    # Render, and follow it live to the end.
    page.get_by_role("button", name="Render").click()
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    shot("render-started")
    deadline = time.monotonic() + 600
    while page.locator("#job").get_attribute("data-status") not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, "the render did not finish in 10 minutes"
        page.wait_for_timeout(250)
    assert page.locator("#job").get_attribute("data-status") == "succeeded", page.content()
    assert page.locator("#job-progress").evaluate("bar => bar.value") == 100
    # The page was never reloaded: the status, bar and stages came through the event stream.
    assert page.locator("#job-stages tr").count() >= 3
    assert page.locator("#job-status").inner_text() == "succeeded"
    shot("render-done")

    # Watch: the film plays, with its subtitles track loaded.
    page.get_by_role("link", name="Watch the film").click()
    page.wait_for_url(re.compile(r"/films/[0-9a-f-]{36}/watch$"))
    player = page.locator("#player")
    player.evaluate("video => { video.muted = true; return video.play(); }")
    page.wait_for_function(
        "() => { const v = document.querySelector('#player'); return v.currentTime > 0.5; }"
    )
    playing: dict[str, Any] = player.evaluate(
        """video => ({duration: video.duration, time: video.currentTime,
                      width: video.videoWidth, height: video.videoHeight})"""
    )
    assert playing["duration"] > 1 and playing["time"] > 0.5
    assert playing["height"] == 144
    page.wait_for_function(
        """() => { const t = document.querySelector('#player').textTracks[0];
                   return t && t.cues && t.cues.length > 0; }"""
    )
    cues: list[str] = player.evaluate(
        "video => Array.from(video.textTracks[0].cues).map(cue => cue.text)"
    )
    assert any("summit" in cue for cue in cues), cues
    assert page.locator(".thumbnails img").count() >= 2
    assert page.locator("img.storyboard").evaluate("img => img.naturalWidth") > 0
    shot("watch")

    # Download the .srt: the edited narration is in it.
    with page.expect_download() as download:
        page.get_by_role("link", name="subtitles.srt").click()
    srt = Path(download.value.path()).read_text()
    assert re.search(r"^1\n00:00:\d\d,\d{3} --> 00:00:\d\d,\d{3}$", srt, re.MULTILINE), srt
    assert "summit" in srt

    # Credits: the render is in the history.
    page.get_by_role("link", name="Credits").click()
    assert page.locator("table.history").inner_text().count("capture") >= 1
    shot("credits")

    # Sign out: the pages send the visitor to sign in again.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/sign-in\?notice="))
    shot("signed-out")
    page.goto(film_url)
    assert page.url.startswith(f"{studio.url}/sign-in")
    context.close()
    assert len(shots) == 10
