"""Look-alike addresses are one account: registration and login compare addresses in their
normal form (`db.addresses`), and a local part that mixes scripts is refused."""

from __future__ import annotations

import unicodedata
import uuid

import httpx
import pytest

from tests.api.conftest import PASSWORD, assert_problem, register

LOOK_ALIKES = {
    "zero-width space": lambda local, domain: f"{local}\u200b@{domain}",
    "soft hyphen": lambda local, domain: f"{local[:3]}\u00ad{local[3:]}@{domain}",
    "full-width letter": lambda local, domain: f"\uff44{local[1:]}@{domain}",
    "upper-case domain": lambda local, domain: f"{local}@{domain.upper()}",
    "trailing dot": lambda local, domain: f"{local}@{domain}.",
    "decomposed": lambda local, domain: unicodedata.normalize("NFD", f"{local}@{domain}"),
    "unicode domain": lambda local, domain: f"{local}@{domain.replace('xn--bcher-kva', 'bücher')}",
}


@pytest.mark.parametrize("variant", sorted(LOOK_ALIKES))
def test_a_look_alike_address_is_the_same_account(client: httpx.Client, variant: str) -> None:
    local, domain = f"d\u00e9j\u00e0-{uuid.uuid4().hex[:8]}", "xn--bcher-kva.example"
    original = register(client, f"{local}@{domain}")
    look_alike = LOOK_ALIKES[variant](local, domain)
    assert look_alike != original.email
    again = client.post("/api/users/register", json={"email": look_alike, "password": PASSWORD})
    assert_problem(again, 409, "conflict")
    login = client.post("/api/users/login", json={"email": look_alike, "password": PASSWORD})
    assert login.status_code == 200, login.text
    profile = client.get(
        "/api/users/profile", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
    )
    assert profile.json()["id"] == str(original.id)


@pytest.mark.parametrize(
    "local",
    ["\u0501up", "p\u0430ypal", "\u03bfpen-door"],
    ids=["cyrillic-d", "cyrillic-a", "greek-o"],
)
def test_a_local_part_that_mixes_scripts_is_refused(client: httpx.Client, local: str) -> None:
    email = f"{local}-{uuid.uuid4().hex[:8]}@example.com"
    response = client.post("/api/users/register", json={"email": email, "password": PASSWORD})
    body = assert_problem(response, 422, "validation-error")
    assert "mixes letters of different scripts" in response.text, body


@pytest.mark.parametrize("local", ["иван", "山田たろう", "résumé"])
def test_single_script_addresses_register(client: httpx.Client, local: str) -> None:
    email = f"{local}{uuid.uuid4().int % 10**9}@example.com"
    response = client.post("/api/users/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    assert response.json()["email"] == unicodedata.normalize("NFKC", email)
