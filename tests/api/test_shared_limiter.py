"""The shared limiter spends leased shares locally: the limit holds across replicas within the
stated tolerance, the store is asked a few times instead of once per request, and a store out
of reach leaves each replica limiting on its own."""

from __future__ import annotations

import asyncio
import time

from deployments.api.ratelimit import (
    PERIOD_S,
    SHARE_DIVISOR,
    Gcra,
    Grant,
    SharedLimiter,
)


class GcraStore:
    """The shared store in one process: the same GCRA as the Ray actor, counting its calls."""

    def __init__(self) -> None:
        self.gcra = Gcra()
        self.calls = 0

    async def take(self, key: str, limit: int, period_s: float, want: int) -> Grant:
        self.calls += 1
        await asyncio.sleep(0.001)  # a round trip
        return self.gcra.take(key, limit, period_s, time.monotonic(), want)


class UnreachableStore:
    async def take(self, key: str, limit: int, period_s: float, want: int) -> Grant:
        raise ConnectionError("the store is down")


async def _burst(limiters: list[SharedLimiter], requests: int, limit: int) -> list[float]:
    """`requests` concurrent hits on one key, spread over the limiters in turn."""
    hits = [limiters[n % len(limiters)].hit("k", limit, PERIOD_S) for n in range(requests)]
    return list(await asyncio.gather(*hits))


def test_two_replicas_share_one_budget_within_the_tolerance() -> None:
    limit = 300
    store = GcraStore()
    replicas = [SharedLimiter(store), SharedLimiter(store)]
    waits = asyncio.run(_burst(replicas, 2 * limit, limit))

    allowed = sum(wait == 0 for wait in waits)
    share = limit // SHARE_DIVISOR
    assert limit - len(replicas) * share <= allowed <= limit
    assert all(wait > 0 for wait in waits if wait != 0)


def test_requests_are_decided_locally_not_one_store_call_each() -> None:
    limit = 6000
    store = GcraStore()

    async def steady() -> list[float]:
        limiter = SharedLimiter(store)
        waits = []
        for _ in range(1000):
            waits.append(await limiter.hit("k", limit, PERIOD_S))
        return waits

    waits = asyncio.run(steady())
    assert waits == [0.0] * 1000
    assert store.calls <= 1000 // (limit // SHARE_DIVISOR // 2) + 2


def test_a_refusal_is_remembered_until_the_retry_time() -> None:
    store = GcraStore()

    async def flood() -> list[float]:
        limiter = SharedLimiter(store)
        return [await limiter.hit("k", 3, PERIOD_S) for _ in range(50)]

    waits = asyncio.run(flood())
    assert sum(wait == 0 for wait in waits) == 3
    assert store.calls <= 5


def test_a_replica_that_cannot_reach_the_store_still_limits() -> None:
    limit = 20
    waits = asyncio.run(_burst([SharedLimiter(UnreachableStore())], 2 * limit, limit))
    assert sum(wait == 0 for wait in waits) == limit
