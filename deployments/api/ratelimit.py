"""Rate limits that hold across every Serve replica: per client IP (all requests) and per user
(authenticated requests, at their plan's `rate_limit_per_minute`).

The algorithm is GCRA (a token bucket kept as one timestamp per key): a burst of `limit`
requests, then one every `period / limit`; a refused request learns when to retry.

The bucket of a key lives in one place shared by all replicas: a named Ray actor by default,
Redis when `STUDIO_REDIS_URL` is set. A replica does not ask it per request: it takes a share of
the bucket (a lease of `limit // SHARE_DIVISOR` tokens, at least one), spends it locally and
renews it in the background when half of it is spent, so a request costs a dictionary look-up;
only the first request of a key on a replica (and one that finds its share empty) waits for the
store. A refusal is remembered until the store's retry time, so refused floods cost nothing
either. Tolerance, per key and per `period`: the shared bucket never grants more than GCRA
allows, and a leased token is spent within `period` of its grant or dropped; so across N
replicas the requests admitted in any window of `period` differ from one GCRA's by at most
N x share (unspent or late-spent shares): with the per-IP test's 2 replicas and limit 30 that
is +-2 of 30. Outside Ray (a plain `uvicorn` process) the bucket lives in the process.

A store that cannot be reached does not stop limiting: the replica limits alone, with a local
GCRA at the full limit, for `STORE_RETRY_S`, then tries the store again (and logs).

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
from dataclasses import dataclass
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
SHARE_DIVISOR = 30
STORE_RETRY_S = 5.0
# Logins per account, whatever the address: a burst of 5, then one every 12 s; past 20 in an
# hour one every 3 min; past 100 in a day one every 14 min (a stepped back-off).
LOGIN_LIMITS = ((5, 60.0), (20, 3600.0), (100, 86400.0))


class Gcra:
    """Per key, the theoretical arrival time of the next request (`tat`)."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._next_sweep = 0.0

    def take(self, key: str, limit: int, period_s: float, now: float, want: int) -> Grant:
        """Counts up to `want` requests at once: as many as the bucket allows now, or none and
        the seconds until one would be allowed."""
        interval = period_s / limit
        tat = max(self._tat.get(key, now), now)
        granted = min(want, math.floor((now + period_s - tat) / interval + 1e-9))
        if granted <= 0:
            return Grant(0, tat + interval - period_s - now)
        self._tat[key] = tat + granted * interval
        if now >= self._next_sweep:
            self._tat = {k: tat for k, tat in self._tat.items() if tat > now}
            self._next_sweep = now + period_s
        return Grant(granted, 0.0)


@dataclass(frozen=True)
class Grant:
    """Tokens taken from a bucket; with none, the seconds until one is there."""

    tokens: int
    wait_s: float


class Limiter(Protocol):
    async def hit(self, key: str, limit: int, period_s: float) -> float:
        """0 when the request is allowed, else the seconds to wait."""
        ...


class Store(Protocol):
    """Buckets shared by every replica."""

    async def take(self, key: str, limit: int, period_s: float, want: int) -> Grant: ...


class LocalLimiter:
    """Counters in this process: right only for a single-process server (and what a replica
    falls back on when its store is out of reach)."""

    def __init__(self) -> None:
        self._gcra = Gcra()

    async def hit(self, key: str, limit: int, period_s: float) -> float:
        return self._gcra.take(key, limit, period_s, time.monotonic(), 1).wait_s


@dataclass
class _Share:
    """This replica's part of one key's bucket."""

    tokens: int = 0
    expires: float = 0.0
    refused_until: float = 0.0
    renewal: asyncio.Task[None] | None = None


class SharedLimiter:
    """Spends leased shares of the store's buckets locally (see the module's docstring)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._shares: dict[str, _Share] = {}
        self._fallback = LocalLimiter()
        self._store_down_until = 0.0
        self._next_sweep = 0.0

    async def hit(self, key: str, limit: int, period_s: float) -> float:
        share = self._share(key, time.monotonic(), period_s)
        while share.tokens == 0:
            now = time.monotonic()
            if now < self._store_down_until:
                return await self._fallback.hit(key, limit, period_s)
            if share.refused_until > now:
                return share.refused_until - now
            await asyncio.shield(self._renew(key, share, limit, period_s))
        share.tokens -= 1
        if share.tokens <= _lease_size(limit) // 2:
            self._renew(key, share, limit, period_s)
        return 0.0

    def _share(self, key: str, now: float, period_s: float) -> _Share:
        if now >= self._next_sweep:
            self._shares = {
                k: s for k, s in self._shares.items() if s.expires > now or s.renewal is not None
            }
            self._next_sweep = now + period_s
        share = self._shares.setdefault(key, _Share())
        if share.expires <= now:
            share.tokens = 0
        return share

    def _renew(self, key: str, share: _Share, limit: int, period_s: float) -> asyncio.Task[None]:
        """The renewal of `share` on its way, started if there is none."""
        if share.renewal is None:
            share.renewal = asyncio.create_task(self._take(key, share, limit, period_s))
        return share.renewal

    async def _take(self, key: str, share: _Share, limit: int, period_s: float) -> None:
        try:
            want = _lease_size(limit)
            grant = await asyncio.wait_for(
                self._store.take(key, limit, period_s, want), CALL_TIMEOUT_S
            )
            now = time.monotonic()
            share.tokens += grant.tokens
            if grant.tokens:
                share.expires = now + period_s
            else:
                share.refused_until = now + grant.wait_s
        except Exception as error:
            log.warning("rate-limit store unavailable, limiting locally: %r", error)
            self._store_down_until = time.monotonic() + STORE_RETRY_S
        finally:
            share.renewal = None


def _lease_size(limit: int) -> int:
    return max(1, limit // SHARE_DIVISOR)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class RateLimitActor:
    """One per cluster, shared by every replica; keys carry their studio's prefix."""

    def __init__(self) -> None:
        self._gcra = Gcra()

    def take(self, key: str, limit: int, period_s: float, want: int) -> Grant:
        return self._gcra.take(key, limit, period_s, time.monotonic(), want)


class ActorStore:
    def __init__(self) -> None:
        self._actor = RateLimitActor.options(  # type: ignore[attr-defined]
            name=ACTOR_NAME, namespace="studio", lifetime="detached", get_if_exists=True
        ).remote()

    async def take(self, key: str, limit: int, period_s: float, want: int) -> Grant:
        grant: Grant = await self._actor.take.remote(key, limit, period_s, want)
        return grant


_GCRA_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local limit, period, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local interval = period / limit
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local granted = math.min(want, math.floor((now + period - tat) / interval + 1e-9))
if granted <= 0 then return {0, tostring(tat + interval - period - now)} end
tat = tat + granted * interval
redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil((tat - now) * 1000))
return {granted, '0'}
"""


class RedisStore:
    """GCRA as a Lua script, so each take is one atomic round trip on Redis's clock."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._client = redis.Redis.from_url(url)
        self._script = self._client.register_script(_GCRA_LUA)

    async def take(self, key: str, limit: int, period_s: float, want: int) -> Grant:
        granted, wait = await self._script(keys=[f"ratelimit:{key}"], args=[limit, period_s, want])
        return Grant(int(granted), float(wait))


def open_limiter(settings: Settings) -> Limiter:
    if settings.redis_url:
        return SharedLimiter(RedisStore(settings.redis_url))
    if ray.is_initialized():
        return SharedLimiter(ActorStore())
    return LocalLimiter()


def studio_prefix(settings: Settings) -> str:
    """Studios sharing a Ray cluster or a Redis keep apart: a studio is its database."""
    return hashlib.sha256(settings.resolved_database_url.encode()).hexdigest()[:12]


async def check(limiter: Limiter, key: str, limit: int, what: str) -> None:
    """Raises `RateLimited` with the seconds to wait when `key` is over `limit` a minute."""
    wait = await limiter.hit(key, limit, PERIOD_S)
    if wait > 0:
        raise RateLimited(
            f"more than {limit} requests a minute {what}; retry in {math.ceil(wait)} s",
            retry_after_s=math.ceil(wait),
        )


async def check_login(limiter: Limiter, prefix: str, email: str) -> None:
    """Raises `RateLimited` when the account of `email` had too many login attempts (right or
    wrong: the password is not checked before), on any of the `LOGIN_LIMITS`. The key is a hash
    of the address, so the shared store holds no email addresses."""
    account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:24]
    for limit, period_s in LOGIN_LIMITS:
        wait = await limiter.hit(f"{prefix}:login:{period_s:.0f}:{account}", limit, period_s)
        if wait > 0:
            raise RateLimited(
                f"too many login attempts for this account; retry in {math.ceil(wait)} s",
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
