"""Go's URL query form (net/url ``QueryEscape``, ``QueryUnescape``, ``ParseQuery``, ``Values.Encode``) over
byte strings: the pure helpers the scopes and redaction twins share (``ext/_form.pxd`` is the compiled one).

A byte string is a ``str`` holding one code point per byte (UTF-8 bytes decoded as latin-1), so Go's
byte-wise rules apply to text that is not ASCII.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

__all__ = ["byte_string", "encode_query", "escape", "parse_query", "unescape", "utf8"]

# Go's QueryEscape leaves only these bytes as they are (space becomes "+").
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
_ESCAPE_TABLE = {i: ("+" if i == 0x20 else f"%{i:02X}") for i in range(256) if i not in _UNRESERVED}
_has_reserved = re.compile(r"[^A-Za-z0-9\-_.~]").search
# Text made only of these characters is escaped by a few str.replace calls instead of translate().
_has_uncommon = re.compile(r"[^A-Za-z0-9\-_.~:/,%@= ]").search
# Go's unescape rejects a "%" that is not followed by two hex digits (and drops that query pair).
_bad_escape = re.compile(r"%(?![0-9A-Fa-f]{2})").search


def utf8(text: str) -> bytes:
    """``text`` in UTF-8, lone surrogates kept (as Go keeps invalid bytes in a string)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def byte_string(text: str) -> str:
    """``text`` as UTF-8 bytes, one code point per byte (ASCII text is its own byte string)."""
    return text if text.isascii() else utf8(text).decode("latin-1")


def escape(bs: str) -> str:
    """Go's ``url.QueryEscape`` of a byte string."""
    if _has_reserved(bs) is None:
        return bs
    if _has_uncommon(bs) is None:
        return (
            bs.replace("%", "%25").replace(":", "%3A").replace("/", "%2F").replace(",", "%2C")
            .replace("@", "%40").replace("=", "%3D").replace(" ", "+")
        )
    return bs.translate(_ESCAPE_TABLE)


def unescape(bs: str) -> str | None:
    """Go's ``url.QueryUnescape`` of a byte string; ``None`` where Go returns an error."""
    if "+" in bs:
        bs = bs.replace("+", " ")
    if "%" in bs:
        if _bad_escape(bs) is not None:
            return None
        bs = unquote_to_bytes(bs.encode("latin-1")).decode("latin-1")
    return bs


def parse_query(query: str) -> dict[str, list[str]]:
    """Go's ``url.ParseQuery`` (errors ignored): byte-string keys to their values, in order."""
    values: dict[str, list[str]] = {}
    for part in byte_string(query).split("&"):
        if not part or ";" in part:
            continue
        key, _, value = part.partition("=")
        key = unescape(key)  # type: ignore[assignment]
        if key is None:
            continue
        value = unescape(value)  # type: ignore[assignment]
        if value is None:
            continue
        if key in values:
            values[key].append(value)
        else:
            values[key] = [value]
    return values


def encode_query(values: dict[str, list[str]]) -> str:
    """Go's ``url.Values.Encode``: keys sorted byte-wise, each key's values in order."""
    out = []
    for key in sorted(values):
        prefix = escape(key) + "="
        out.extend([prefix + escape(v) for v in values[key]])
    return "&".join(out)
