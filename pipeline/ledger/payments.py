"""Stripe, the studio's payment provider, behind the few calls the studio makes: Checkout
Sessions for credit packs and plans, Customer Portal sessions, customers and refunds, and the
verification of Stripe's signed webhooks with Stripe's own scheme and tolerance.

Nothing here grants credits: a Checkout Session only asks Stripe to take money, and the signed
webhook that says it was taken is applied by pipeline/ledger/billing.py. A studio without
`STUDIO_STRIPE_SECRET_KEY` and `STUDIO_STRIPE_WEBHOOK_SECRET` has no provider: every payment
call raises `PaymentsNotConfigured` (503).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, cast

import stripe

from cluster.errors import StudioError
from cluster.settings import Settings


class PaymentsNotConfigured(StudioError):
    slug, status, title = "payments-not-configured", 503, "Payments are not configured"


class PaymentProviderError(StudioError):
    slug, status, title = "payment-provider-error", 502, "The payment provider failed"


class UnknownCreditPack(StudioError):
    slug, status, title = "unknown-credit-pack", 422, "No such credit pack"


class WebhookRejected(StudioError):
    slug, status, title = "webhook-rejected", 400, "Webhook signature invalid"


@dataclass(frozen=True)
class Checkout:
    """A Checkout Session: where to send the user to pay."""

    id: str
    url: str


class Stripe:
    """The Stripe API as the studio uses it, on `settings.stripe_api_base`; Stripe's errors
    become `PaymentProviderError` (502)."""

    def __init__(self, settings: Settings) -> None:
        if settings.stripe_secret_key is None or settings.stripe_webhook_secret is None:
            raise PaymentsNotConfigured("payments are not configured")
        self._client = stripe.StripeClient(
            settings.stripe_secret_key.get_secret_value(),
            base_addresses={"api": settings.stripe_api_base},
            max_network_retries=2,
        )
        self._webhook_secret = settings.stripe_webhook_secret.get_secret_value()
        self._tolerance_s = settings.stripe_webhook_tolerance_s
        self._public_url = settings.public_url.rstrip("/")
        self.credit_packs = settings.stripe_credit_packs
        self.plan_prices = settings.stripe_plan_prices

    def create_customer(self, user_id: uuid.UUID, email: str) -> str:
        """A new customer for the user (one per user: the key makes a retry return it)."""
        customer = self._call(
            self._client.v1.customers.create,
            {"email": email, "metadata": {"user_id": str(user_id)}},
            f"customer:{user_id}",
        )
        return cast(str, customer["id"])

    def pack_price(self, credits: int) -> str:
        """The price of the pack of `credits`, or `UnknownCreditPack` (422)."""
        price = self.credit_packs.get(credits)
        if price is None:
            packs = sorted(self.credit_packs)
            raise UnknownCreditPack(f"credits come in packs of {packs}", packs=packs)
        return price

    def checkout_credit_pack(
        self, user_id: uuid.UUID, customer: str, credits: int, key: str
    ) -> Checkout:
        """A one-off payment for the pack of `credits`; a retried `key` returns the same
        session."""
        metadata = {"user_id": str(user_id), "credits": str(credits), "purpose": "topup"}
        params = self._checkout("payment", customer, self.pack_price(credits), metadata)
        params["payment_intent_data"] = {"metadata": metadata}
        session = self._call(self._client.v1.checkout.sessions.create, params, key)
        return Checkout(id=session["id"], url=session["url"])

    def checkout_plan(self, user_id: uuid.UUID, customer: str, plan_code: str) -> Checkout:
        """A monthly subscription to the plan (one with a price in `plan_prices`); its
        invoices are paid and granted by webhook."""
        metadata = {"user_id": str(user_id), "plan": plan_code, "purpose": "subscription"}
        params = self._checkout("subscription", customer, self.plan_prices[plan_code], metadata)
        params["subscription_data"] = {"metadata": metadata}
        session = self._call(self._client.v1.checkout.sessions.create, params, None)
        return Checkout(id=session["id"], url=session["url"])

    def portal(self, customer: str) -> str:
        """A Customer Portal session, where the user changes or cancels the plan."""
        params = {"customer": customer, "return_url": f"{self._public_url}/billing"}
        session = self._call(self._client.v1.billing_portal.sessions.create, params, None)
        return cast(str, session["url"])

    def refund(self, payment_intent: str, key: str) -> tuple[str, int]:
        """Refunds the whole payment; returns the refund's id and amount. A retried `key`
        returns the same refund."""
        refund = self._call(self._client.v1.refunds.create, {"payment_intent": payment_intent}, key)
        return cast(str, refund["id"]), cast(int, refund["amount"])

    def plan_of_price(self, price: str | None) -> str | None:
        return next((code for code, p in self.plan_prices.items() if p == price), None)

    def verify(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """The event in a webhook whose `Stripe-Signature` is Stripe's, made with the webhook
        secret no longer than the tolerance ago; anything else raises `WebhookRejected`."""
        try:
            event = stripe.Webhook.construct_event(
                payload, signature, self._webhook_secret, self._tolerance_s
            )
        except (stripe.SignatureVerificationError, ValueError) as e:
            raise WebhookRejected(str(e).split("\n")[0]) from None
        return cast(dict[str, Any], event.to_dict())

    def _checkout(
        self, mode: str, customer: str, price: str, metadata: dict[str, str]
    ) -> dict[str, Any]:
        return {
            "mode": mode,
            "customer": customer,
            "client_reference_id": metadata["user_id"],
            "line_items": [{"price": price, "quantity": 1}],
            "metadata": metadata,
            "success_url": f"{self._public_url}/billing/done?session_id={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{self._public_url}/billing/cancelled",
        }

    @staticmethod
    def _call(create: Any, params: dict[str, Any], key: str | None) -> Any:
        options = {"idempotency_key": key} if key else {}
        try:
            return create(params=params, options=options)
        except stripe.StripeError as e:
            raise PaymentProviderError(
                f"Stripe refused: {e.user_message or type(e).__name__}"
            ) from e
