"""Email addresses in the one form an account is known by, so that addresses that look alike
are one account, not several (each with its free credits).

`normalise` applies NFKC (full-width `U+FF44` is `d`, NFD and NFC are one), removes
default-ignorable code points (zero-width spaces and joiners, soft hyphens, variation
selectors: `\\p{DI}`), lowercases the address, drops the domain's trailing dot and writes
the domain as IDNA A-labels (UTS 46: `BÜCHER.example` and `xn--bcher-kva.example` are one
domain). It refuses a local part that mixes scripts (a Cyrillic `U+0501` among Latin
letters): UTS 39's resolved script set of its characters must not be empty (Han, Hiragana and
Katakana count as Japanese, Han and Hangul as Korean, Han and Bopomofo as Chinese).
It lives beside the tables because it is what `users.email` holds (migration 0009 wrote the
stored addresses in this form): registration, sign-in, Google sign-in and the CLI all use it.
"""

from __future__ import annotations

import unicodedata

import idna
import regex
from fontTools import unicodedata as scripts

from cluster.errors import StudioError


class AddressInvalid(StudioError):
    slug, status, title = "address-invalid", 422, "Invalid email address"


DEFAULT_IGNORABLE = regex.compile(r"\p{Default_Ignorable_Code_Point}")
ANY_SCRIPT = {"Zyyy", "Zinh"}  # Common and Inherited: digits, `.`, `_`, combining marks
ALSO = {"Hani": {"Hanb", "Jpan", "Kore"}, "Hira": {"Jpan"}, "Kana": {"Jpan"},
        "Hang": {"Kore"}, "Bopo": {"Hanb"}}  # fmt: skip


def normalise(address: str) -> str:
    """The address's normal form; AddressInvalid if it has no valid one."""
    text = DEFAULT_IGNORABLE.sub("", unicodedata.normalize("NFKC", address)).lower()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise AddressInvalid("an email address is local-part@domain")
    if mixed_script(local):
        raise AddressInvalid("the part of the address before @ mixes letters of different scripts")
    try:
        ascii_domain = idna.encode(domain.removesuffix("."), uts46=True).decode()
    except idna.IDNAError:
        raise AddressInvalid(f"{domain!r} is not a valid domain name") from None
    if "." not in ascii_domain:
        raise AddressInvalid("the domain of an email address has a dot")
    return f"{local}@{ascii_domain}"


def mixed_script(text: str) -> bool:
    """Whether `text`'s characters share no script (UTS 39's resolved script set is empty)."""
    common: set[str] | None = None
    for char in text:
        found = set(scripts.script_extension(char))
        if found & ANY_SCRIPT:
            continue
        for script in list(found):
            found |= ALSO.get(script, set())
        common = found if common is None else common & found
        if not common:
            return True
    return False
