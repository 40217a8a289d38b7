"""Rate limits that hold across every Serve replica: per client IP (all requests) and per user
(authenticated requests, at their plan's `rate_limit_per_minute`).

The counters live in one place shared by all replicas: a named Ray actor by default, Redis when
`STUDIO_REDIS_URL` is set. Outside Ray (a plain `uvicorn` process) they live in the process. The
algorithm is GCRA (a token bucket kept as one timestamp per key): a burst of `limit` requests,
then one every `period / limit`; a refused request learns exactly when to retry.

A limiter that cannot be reached lets requests through (and logs): rate limiting protects the
service, it must not take it down.

The per-IP limit counts the socket peer, unless the peer is a proxy listed in
`STUDIO_TRUSTED_PROXIES`: then `X-Forwarded-For` names the client, read from the right (each
proxy appends the address it saw) past every trusted hop, so a client cannot pick its address
by sending the header itself. Ray Serve's HTTP proxy (uvicorn) rewrites the peer from
`X-Forwarded-For` on its own for loopback peers unless `FORWARDED_ALLOW_IPS` says otherwise;
the studio's start-up sets it (`serve_environment`).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Iterable
from typing import Any, Protocol

import ray
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from cluster.settings import Settings
from deployments.api.problems import RateLimited, problem_for

log = logging.getLogger(__name__)

PERIOD_S = 60.0
ACTOR_NAME = "rate_limiter"
CALL_TIMEOUT_S = 2.0


class Gcra:
    """Per key, the theoretical arrival time of the next request (`tat`)."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._next_sweep = 0.0

    def hit(self, key: str, limit: int, period_s: float, now: float) -> float:
        """Counts a request; returns 0 when allowed, else the seconds until it would be."""
        interval = period_s / limit
        new_tat = max(self._tat.get(key, now), now) + interval
        allowed_at = new_tat - period_s
        if allowed_at > now:
            return allowed_at - now
        self._tat[key] = new_tat
        if now >= self._next_sweep:
            self._tat = {k: tat for k, tat in self._tat.items() if tat > now}
            self._next_sweep = now + period_s
        return 0.0


class Limiter(Protocol):
    async def hit(self, key: str, limit: int, period_s: float) -> float:
        """0 when the request is allowed, else the seconds to wait."""
        ...


class LocalLimiter:
    """Counters in this process: right only for a single-process server."""

    def __init__(self) -> None:
        self._gcra = Gcra()

    async def hit(self, key: str, limit: int, period_s: float) -> float:
        return self._gcra.hit(key, limit, period_s, time.monotonic())


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class RateLimitActor:
    """One per cluster, shared by every replica; keys carry their studio's prefix."""

    def __init__(self) -> None:
        self._gcra = Gcra()

    def hit(self, key: str, limit: int, period_s: float) -> float:
        return self._gcra.hit(key, limit, period_s, time.monotonic())


class ActorLimiter:
    def __init__(self) -> None:
        self._actor = RateLimitActor.options(  # type: ignore[attr-defined]
            name=ACTOR_NAME, namespace="studio", lifetime="detached", get_if_exists=True
        ).remote()

    async def hit(self, key: str, limit: int, period_s: float) -> float:
        return float(await self._actor.hit.remote(key, limit, period_s))


_GCRA_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local limit, period = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + period / limit
local allowed_at = new_tat - period
if allowed_at > now then return tostring(allowed_at - now) end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000))
return '0'
"""


class RedisLimiter:
    """GCRA as a Lua script, so each check is one atomic round trip on Redis's clock."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._client = redis.Redis.from_url(url)
        self._script = self._client.register_script(_GCRA_LUA)

    async def hit(self, key: str, limit: int, period_s: float) -> float:
        return float(await self._script(keys=[f"ratelimit:{key}"], args=[limit, period_s]))


def open_limiter(settings: Settings) -> Limiter:
    if settings.redis_url:
        return RedisLimiter(settings.redis_url)
    if ray.is_initialized():
        return ActorLimiter()
    return LocalLimiter()


def studio_prefix(settings: Settings) -> str:
    """Studios sharing a Ray cluster or a Redis keep apart: a studio is its database."""
    return hashlib.sha256(settings.resolved_database_url.encode()).hexdigest()[:12]


async def check(limiter: Limiter, key: str, limit: int, what: str) -> None:
    """Raises `RateLimited` with the seconds to wait when `key` is over `limit` a minute."""
    try:
        wait = await asyncio.wait_for(limiter.hit(key, limit, PERIOD_S), CALL_TIMEOUT_S)
    except Exception as error:
        log.warning("rate limiter unavailable, request let through: %r", error)
        return
    if wait > 0:
        raise RateLimited(
            f"more than {limit} requests a minute {what}; retry in {math.ceil(wait)} s",
            retry_after_s=math.ceil(wait),
        )


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The proxies (addresses and networks) whose `X-Forwarded-For` is believed."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks: list[IpNetwork] = [
            ipaddress.ip_network(entry.strip(), strict=False) for entry in entries
        ]

    def __contains__(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def client_address(self, peer: str, forwarded_for: list[str]) -> str:
        """The client behind `peer`: the rightmost `X-Forwarded-For` address that is not a
        trusted proxy, when `peer` is one; else `peer` itself. A malformed hop ends the walk
        at the last trusted address seen (a trusted proxy never writes one)."""
        if peer not in self:
            return peer
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        client = peer
        for hop in reversed(hops):
            host = _host_of(hop)
            if host is None:
                return client
            client = host
            if host not in self:
                return host
        return client


def _host_of(hop: str) -> str | None:
    """The IP address of one `X-Forwarded-For` hop (`1.2.3.4`, `1.2.3.4:5`, `[::1]:5`, `::1`)."""
    candidate = hop
    if hop.startswith("[") and "]" in hop:
        candidate = hop[1 : hop.index("]")]
    elif hop.count(":") == 1:
        candidate = hop.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def serve_environment(settings: Settings) -> dict[str, str]:
    """Environment for the processes running Serve's HTTP proxy: its uvicorn trusts
    `X-Forwarded-For` from the same proxies as the studio (from none when none are listed),
    instead of from any loopback peer."""
    return {"FORWARDED_ALLOW_IPS": ",".join(settings.trusted_proxies)}


class IpRateLimitMiddleware:
    """Counts every HTTP request against its client address, before any other work."""

    def __init__(
        self,
        app: ASGIApp,
        limiter: Limiter,
        limit: int,
        prefix: str,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.limit = limit
        self.prefix = prefix
        self.trusted = TrustedProxies(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client: Any = scope.get("client")
        forwarded = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
        ip = self.trusted.client_address(client[0], forwarded) if client else "unknown"
        try:
            await check(self.limiter, f"{self.prefix}:ip:{ip}", self.limit, "from your address")
        except RateLimited as error:
            await problem_for(Request(scope), error)(scope, receive, send)
            return
        await self.app(scope, receive, send)
