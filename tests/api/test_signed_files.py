"""Signed file URLs cover the name a file downloads as: a link cannot be renamed."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx

from pipeline.storage import LocalStorage, open_storage
from tests.api.conftest import Api, assert_problem


def _stored(api: Api) -> LocalStorage:
    storage = open_storage(api.settings)
    assert isinstance(storage, LocalStorage)
    storage.put_bytes("signed/film.mp4", b"not really a film")
    return storage


def test_a_signed_name_downloads_under_that_name(api: Api) -> None:
    url = _stored(api).url("signed/film.mp4", 60, filename="dawn.mp4")
    response = httpx.get(url)
    assert response.status_code == 200, response.text
    assert response.content == b"not really a film"
    assert response.headers["content-disposition"] == 'attachment; filename="dawn.mp4"'
    assert response.headers["x-content-type-options"] == "nosniff"


def test_an_added_name_breaks_the_signature(api: Api) -> None:
    url = _stored(api).url("signed/film.mp4", 60)
    assert httpx.get(url).status_code == 200
    renamed = httpx.get(f"{url}&{urlencode({'filename': 'evil.html'})}")
    assert_problem(renamed, 403, "signature-invalid")


def test_a_changed_name_breaks_the_signature(api: Api) -> None:
    url = _stored(api).url("signed/film.mp4", 60, filename="dawn.mp4")
    renamed = httpx.get(url.replace("filename=dawn.mp4", "filename=evil.html"))
    assert_problem(renamed, 403, "signature-invalid")
