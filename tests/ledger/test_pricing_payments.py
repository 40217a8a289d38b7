"""Prices and estimates; top-ups through the test payment provider."""

from __future__ import annotations

import uuid

import pytest

from db.models import Plan
from pipeline.errors import Conflict, PlanLimit, SpecInvalid
from pipeline.ledger import pricing
from pipeline.ledger import store as credits
from pipeline.ledger.payments import PaymentDeclined, PaymentStatus, TestPaymentProvider, topup
from pipeline.ledger.pricing import RenderShape, charge_for, estimate
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
    pricing.check_plan(free, MINUTE, running_renders=0)
    with pytest.raises(PlanLimit):
        pricing.check_plan(free, RenderShape(scene_seconds=[5], resolution=1080), 0)
    with pytest.raises(PlanLimit):
        pricing.check_plan(free, MINUTE, running_renders=1)


def test_a_topup_charges_then_credits(database_url: str) -> None:
    user = make_user(database_url)
    provider = TestPaymentProvider()
    receipt = topup(database_url, provider, user, 500, "order-1")
    assert receipt.amount == 500
    (payment,) = provider.charges.values()
    assert (payment.status, payment.amount_cents) == (PaymentStatus.succeeded, 500)
    assert credits.balance(database_url, user).available == 500
    assert_books_balance(database_url, [user])


def test_a_replayed_topup_charges_and_credits_once(database_url: str) -> None:
    user = make_user(database_url)
    provider = TestPaymentProvider()
    first = topup(database_url, provider, user, 500, "order-1")
    assert topup(database_url, provider, user, 500, "order-1") == first
    assert len(provider.charges) == 1
    assert credits.balance(database_url, user).available == 500


def test_a_declined_topup_credits_nothing(database_url: str) -> None:
    user = make_user(database_url)
    provider = TestPaymentProvider()
    declined = TestPaymentProvider.DECLINED_AMOUNT_CENTS // pricing.TOPUP_CENTS_PER_CREDIT
    for _ in range(2):
        with pytest.raises(PaymentDeclined):
            topup(database_url, provider, user, declined, "order-2")
    assert credits.balance(database_url, user).available == 0


def test_a_payment_key_reused_for_another_amount_conflicts() -> None:
    provider = TestPaymentProvider()
    user = uuid.uuid4()
    provider.charge(user, 100, "k")
    with pytest.raises(Conflict):
        provider.charge(user, 200, "k")
