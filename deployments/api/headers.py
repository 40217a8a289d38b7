"""Security headers on every response, as defaults that a route may set otherwise.

Every answer, errors and downloads included, gets `nosniff`, a policy that forbids framing it
(`X-Frame-Options` for old browsers, `frame-ancestors` for the others) and running anything in
it (`default-src 'none'`: the API serves data, never pages), no `Referer` (signed file URLs
carry their signature in the query) and `Cache-Control: no-store` (answers are per user and
some carry tokens). Over HTTPS (the request's scheme, or a `public_url` that is https: TLS
ended in front of the studio) it also gets HSTS. The one page, `/docs`, sets its own policy.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DEFAULTS: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", API_POLICY),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, public_url: str) -> None:
        self.app = app
        self.public_https = public_url.startswith("https://")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        defaults = DEFAULTS
        if self.public_https or scope.get("scheme") == "https":
            defaults += (HSTS,)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in defaults:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
