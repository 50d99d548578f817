"""HTTP numbers from servers, parsed in one place: ASCII digits only, and not too many of them.

RFC 9110 spells every number we read off a response as ``1*DIGIT`` with ``DIGIT = %x30-39``
(Content-Length section 8.6, delta-seconds 10.2.3, Content-Range 14.4; RFC 5234 appendix B.1).
Python's ``int()`` takes much more: other scripts' digits (``'١٢'``), ``'²'`` (``isdigit()`` says yes,
``int()`` raises), underscores (``'1_000'``), signs and surrounding whitespace.
"""

from __future__ import annotations

#: The most digits a number may have: 18 keeps every value below 2**63 (a curl_off_t, Go's int64).
MAX_DIGITS = 18


def parse_number(text: str, max_digits: int = MAX_DIGITS) -> int | None:
    """``text`` as a non-negative integer when it is 1 to ``max_digits`` ASCII digits, else ``None``."""
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


def header_number(value: str | None, max_digits: int = MAX_DIGITS) -> int | None:
    """A header value that is one number, spaces and tabs around it dropped (RFC 9110 section 5.5);
    ``None`` when absent or not a number."""
    if value is None:
        return None
    return parse_number(value.strip(" \t"), max_digits)


def is_digits(text: str) -> bool:
    """Whether ``text`` is one or more ASCII digits (any length)."""
    return bool(text) and text.isascii() and text.isdigit()


__all__ = ["MAX_DIGITS", "header_number", "is_digits", "parse_number"]
