"""Which webhook addresses the studio posts to: HTTPS to public addresses only; loopback over
plain HTTP only where the test setting allows it; never private, link-local or reserved
ranges (SSRF), never credentials in the address."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.settings import Settings
from pipeline.notify.webhooks import UnsafeWebhook, check_url, signature

REFUSED_IN_PRODUCTION = [
    "http://93.184.215.14/hook",  # plain HTTP
    "https://127.0.0.1/hook",
    "https://localhost/hook",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://10.1.2.3/hook",
    "https://172.16.0.1/hook",
    "https://192.168.1.1/hook",
    "https://169.254.169.254/latest/meta-data",  # cloud metadata
    "https://100.64.0.1/hook",  # carrier-grade NAT
    "https://0.0.0.0/hook",
    "https://224.0.0.1/hook",
    "https://[fd00::1]/hook",
    "https://[fe80::1]/hook",
    "https://user:pass@93.184.215.14/hook",
    "https://93.184.215.14/hook#fragment",
    "ftp://93.184.215.14/hook",
    "https:///hook",
    "https://no-such-host.invalid/hook",
    "https://93.184.215.14/" + "a" * 2048,
]


@pytest.fixture
def production(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "var", _env_file=None)


@pytest.fixture
def testing(production: Settings) -> Settings:
    return production.model_copy(update={"notify_allow_loopback": True})


@pytest.mark.parametrize("url", REFUSED_IN_PRODUCTION)
def test_unsafe_addresses_are_refused(production: Settings, url: str) -> None:
    with pytest.raises(UnsafeWebhook):
        check_url(production, url)


def test_a_public_https_address_is_accepted(production: Settings) -> None:
    assert check_url(production, "https://93.184.215.14:8443/hook?x=1") == (
        "https://93.184.215.14:8443/hook?x=1"
    )


def test_the_test_setting_opens_loopback_only(testing: Settings) -> None:
    assert check_url(testing, "http://127.0.0.1:8080/hook")
    assert check_url(testing, "http://localhost/hook")
    for private in ("http://10.1.2.3/hook", "https://10.1.2.3/hook", "http://93.184.215.14/"):
        with pytest.raises(UnsafeWebhook):
            check_url(testing, private)


def test_the_signature_is_stripe_like() -> None:
    """HMAC-SHA256 of "t.body" under the secret, in hex (the value from `openssl dgst -sha256
    -hmac whsec_test` of `1700000000.{"a":1}`)."""
    header = signature("whsec_test", b'{"a":1}', 1700000000)
    assert header == (
        "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
    )
