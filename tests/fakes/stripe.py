"""A local Stripe: the parts of its REST API the studio calls (customers, Checkout Sessions,
Customer Portal sessions, refunds) speaking the wire protocol the `stripe` SDK speaks
(form-encoded POSTs with bracketed keys, JSON answers, Stripe's error bodies, `Idempotency-Key`
replays), and Stripe's side of webhooks: events signed with the real scheme
(`Stripe-Signature: t=<unix time>,v1=<HMAC-SHA256(secret, "<t>.<payload>")>`).

Like tests/fakes/google.py it is a stdlib `ThreadingHTTPServer`. Tests act as the paying user
and as Stripe's event delivery: `pay` completes a Checkout Session and returns the events
Stripe would send, `renew`, `fail_renewal` and `cancel` move a subscription along, and
`deliver` signs an event and POSTs it to the studio's webhook (with another secret, an old
timestamp or a tampered body when a test asks).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from typing import Any
from urllib.parse import parse_qsl

import httpx

from pipeline.ledger.pricing import topup_price_cents

API_VERSION = "2025-10-29.clover"
MONTH_S = 30 * 24 * 3600


@dataclass(frozen=True)
class Price:
    id: str
    unit_amount: int
    recurring: bool = False
    currency: str = "usd"


@dataclass
class Call:
    method: str
    path: str
    form: dict[str, Any]
    idempotency_key: str | None


@dataclass
class FakeStripe:
    secret_key: str = field(default_factory=lambda: "sk_test_" + secrets.token_hex(12))
    webhook_secret: str = field(default_factory=lambda: "whsec_" + secrets.token_hex(16))
    prices: dict[str, Price] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkout_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    _replies: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    @classmethod
    @contextmanager
    def running(cls, prices: list[Price]) -> Iterator[FakeStripe]:
        fake = cls(prices={price.id: price for price in prices})
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.fake = fake  # type: ignore[attr-defined]
        fake.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield fake
        finally:
            server.shutdown()
            server.server_close()

    # -- Stripe's side of the payment and its events --------------------------------------

    def pay(self, session_id: str) -> list[dict[str, Any]]:
        """The user pays a Checkout Session: the events Stripe then sends (a top-up's
        `checkout.session.completed`; a subscription's first `invoice.paid` as well)."""
        with self._lock:
            checkout = self.checkout_sessions[session_id]
            checkout.update(status="complete", payment_status="paid")
            if checkout["mode"] == "payment":
                checkout["payment_intent"] = _id("pi")
                return [self.event("checkout.session.completed", checkout)]
            subscription = {
                "id": _id("sub"),
                "object": "subscription",
                "customer": checkout["customer"],
                "status": "active",
                "cancel_at_period_end": False,
                "metadata": checkout.get("subscription_data", {}).get("metadata", {}),
                "price": checkout["line_items"][0]["price"],
                "period_start": int(time.time()),
            }
            self.subscriptions[subscription["id"]] = subscription
            checkout["subscription"] = subscription["id"]
            completed = self.event("checkout.session.completed", checkout)
        return [completed, self._invoice("invoice.paid", subscription)]

    def renew(self, subscription_id: str) -> dict[str, Any]:
        """The next month's invoice is paid."""
        subscription = self.subscriptions[subscription_id]
        subscription["period_start"] += MONTH_S
        return self._invoice("invoice.paid", subscription)

    def fail_renewal(self, subscription_id: str) -> dict[str, Any]:
        """The next month's invoice cannot be charged."""
        subscription = self.subscriptions[subscription_id]
        subscription["status"] = "past_due"
        return self._invoice("invoice.payment_failed", subscription, paid=False)

    def cancel(self, subscription_id: str) -> dict[str, Any]:
        """The subscription ends (Stripe deletes it at the end of a cancelled period)."""
        subscription = self.subscriptions[subscription_id]
        subscription["status"] = "canceled"
        return self.event("customer.subscription.deleted", self._subscription(subscription))

    def event(self, type_: str, obj: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": _id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "type": type_,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": json.loads(json.dumps(obj))},
        }

    def sign(self, payload: bytes, timestamp: int | None = None, secret: str | None = None) -> str:
        """A `Stripe-Signature` header for `payload`, as Stripe makes it."""
        t = int(time.time()) if timestamp is None else timestamp
        signed = f"{t}.".encode() + payload
        mac = hmac.new((secret or self.webhook_secret).encode(), signed, hashlib.sha256)
        return f"t={t},v1={mac.hexdigest()}"

    def deliver(
        self,
        webhook_url: str,
        event: dict[str, Any],
        *,
        timestamp: int | None = None,
        secret: str | None = None,
        payload: bytes | None = None,
    ) -> httpx.Response:
        """POSTs the event, signed, to the studio's webhook. `payload` replaces the signed body
        (a tampered delivery); `timestamp` and `secret` change the signature."""
        body = json.dumps(event).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": self.sign(body, timestamp, secret),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        return httpx.post(webhook_url, content=payload or body, headers=headers, timeout=60)

    def calls_to(self, path: str) -> list[Call]:
        return [call for call in self.calls if call.path == path]

    def _invoice(
        self, type_: str, subscription: dict[str, Any], paid: bool = True
    ) -> dict[str, Any]:
        price = self.prices[subscription["price"]]
        start = subscription["period_start"]
        invoice = {
            "id": _id("in"),
            "object": "invoice",
            "customer": subscription["customer"],
            "currency": price.currency,
            "amount_due": price.unit_amount,
            "amount_paid": price.unit_amount if paid else 0,
            "status": "paid" if paid else "open",
            "billing_reason": "subscription_cycle",
            "parent": {
                "type": "subscription_details",
                "subscription_details": {
                    "subscription": subscription["id"],
                    "metadata": subscription["metadata"],
                },
            },
            "lines": {
                "object": "list",
                "data": [
                    {
                        "id": _id("il"),
                        "object": "line_item",
                        "amount": price.unit_amount,
                        "period": {"start": start, "end": start + MONTH_S},
                        "pricing": {"type": "price_details", "price_details": {"price": price.id}},
                    }
                ],
            },
        }
        return self.event(type_, invoice)

    def _subscription(self, subscription: dict[str, Any]) -> dict[str, Any]:
        start = subscription["period_start"]
        return {
            "id": subscription["id"],
            "object": "subscription",
            "customer": subscription["customer"],
            "status": subscription["status"],
            "cancel_at_period_end": subscription["cancel_at_period_end"],
            "metadata": subscription["metadata"],
            "items": {
                "object": "list",
                "data": [
                    {
                        "price": {"id": subscription["price"]},
                        "current_period_start": start,
                        "current_period_end": start + MONTH_S,
                    }
                ],
            },
        }

    # -- the REST API -------------------------------------------------------------------

    def handle(self, path: str, form: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path == "/v1/customers":
            customer = {
                "id": _id("cus"),
                "object": "customer",
                "email": form.get("email"),
                "metadata": form.get("metadata", {}),
            }
            self.customers[customer["id"]] = customer
            return 200, customer
        if path == "/v1/checkout/sessions":
            return self._create_checkout(form)
        if path == "/v1/billing_portal/sessions":
            if form.get("customer") not in self.customers:
                return _missing("customer", form.get("customer"))
            portal_id = _id("bps")
            return 200, {
                "id": portal_id,
                "object": "billing_portal.session",
                "customer": form["customer"],
                "return_url": form.get("return_url"),
                "url": f"{self.url}/p/session/{portal_id}",
            }
        if path == "/v1/refunds":
            return self._create_refund(form)
        return 404, _error("invalid_request_error", f"Unrecognized request URL (POST: {path})")

    def _create_checkout(self, form: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        mode = form.get("mode")
        if mode not in ("payment", "subscription"):
            return 400, _error("invalid_request_error", "Invalid mode", param="mode")
        if form.get("customer") not in self.customers:
            return _missing("customer", form.get("customer"))
        items = form.get("line_items") or []
        if not items or items[0].get("price") not in self.prices:
            return _missing("price", items[0].get("price") if items else None)
        price = self.prices[items[0]["price"]]
        if price.recurring != (mode == "subscription"):
            return 400, _error(
                "invalid_request_error",
                f"The price specified is {'' if price.recurring else 'not '}recurring",
                param="line_items[0][price]",
            )
        session_id = _id("cs_test")
        checkout = {
            "id": session_id,
            "object": "checkout.session",
            "mode": mode,
            "customer": form["customer"],
            "client_reference_id": form.get("client_reference_id"),
            "metadata": form.get("metadata", {}),
            "line_items": items,
            "subscription_data": form.get("subscription_data", {}),
            "amount_total": price.unit_amount * int(items[0].get("quantity", 1)),
            "currency": price.currency,
            "status": "open",
            "payment_status": "unpaid",
            "payment_intent": None,
            "subscription": None,
            "success_url": form.get("success_url"),
            "cancel_url": form.get("cancel_url"),
            "url": f"{self.url}/c/pay/{session_id}",
        }
        self.checkout_sessions[session_id] = checkout
        return 200, checkout

    def _create_refund(self, form: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        intent = form.get("payment_intent")
        paid = [
            s for s in self.checkout_sessions.values() if intent and s["payment_intent"] == intent
        ]
        if not paid:
            return _missing("payment_intent", intent)
        if any(r["payment_intent"] == intent for r in self.refunds.values()):
            return 400, _error(
                "invalid_request_error",
                f"Charge for {intent} has already been refunded.",
                code="charge_already_refunded",
            )
        refund = {
            "id": _id("re"),
            "object": "refund",
            "amount": paid[0]["amount_total"],
            "currency": paid[0]["currency"],
            "payment_intent": intent,
            "status": "succeeded",
        }
        self.refunds[refund["id"]] = refund
        return 200, refund


CREDIT_PACKS = (50, 100, 500, 1000)
PLAN_PRICES = {"creator": 1900, "studio": 7900}


def studio_prices() -> list[Price]:
    """The studio's catalogue in Stripe: a price per credit pack and per paid plan."""
    packs = [Price(f"price_pack_{n}", topup_price_cents(n)) for n in CREDIT_PACKS]
    plans = [Price(f"price_plan_{code}", c, recurring=True) for code, c in PLAN_PRICES.items()]
    return packs + plans


def stripe_settings(fake: FakeStripe) -> dict[str, Any]:
    """The studio's settings for paying through `fake`."""
    return {
        "stripe_secret_key": fake.secret_key,
        "stripe_webhook_secret": fake.webhook_secret,
        "stripe_api_base": fake.url,
        "stripe_credit_packs": {n: f"price_pack_{n}" for n in CREDIT_PACKS},
        "stripe_plan_prices": {code: f"price_plan_{code}" for code in PLAN_PRICES},
    }


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _error(type_: str, message: str, **fields: str) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message, **fields}}


def _missing(param: str, value: Any) -> tuple[int, dict[str, Any]]:
    body = _error(
        "invalid_request_error", f"No such {param}: '{value}'", code="resource_missing", param=param
    )
    return 400, body


def decode_form(body: str) -> dict[str, Any]:
    """Stripe's form encoding: `a[b][0][c]=v` is {"a": {"b": [{"c": "v"}]}}."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        head, *rest = re.findall(r"[^\[\]]+", key)
        parts: list[str] = [head, *rest]
        node: Any = result
        for part, after in pairwise(parts):
            child: Any = [] if after.isdigit() else {}
            if isinstance(node, list):
                index = int(part)
                while len(node) <= index:
                    node.append(child)
                node = node[index]
            else:
                node = node.setdefault(part, child)
        last = parts[-1]
        if isinstance(node, list):
            node.append(value)
        else:
            node[last] = value
    return result


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def fake(self) -> FakeStripe:
        return self.server.fake  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = decode_form(self.rfile.read(length).decode())
        key = self.headers.get("Idempotency-Key")
        fake = self.fake
        fake.calls.append(Call("POST", self.path, form, key))
        if self.headers.get("Authorization") != f"Bearer {fake.secret_key}":
            self._json(
                401, _error("invalid_request_error", "Invalid API Key provided: sk_test_***")
            )
            return
        with fake._lock:
            replay = fake._replies.get(f"{self.path}:{key}") if key else None
            if replay is None:
                replay = fake.handle(self.path, form)
                if key:
                    fake._replies[f"{self.path}:{key}"] = replay
                headers = {}
            else:
                headers = {"Idempotent-Replayed": "true"}
        self._json(*replay, **headers)

    def _json(self, status: int, body: dict[str, Any], **headers: str) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", _id("req"))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
