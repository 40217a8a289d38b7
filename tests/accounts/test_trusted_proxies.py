"""The per-IP limit behind a load balancer: `X-Forwarded-For` names the client only when the
request comes from a listed proxy, read from the right past every trusted hop."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from cluster.settings import Settings
from deployments.api.ratelimit import (
    IpRateLimitMiddleware,
    LocalLimiter,
    TrustedProxies,
    serve_environment,
)

LIMIT = 3
BALANCER = "10.0.0.7"
PROXIES = ["10.0.0.0/24", "192.168.5.5"]


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # not a proxy: the header is ignored
        (BALANCER, ["198.51.100.1"], "198.51.100.1"),
        (BALANCER, ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # the client's own entry is left
        (BALANCER, ["198.51.100.1, 192.168.5.5, 10.0.0.3"], "198.51.100.1"),  # trusted hops
        (BALANCER, ["198.51.100.1", "10.0.0.3"], "198.51.100.1"),  # two header lines
        (BALANCER, ["[2001:db8::1]:4711"], "2001:db8::1"),
        (BALANCER, ["198.51.100.1:4711"], "198.51.100.1"),
        (BALANCER, ["10.0.0.9, 10.0.0.3"], "10.0.0.9"),  # every hop trusted: the first
        (BALANCER, ["not-an-ip"], BALANCER),  # a trusted proxy never writes that
        (BALANCER, ["198.51.100.1, garbage, 10.0.0.3"], "10.0.0.3"),
        (BALANCER, [], BALANCER),
    ],
)
def test_client_address(peer: str, forwarded: list[str], client: str) -> None:
    assert TrustedProxies(PROXIES).client_address(peer, forwarded) == client


def test_with_no_proxies_listed_the_header_is_never_believed() -> None:
    assert TrustedProxies([]).client_address("127.0.0.1", ["198.51.100.1"]) == "127.0.0.1"


def test_the_setting_reads_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_TRUSTED_PROXIES", "10.0.0.0/24, 192.168.5.5")

    settings = Settings(_env_file=None)

    assert settings.trusted_proxies == PROXIES
    assert serve_environment(settings) == {"FORWARDED_ALLOW_IPS": "10.0.0.0/24,192.168.5.5"}


def test_serve_proxy_trusts_no_one_by_default() -> None:
    assert serve_environment(Settings(_env_file=None)) == {"FORWARDED_ALLOW_IPS": ""}


def statuses(peer: str, forwarded_for: list[str]) -> list[int]:
    """One request per `forwarded_for` value, all from `peer`, through the middleware with a
    limit of LIMIT a minute."""

    async def ok(_: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = IpRateLimitMiddleware(
        Starlette(routes=[Route("/", ok)]), LocalLimiter(), LIMIT, "test", PROXIES
    )

    async def send_all() -> list[int]:
        transport = httpx.ASGITransport(app=app, client=(peer, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://studio") as client:
            return [
                (await client.get("/", headers={"X-Forwarded-For": value})).status_code
                for value in forwarded_for
            ]

    return asyncio.run(send_all())


def test_a_forged_header_from_an_untrusted_peer_shares_its_budget() -> None:
    forged = [f"198.51.100.{n}" for n in range(LIMIT + 1)]

    assert statuses("203.0.113.9", forged) == [200] * LIMIT + [429]


def test_loopback_is_not_trusted_unless_listed() -> None:
    forged = [f"198.51.100.{n}" for n in range(LIMIT + 1)]

    assert statuses("127.0.0.1", forged) == [200] * LIMIT + [429]


def test_clients_behind_a_trusted_proxy_each_have_their_budget() -> None:
    clients = [f"198.51.100.{n}" for n in range(2 * LIMIT)]

    assert statuses(BALANCER, clients) == [200] * (2 * LIMIT)


def test_one_client_behind_a_trusted_proxy_is_limited() -> None:
    spoofing = [f"{n}.{n}.{n}.{n}, 198.51.100.1" for n in range(1, LIMIT + 2)]

    assert statuses(BALANCER, spoofing) == [200] * LIMIT + [429]
