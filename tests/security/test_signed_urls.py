"""Signed download URLs tampered with in every part the signature covers, or stripped of it:
refused (403 `signature-invalid`, or 422 for a missing part), never the file."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.api.conftest import Account, png_bytes

pytestmark = pytest.mark.ray

Query = dict[str, str]


def flip(text: str) -> str:
    return text[:-1] + ("0" if text[-1] != "0" else "1")


TAMPERS: dict[str, Callable[[str, Query], tuple[str, Query]]] = {
    "signature zeroed": lambda path, q: (path, q | {"sig": "0" * 64}),
    "signature, last digit changed": lambda path, q: (path, q | {"sig": flip(q["sig"])}),
    "signature in upper case": lambda path, q: (path, q | {"sig": q["sig"].upper()}),
    "signature truncated": lambda path, q: (path, q | {"sig": q["sig"][:63]}),
    "signature missing": lambda path, q: (path, {k: v for k, v in q.items() if k != "sig"}),
    "expiry moved later": lambda path, q: (path, q | {"expires": str(int(q["expires"]) + 3600)}),
    "expiry in the past": lambda path, q: (path, q | {"expires": "1"}),
    "expiry missing": lambda path, q: (path, {k: v for k, v in q.items() if k != "expires"}),
    "key changed": lambda path, q: (path[:-1] + flip(path[-1]), q),
    "key of another file": lambda path, q: (path.rsplit("/", 1)[0] + "/studio.db", q),
}


@pytest.fixture
def link(client: httpx.Client, account: Account, project: str) -> str:
    asset = client.post(
        f"/api/projects/{project}/assets",
        headers=account.auth,
        files={"file": ("face.png", png_bytes(), "image/png")},
    ).json()
    url: str = client.get(f"/api/assets/{asset['id']}/download", headers=account.auth).json()["url"]
    return url


def test_a_tampered_link_never_serves_a_file(link: str) -> None:
    url = urlsplit(link)
    query = {name: values[0] for name, values in parse_qs(url.query).items()}
    assert httpx.get(link, timeout=30).status_code == 200  # the link itself works
    served = []
    for name, tamper in TAMPERS.items():
        path, changed = tamper(url.path, query)
        response = httpx.get(f"{url.scheme}://{url.netloc}{path}?{urlencode(changed)}", timeout=30)
        if response.status_code not in (403, 404, 422):
            served.append((name, response.status_code))
    print(f"signed URLs: {len(TAMPERS)} tampered links")
    assert served == []
