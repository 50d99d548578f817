"""The one parser of HTTP numbers (``ocitransport._numbers``) and the header readers built on it: ASCII
digits only (RFC 9110 sections 8.6, 10.2.3, 14.4), at most ``MAX_DIGITS`` of them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocitransport._numbers import MAX_DIGITS, header_number, parse_number
from ocitransport.mirror.blobs import _content_range_start
from ocitransport.mirror.session import _range_end, parse_pull_quota
from ocitransport.transport.bearer import parse_token
from ocitransport.transport.retry import OVERFLOW_SECONDS, describe_wait, parse_retry_after

TABLE = [
    ("0", 0), ("7", 7), ("0012", 12), ("9" * MAX_DIGITS, 10 ** MAX_DIGITS - 1),
    ("9" * (MAX_DIGITS + 1), None),  # too long
    ("", None), ("²", None), ("12²", None), ("١٢", None), ("１２", None), ("1_000", None), (" 12", None),
    ("12 ", None), ("+1", None), ("-1", None), ("1.0", None), ("1e3", None), ("0x10", None), ("\u0660", None),
]


@pytest.mark.parametrize(("text", "expected"), TABLE, ids=[repr(t) for t, _ in TABLE])
def test_table(text: str, expected: int | None) -> None:
    assert parse_number(text) == expected


@given(st.text(max_size=MAX_DIGITS + 3))
def test_accepts_exactly_ascii_digit_strings_up_to_the_bound(text: str) -> None:
    ascii_digits = 0 < len(text) <= MAX_DIGITS and all(c in "0123456789" for c in text)
    assert parse_number(text) == (int(text) if ascii_digits else None)


@given(st.integers(min_value=0, max_value=10 ** MAX_DIGITS - 1))
def test_every_number_in_range_round_trips(n: int) -> None:
    assert parse_number(str(n)) == n
    assert header_number(f" \t{n} ") == n


def test_header_number_drops_only_spaces_and_tabs() -> None:
    assert header_number(None) is None
    assert header_number(" 5\t") == 5
    assert header_number("\n5") is None and header_number("\xa05") is None


@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0), (" 3 ", 3.0), ("²", None), ("١٢", None), ("1_000", None), ("-1", None), ("1.5", None),
    ("9" * 40, OVERFLOW_SECONDS), ("Fri, 31 Dec 99999 23:59:59 GMT", None), ("\u0661 Jan 2030", None),
])
def test_retry_after(value: str, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_far_dates_and_their_description() -> None:
    far = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT")
    assert far is not None and far > 7900 * 365 * 86400
    assert describe_wait(100_000_000_000) == "3169 years"
    assert [describe_wait(s) for s in (59, 300, 7200 * 3, 86400 * 3)] == ["59 s", "5 min", "6 h", "3 days"]


@pytest.mark.parametrize(("value", "expected"), [
    ("bytes 5-9/10", 5), ("bytes ²-9/10", None), ("bytes ١-9/10", None), ("bytes 1_0-9/10", None),
    ("items 5-9/10", None), ("bytes " + "9" * 30 + "-1/2", None),
])
def test_content_range_start(value: str, expected: int | None) -> None:
    assert _content_range_start(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("0-9", 10), ("bytes=0-9", 10), ("0-0", 0), ("0--1", 0), ("0-²", None), ("0-١٢", None), ("0-1_0", None),
    ("0-" + "9" * 30, None), ("1-9", None),
])
def test_upload_range(value: str, expected: int | None) -> None:
    assert _range_end(value) == expected


def test_rate_limit_headers() -> None:
    assert parse_pull_quota({"RateLimit-Remaining": "76;w=21600", "RateLimit-Limit": "100;w=21600"}) is not None
    assert parse_pull_quota({"RateLimit-Remaining": "²;w=21600"}) is None
    assert parse_pull_quota({"RateLimit-Remaining": "١٢"}) is None


@pytest.mark.parametrize(("expires", "seconds"), [
    (300, 300.0), (300.5, 300.5), ('"300"', 300.0), ('"١٢"', 0.0), ('"1e9"', 0.0), ('" 12 "', 0.0),
    ('"1_000"', 0.0), ("true", 0.0), ("-5", 0.0), ("1e400", 0.0), ("1e30", 0.0), ('"' + "9" * 30 + '"', 0.0),
])
def test_token_expires_in(expires: object, seconds: float) -> None:
    body = f'{{"token": "t", "expires_in": {expires}}}'.encode()
    assert parse_token(body, "r").expires_in == seconds
