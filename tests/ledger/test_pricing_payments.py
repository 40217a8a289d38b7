"""Prices and estimates; top-ups through Stripe Checkout (the local fake Stripe)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.settings import Settings
from db.models import Plan, User
from db.session import session_scope
from pipeline.errors import PlanLimit, SpecInvalid
from pipeline.ledger import billing, pricing
from pipeline.ledger import store as credits
from pipeline.ledger.payments import UnknownCreditPack
from pipeline.ledger.pricing import RenderShape, charge_for, estimate
from tests.fakes.stripe import FakeStripe, stripe_settings, studio_prices
from tests.ledger import assert_books_balance, make_user

MINUTE = RenderShape(scene_seconds=[20, 25, 15], resolution=720, has_music=True, lipsync_scenes=1)


def test_an_animatic_minute_costs_little() -> None:
    result = estimate(MINUTE, "animatic")
    assert result.seconds == 60
    assert result.breakdown == {"voice": 6, "video": 60, "music": 6, "lipsync": 13}
    assert result.credits == 85


def test_a_final_render_costs_more_than_an_animatic() -> None:
    final = estimate(MINUTE, "final")
    assert final.breakdown == {"voice": 60, "video": 600, "music": 30, "lipsync": 100}
    assert final.credits > 5 * estimate(MINUTE, "animatic").credits


def test_every_stage_rounds_up() -> None:
    result = estimate(RenderShape(scene_seconds=[0.5], resolution=360), "animatic")
    assert result.breakdown == {"voice": 1, "video": 1, "music": 0, "lipsync": 0}


@pytest.mark.parametrize(("resolution", "tier"), [(144, 360), (360, 360), (540, 720), (1080, 1080)])
def test_a_resolution_is_priced_at_the_next_tier(resolution: int, tier: int) -> None:
    assert pricing.price_tier(resolution) == tier


def test_a_resolution_above_the_table_is_refused() -> None:
    with pytest.raises(SpecInvalid):
        estimate(RenderShape(scene_seconds=[10], resolution=1440), "final")


def test_lipsync_is_priced_on_the_longest_scenes() -> None:
    shape = RenderShape(scene_seconds=[2, 30, 10], resolution=720, lipsync_scenes=1)
    assert estimate(shape, "final").breakdown["lipsync"] == 120


def test_a_preview_pays_for_the_voice_only() -> None:
    assert estimate(MINUTE, "final", stop_at="voice").breakdown == {"voice": 60}


def test_stopping_at_the_animatic_pays_animatic_rates() -> None:
    assert estimate(MINUTE, "final", stop_at="animatic") == estimate(MINUTE, "animatic")


def test_an_unknown_quality_is_refused() -> None:
    with pytest.raises(SpecInvalid):
        estimate(MINUTE, "cinema")


def test_cached_work_is_free() -> None:
    full = estimate(MINUTE, "final").credits
    assert charge_for(MINUTE, "final", None, 1.0) == full
    assert charge_for(MINUTE, "final", None, 0.5) == (full + 1) // 2
    assert charge_for(MINUTE, "final", None, 0.0) == 0


def test_a_shape_comes_from_a_film_spec() -> None:
    from pipeline.render.spec import FilmSpec

    spec = FilmSpec.model_validate(
        {
            "title": "t",
            "resolution": 480,
            "music": {"style": "none"},
            "scenes": [
                {"prompt": "sea", "duration_s": 4},
                {"prompt": "sky", "narration": " ".join(["word"] * 22), "duration_s": 2},
            ],
        }
    )
    shape = RenderShape.from_spec(spec)
    assert shape.scene_seconds == [4, pytest.approx(10.8)]
    assert (shape.resolution, shape.has_music, shape.lipsync_scenes) == (480, False, 0)


def test_a_plan_limits_resolution_and_concurrency() -> None:
    free = Plan(
        code="free",
        name="Free",
        monthly_credits=300,
        price_cents=0,
        max_resolution=720,
        max_concurrent_renders=1,
        rate_limit_per_minute=60,
        upload_limit_mb=25,
        priority=0,
    )
    pricing.check_plan(free, MINUTE)
    pricing.check_concurrency(free, 0)
    with pytest.raises(PlanLimit):
        pricing.check_plan(free, RenderShape(scene_seconds=[5], resolution=1080))
    with pytest.raises(PlanLimit):
        pricing.check_concurrency(free, 1)


@pytest.fixture(scope="module")
def stripe_fake() -> Iterator[FakeStripe]:
    with FakeStripe.running(studio_prices()) as fake:
        yield fake


@pytest.fixture
def shop(database_url: str, tmp_path: Path, stripe_fake: FakeStripe) -> Settings:
    return Settings(
        data_dir=tmp_path, database_url=database_url, _env_file=None, **stripe_settings(stripe_fake)
    )


def buyer(url: str) -> User:
    with session_scope(url) as session:
        return session.get_one(User, make_user(url))


def pay(shop: Settings, fake: FakeStripe, checkout_id: str) -> list[str]:
    """The user pays; Stripe's signed events reach the studio's webhook handling."""
    outcomes = []
    for event in fake.pay(checkout_id):
        payload = json.dumps(event).encode()
        outcomes.append(billing.apply_webhook(shop, payload, fake.sign(payload)))
    return outcomes


def test_a_topup_credits_once_stripe_confirms_the_payment(
    shop: Settings, stripe_fake: FakeStripe
) -> None:
    url = shop.resolved_database_url
    user = buyer(url)
    checkout = billing.start_topup(shop, user, 500, "order-1")
    assert credits.balance(url, user.id).available == 0, "a checkout alone grants nothing"

    pay(shop, stripe_fake, checkout.id)

    session = stripe_fake.checkout_sessions[checkout.id]
    assert (session["amount_total"], session["metadata"]["credits"]) == (500, "500")
    assert credits.balance(url, user.id).available == 500
    assert_books_balance(url, [user.id])


def test_a_replayed_topup_is_one_checkout_and_one_credit(
    shop: Settings, stripe_fake: FakeStripe
) -> None:
    url = shop.resolved_database_url
    user = buyer(url)
    first = billing.start_topup(shop, user, 500, "order-1")
    assert billing.start_topup(shop, user, 500, "order-1") == first
    (event,) = stripe_fake.pay(first.id)
    payload = json.dumps(event).encode()

    for _ in range(2):
        billing.apply_webhook(shop, payload, stripe_fake.sign(payload))

    assert credits.balance(url, user.id).available == 500


def test_an_abandoned_checkout_credits_nothing(shop: Settings, stripe_fake: FakeStripe) -> None:
    url = shop.resolved_database_url
    user = buyer(url)
    billing.start_topup(shop, user, 100, "order-2")
    assert credits.balance(url, user.id).available == 0


def test_only_credit_packs_are_sold(shop: Settings) -> None:
    user = buyer(shop.resolved_database_url)
    with pytest.raises(UnknownCreditPack):
        billing.start_topup(shop, user, 7, "order-3")
