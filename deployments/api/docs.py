"""`/docs`: FastAPI's Swagger UI page on a pinned Swagger UI release whose files the browser
checks against their hashes (subresource integrity), under a policy that runs only those files
and the page's own script (by its hash) and lets nothing frame it. (Styles may be inline: the
UI sets some on its elements, and a style runs no code.)"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.36.0"
# sha384 of the release's files as published on npm (`npm pack swagger-ui-dist@5.36.0`).
INTEGRITY = {
    f"{SWAGGER_UI}/swagger-ui-bundle.js": (
        "sha384-fUpRgC19yPykTqzdrUbdAg8NTiu16NEKf9U12J+IJWCg8/1mEI8f2+PEIz60Wyd+"
    ),
    f"{SWAGGER_UI}/swagger-ui.css": (
        "sha384-z/AtSaOHGn5MJ5auAHXUypohywlIWLBZo1jeGmhdpVIbCnFhxAH92cwdV41oyINc"
    ),
}
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def docs(request: Request) -> HTMLResponse:
    root_path = request.scope.get("root_path", "").rstrip("/")
    html, policy = _page(f"{root_path}/openapi.json")
    return HTMLResponse(html, headers={"Content-Security-Policy": policy})


@lru_cache(maxsize=8)
def _page(openapi_url: str) -> tuple[str, str]:
    """The page for `openapi_url` and its Content-Security-Policy."""
    html = bytes(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title="AI Film Studio - Swagger UI",
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url="data:,",
        ).body
    ).decode()
    for url, integrity in INTEGRITY.items():
        html = html.replace(f'"{url}"', f'"{url}" integrity="{integrity}" crossorigin="anonymous"')
    scripts = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in INLINE_SCRIPT.findall(html)
    )
    policy = (
        f"default-src 'none'; script-src {SWAGGER_UI}/ {scripts}; "
        f"style-src {SWAGGER_UI}/ 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    )
    return html, policy
