"""Personal data the contract forbids: mainland mobile numbers and resident ID numbers.

The rule (docs/contract.md#personal-data, docs/privacy.md): no string value of an event, except
`event_id`, may contain a mobile number or a resident ID number as a whole token (not preceded
or followed by an ASCII letter or digit):

- **mobile**: 11 digits starting 13-19, optionally after `+86` / `0086`, optionally split as
  3-4-4 by single spaces or dashes: `13812345678`, `+86 138-1234-5678`, `0086 13812345678`;
- **resident_id** (居民身份证号码, GB 11643): 18 characters, 17 digits and a check character
  (digit or `X`/`x`), whose digits 7-14 are a valid birth date (1800-2099) and whose last
  character is the ISO 7064 MOD 11-2 check character of the first 17.

Integers (a number sent unquoted) are checked as their decimal text. Everything here is pure
and keyless except `keyed_hash`/`pseudonym`, which take the key from the caller (the settings
live on a higher floor). The decoder calls `candidates` on the raw bytes first: it costs well
under a microsecond and lets through only messages with 11 digits in a row or a 3-4 digit group,
so the precise scan runs on few events.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date
from typing import Any, Final, NamedTuple

MOBILE: Final = "mobile"
RESIDENT_ID: Final = "resident_id"

# Token boundaries are ASCII letters and digits: "电话13812345678", "tel:13812345678" and
# "id_13812345678" contain a mobile number; "b13812345678" and "138123456789" do not.
_PHONE_RE: Final = re.compile(
    r"(?<![0-9A-Za-z])(?:(?:\+|00)86[ -]?)?(1[3-9][0-9])[ -]?([0-9]{4})[ -]?([0-9]{4})(?![0-9A-Za-z])")
_ID_RE: Final = re.compile(
    r"(?<![0-9A-Za-z])([1-9][0-9]{5})((?:18|19|20)[0-9]{2})(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])([0-9]{3})([0-9Xx])"
    r"(?![0-9A-Za-z])")
_PHONE_BYTES_RE: Final = re.compile(_PHONE_RE.pattern.encode())
_ID_BYTES_RE: Final = re.compile(_ID_RE.pattern.encode())

# GB 11643 weights: 2^(17-i) mod 11 for the 17 digits; the check value maps to this table.
_WEIGHTS: Final = tuple(pow(2, 17 - i, 11) for i in range(17))
_CHECK_CHARS: Final = "10X98765432"

# Prefilter over raw bytes, in one translation and a regex search with a literal prefix (a
# fraction of a microsecond for an event): digits -> '0', space and dash -> '-', X/x -> 'X',
# other ASCII letters -> 'a', anything else -> '.'. _HIT is the shape of a mobile number
# (3-4-4 digits, separators optional, the last may be X), which the last 11 characters of a
# resident ID also have. Token boundaries are checked in Python on the few hits (a lookaround
# in the regex costs more than the whole search): after the hit, and before it, where a +86 /
# 0086 prefix or the first 7 characters of an ID may stand. Long digit runs (numeric ids) are
# skipped in one step. A superset of what find_in_text finds (tests/schemas check it).
_TRANSLATE: Final = bytes(
    48 if 48 <= i <= 57 else 45 if i in (32, 45) else 88 if i in (88, 120)
    else 97 if 65 <= i <= 90 or 97 <= i <= 122 else 46 for i in range(256))
_HIT: Final = re.compile(rb"000-?0000-?000[0X]")
_TOKEN_CHARS: Final = frozenset(b"0aX")
_RUN_CHARS: Final = frozenset(b"0X")
_RUN7: Final = b"0" * 7
_DIGITS: Final = b"0123456789"


class Finding(NamedTuple):
    """One match: where (field path, None when unknown), what, the text as sent, and its
    canonical form (the 11 digits of a mobile; 18 characters, upper-case X, of an ID), which
    is what keyed_hash and pseudonym digest."""

    field: str | None
    type: str
    value: str
    normalized: str


def resident_id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of 17 digits."""
    return _CHECK_CHARS[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def _valid_id(m: re.Match[str]) -> bool:
    try:
        date(int(m.group(2)), int(m.group(3)), int(m.group(4)))
    except ValueError:
        return False
    s = m.group(0)
    return resident_id_check_char(s[:17]) == s[17].upper()


def find_in_text(s: str) -> list[tuple[int, int, str, str]]:
    """(start, end, type, normalized) of every mobile and resident ID number in s."""
    out: list[tuple[int, int, str, str]] = []
    for m in _ID_RE.finditer(s):
        if _valid_id(m):
            out.append((m.start(), m.end(), RESIDENT_ID, m.group(0).upper()))
    for m in _PHONE_RE.finditer(s):
        if not any(a < m.end() and m.start() < b for a, b, _, _ in out):
            out.append((m.start(), m.end(), MOBILE, m.group(1) + m.group(2) + m.group(3)))
    return out


def text_candidate(s: str) -> bool:
    """Cheap necessary condition for find_in_text(s) to find anything: 11 digits or more."""
    if len(s) < 11:
        return False
    try:
        b = s.encode()
    except UnicodeEncodeError:  # a lone surrogate (JSON allows one escaped)
        b = s.encode("utf-8", "surrogatepass")
    return len(b) - len(b.translate(None, _DIGITS)) >= 11


def candidates(raw: bytes) -> bool:
    """Cheap necessary condition, over a message's raw bytes, for any decoded string in it to
    hold personal data. A JSON escape (backslash) can hide digits or boundaries from a byte
    scan, so a message with one is always a candidate."""
    t = raw.translate(_TRANSLATE, b"\\")  # and drop backslashes: one pass finds them too
    n = len(t)
    if n != len(raw):
        return True
    m = _HIT.search(t)
    while m is not None:
        s, e = m.span()
        if e < n and t[e] in _TOKEN_CHARS:  # inside a longer token: go to the end of the run
            b = e + 1
            while b < n and t[b] in _RUN_CHARS:
                b += 1
            m = _HIT.search(t, max(s + 1, b - 13))
            continue
        if (s == 0 or t[s - 1] not in _TOKEN_CHARS or raw[s - 3:s] == b"+86" or raw[s - 4:s] == b"0086"
                or (s >= 7 and t[s - 7:s] == _RUN7 and (s == 7 or t[s - 8] not in _TOKEN_CHARS))):
            return True
        m = _HIT.search(t, s + 1)
    return False


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def find_in_value(v: Any, path: str, out: list[Finding]) -> None:
    """Append the findings of a JSON value (strings, integers, arrays, objects: keys too)."""
    if isinstance(v, str):
        if text_candidate(v):
            out.extend(Finding(path, t, v[a:b], n) for a, b, t, n in find_in_text(v))
    elif isinstance(v, dict):
        for k, item in v.items():
            p = _join(path, str(k))
            if isinstance(k, str) and text_candidate(k):
                out.extend(Finding(p, t, k[a:b], n) for a, b, t, n in find_in_text(k))
            find_in_value(item, p, out)
    elif isinstance(v, list):
        for i, item in enumerate(v):
            find_in_value(item, f"{path}[{i}]", out)
    elif isinstance(v, int) and not isinstance(v, bool) and v >= 10**10:
        s = str(v)
        out.extend(Finding(path, t, s[a:b], n) for a, b, t, n in find_in_text(s))


def mask_text(s: str) -> str:
    """s with the digits (and ID check character) of every finding replaced by '*'."""
    found = find_in_text(s) if text_candidate(s) else []
    if not found:
        return s
    chars = list(s)
    for a, b, _, _ in found:
        for i in range(a, b):
            if chars[i] in "0123456789Xx":
                chars[i] = "*"
    return "".join(chars)


def mask_bytes(raw: bytes) -> tuple[bytes, list[tuple[str, str]]]:
    """raw with every finding's digits masked, scanning the bytes themselves (any encoding
    that writes digits as ASCII: UTF-8, GBK, broken JSON). Returns the masked bytes and the
    (type, normalized) of each finding."""
    if not candidates(raw):
        return raw, []
    spans: list[tuple[int, int]] = []
    found: list[tuple[str, str]] = []
    for m in _ID_BYTES_RE.finditer(raw):
        text = m.group(0).decode("ascii")
        sm = _ID_RE.fullmatch(text)
        if sm is not None and _valid_id(sm):
            spans.append((m.start(), m.end()))
            found.append((RESIDENT_ID, text.upper()))
    for m in _PHONE_BYTES_RE.finditer(raw):
        if not any(a < m.end() and m.start() < b for a, b in spans):
            spans.append((m.start(), m.end()))
            found.append((MOBILE, (m.group(1) + m.group(2) + m.group(3)).decode("ascii")))
    if not spans:
        return raw, []
    buf = bytearray(raw)
    for a, b in spans:
        for i in range(a, b):
            if buf[i] in b"0123456789Xx":
                buf[i] = 42  # '*'
    return bytes(buf), found


def mask_value(v: Any) -> Any:
    """A JSON value with every string (object keys too) passed through mask_text and every
    integer holding personal data replaced by its masked text."""
    if isinstance(v, str):
        return mask_text(v)
    if isinstance(v, dict):
        return {mask_text(str(k)): mask_value(item) for k, item in v.items()}
    if isinstance(v, list):
        return [mask_value(item) for item in v]
    if isinstance(v, int) and not isinstance(v, bool) and v >= 10**10:
        s = str(v)
        masked = mask_text(s)
        return v if masked == s else masked
    return v


def keyed_hash(key: bytes, normalized: str) -> str:
    """HMAC-SHA256 of a finding's canonical form, hex: what a personal_data dead letter keeps
    so the producer, who has the key, can find the record of a number it sent."""
    return hmac.new(key, normalized.encode(), hashlib.sha256).hexdigest()


def canonical(value: str) -> str:
    """The form pseudonym() digests: a value that is one mobile number or one resident ID as
    a whole is reduced to its canonical form (so `138-1234-5678` and `+8613812345678` get one
    pseudonym), anything else is taken as sent."""
    found = find_in_text(value) if text_candidate(value) else []
    if len(found) == 1 and found[0][0] == 0 and found[0][1] == len(value):
        return found[0][3]
    return value


def pseudonym(key: bytes, value: str) -> str:
    """Keyed pseudonym of an identifier: 'p-' and 32 hex characters (128 bits of
    HMAC-SHA256 over canonical(value)). Deterministic for a key, so counts and flags per
    borrower stay exact; not reversible without the key."""
    return "p-" + hmac.new(key, canonical(value).encode(), hashlib.sha256).hexdigest()[:32]
