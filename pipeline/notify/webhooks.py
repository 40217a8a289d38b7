"""Webhooks: the address a user may register, and one signed POST to it.

An address is HTTPS (plain HTTP only to a loopback address, and only where
`notify_allow_loopback` allows it, for tests), has no credentials in it, and resolves only to
public addresses: the studio never posts into its own network (SSRF). The check runs at
registration and again before every delivery, since DNS answers change, and the POST connects to
the address checked (the host name kept for `Host`, TLS's SNI and its certificate check), so
that a second DNS answer cannot send it elsewhere.

The body is signed as Stripe signs its webhooks: `Studio-Signature: t=<unix time>,v1=<hex
HMAC-SHA256 of "<t>.<body>" under the user's secret>`; a receiver recomputes it and refuses old
timestamps.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

import httpx

from cluster.errors import StudioError
from cluster.settings import Settings

SIGNATURE_HEADER = "Studio-Signature"
MAX_URL_LENGTH = 2048


class UnsafeWebhook(StudioError):
    slug, status, title = "unsafe-webhook", 422, "Webhook address refused"


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_url(settings: Settings, url: str) -> str:
    """`url` if the studio may post to it; raises `UnsafeWebhook` saying why not."""
    _resolve(settings, url)
    return url


def _resolve(settings: Settings, url: str) -> tuple[SplitResult, Address]:
    """`url`'s parts and the first of its host's addresses, all of which are allowed."""
    parts = urlsplit(url)
    if len(url) > MAX_URL_LENGTH or not parts.hostname:
        raise UnsafeWebhook(
            f"a webhook is an https:// address of at most {MAX_URL_LENGTH} characters"
        )
    if parts.scheme != "https" and not (parts.scheme == "http" and settings.notify_allow_loopback):
        raise UnsafeWebhook("a webhook address must start with https://")
    if parts.username is not None or parts.password is not None:
        raise UnsafeWebhook("a webhook address may not hold credentials")
    if parts.fragment:
        raise UnsafeWebhook("a webhook address may not have a #fragment")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError, UnicodeError):
        raise UnsafeWebhook("the webhook's host name does not resolve") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found]
    for address in addresses:
        _check_address(settings, parts.scheme, address)
    return parts, addresses[0]


def _check_address(settings: Settings, scheme: str, address: Address) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback and settings.notify_allow_loopback:
        return
    if scheme != "https":
        raise UnsafeWebhook("plain http:// is allowed to a loopback address in tests only")
    if not address.is_global or address.is_multicast:
        raise UnsafeWebhook("the webhook's host resolves to a private or reserved address")


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The `Studio-Signature` header's value for `body` sent at `timestamp`."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def post(settings: Settings, url: str, secret: str, body: bytes, timestamp: int) -> int:
    """Posts the signed `body` to `url` (checked again first) and returns the status code, not
    reading the answer's body; redirects are not followed. Raises `UnsafeWebhook`, or
    `httpx.HTTPError` when the receiver cannot be reached in `notify_timeout_s`."""
    parts, address = _resolve(settings, url)
    host = f"[{address}]" if address.version == 6 else str(address)
    pinned = parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")).geturl()
    headers = {
        "Host": parts.netloc,
        "Content-Type": "application/json",
        "User-Agent": "AI-Film-Studio-Webhooks/1",
        SIGNATURE_HEADER: signature(secret, body, timestamp),
    }
    with (
        httpx.Client(timeout=settings.notify_timeout_s, follow_redirects=False) as client,
        client.stream(
            "POST",
            pinned,
            content=body,
            headers=headers,
            extensions={"sni_hostname": parts.hostname},
        ) as response,
    ):
        return response.status_code
