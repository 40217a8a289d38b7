"""Pages from the Jinja2 templates, each under the studio's page policy: scripts and styles
only from the studio's own `/static` files (nothing inline), media and images from the studio
or its object store, forms posted only to the studio, never framed."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from cluster.settings import Settings

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
STATIC = Path(__file__).parent / "static"


def media_origin(settings: Settings) -> str:
    """Where signed download URLs point beside the studio: the S3 endpoint's origin (AWS's
    hosts when none is set), or nothing more for local storage (served by the studio)."""
    if not settings.resolved_storage_url.startswith("s3://"):
        return ""
    if settings.s3_endpoint_url:
        endpoint = urlparse(settings.s3_endpoint_url)
        return f" {endpoint.scheme}://{endpoint.netloc}"
    return " https://*.amazonaws.com"


def payment_origins(settings: Settings) -> str:
    """Where the purchase forms send the browser on: Stripe's Checkout and Customer Portal, or
    the origin of the Stripe endpoint the studio is configured with."""
    base = urlparse(settings.stripe_api_base)
    if base.netloc == "api.stripe.com":
        return "https://checkout.stripe.com https://billing.stripe.com"
    return f"{base.scheme}://{base.netloc}"


def page_policy(settings: Settings, form_targets: str = "") -> str:
    """The page's CSP; `form_targets` are origins beyond the studio that its forms' answers
    redirect to (a form's redirect is checked against `form-action` too)."""
    media = media_origin(settings)
    forms = f" {form_targets}" if form_targets else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src 'self'{media}; media-src 'self'{media}; connect-src 'self'; "
        f"form-action 'self'{forms}; frame-ancestors 'none'; base-uri 'none'"
    )


def page(
    request: Request,
    template: str,
    context: dict[str, Any],
    status_code: int = 200,
    form_targets: str = "",
) -> HTMLResponse:
    """The template rendered for `request`; `context` gives what it shows (`session`, the
    signed-in user's, and `csrf`, the forms' token, among them). `form_targets`: see
    `page_policy`."""
    settings: Settings = request.app.state.settings
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {"session": None, "csrf": "", **context},
        status_code=status_code,
        headers={"Content-Security-Policy": page_policy(settings, form_targets)},
    )
    return response


def redirect(
    request: Request, name: str, query: dict[str, str] | None = None, **path: str
) -> RedirectResponse:
    """303 to the page named `name` with its `path` parameters and `query`, below the
    studio's root path."""
    target = request.url_for(name, **path).path
    return RedirectResponse(target + (f"?{urlencode(query)}" if query else ""), status_code=303)
