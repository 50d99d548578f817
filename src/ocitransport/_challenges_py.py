"""Pure-Python twin: ``WWW-Authenticate`` challenge parsing (RFC 7235).

The compiled twin (``ext/_challenges_c.pyx``) implements the very same scanner over code points; the two
must agree on every input, so any change here is a change there (``tests/test_challenges_twins.py``).

The scanner, one header value at a time:

* Elements are separated by commas; whitespace (SP, HT, CR, LF, as upstream) and empty elements
  (``,,``) are skipped between them.
* A token followed by optional whitespace and ``=`` is an auth-param of the current challenge
  (``BWS "=" BWS``, RFC 7235 section 2.1). Any other token that is followed by whitespace, a comma or
  the end starts a new challenge; directly after a scheme and its whitespace comes either a token68
  (stored in ``Challenge.token68``) or the first auth-param.
* A value is a quoted-string (``\\x`` -> ``x``) or a token. An empty value drops that parameter, an
  unterminated quoted-string drops it too, and an unquoted value ends at its first non-token character
  (``realm=https://x`` keeps ``https``).
* Whatever does not fit is skipped up to the next comma outside a quoted-string; what parsed so far is
  kept. Nothing but a wrong input type ever raises.

Upstream (go-containerregistry internal/authchallenge, ``parseValueAndParams``) reads one challenge per
header value and stops at the first element it cannot read, keeping what came before. Where the two
differ, on purpose (docs/deviations.md, "challenges", lists each with its reason):

1. several challenges in one header value (``Bearer realm=x, Basic realm=y``): upstream keeps the first;
2. recovery: after a malformed element the scan goes on at the next comma; upstream stops;
3. a space before ``=`` (``realm = "x"``) is accepted (RFC 7235 ``BWS``); upstream stops there;
4. an empty value (``realm=""``) drops that parameter only; upstream stops there;
5. a bare ``scope=foo`` (no scheme) is no challenge; upstream makes ``scope`` the scheme;
6. a leading comma or empty elements (``,Bearer realm=x``) are skipped; upstream finds no challenge;
7. a comma after the scheme (``Bearer, realm=x``) still gives the scheme its parameters; upstream gives
   none; and ``token68`` (``Basic abc==``) is kept, where upstream drops it.

Whitespace (SP, HT, CR, LF), lower-cased schemes and parameter names, and the last of a repeated
parameter winning are as upstream.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ._values import Challenge

__all__ = ["parse_challenges"]

# RFC 7230 tchar: ASCII letters, digits and !#$%&'*+-.^_`|~ (upstream: ASCII minus controls and separators).
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# RFC 7235 token68 characters, then any number of "=" padding characters.
_TOKEN68 = r"[A-Za-z0-9\-._~+/]+=*"
_WS = r"[ \t\r\n]"

_skip_separators = re.compile(r"[ \t\r\n,]*").match
_token_then_ws = re.compile(rf"({_TOKEN})({_WS}*)").match
_param_value = re.compile(rf'{_WS}*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))?{_WS}*', re.DOTALL).match
_token68_element = re.compile(rf"({_TOKEN68}){_WS}*(?:,|\Z)").match
_quoted_rest = re.compile(r'(?:[^"\\]|\\.)*"', re.DOTALL).match
_unescape = re.compile(r"\\(.)", re.DOTALL).sub

# Fast path: one well-formed challenge with auth-params, the shape every registry sends.
_well_formed = re.compile(
    rf'[ \t]*({_TOKEN})[ \t]+((?:{_TOKEN}=(?:"[^"\\]*"|{_TOKEN})[ \t]*,[ \t]*)*'
    rf'{_TOKEN}=(?:"[^"\\]*"|{_TOKEN}))[ \t]*'
).fullmatch
_well_formed_params = re.compile(rf'({_TOKEN})=(?:"([^"\\]*)"|({_TOKEN}))').findall


def _skip_garbage(s: str, pos: int) -> int:
    """The position of the next comma at or after ``pos`` outside a quoted-string, or ``len(s)``."""
    n = len(s)
    comma = s.find(",", pos)
    while True:
        quote = s.find('"', pos, n if comma < 0 else comma)
        if quote < 0:
            return n if comma < 0 else comma
        m = _quoted_rest(s, quote + 1)
        if m is None:
            return n
        pos = m.end()
        if 0 <= comma < pos:
            comma = s.find(",", pos)


def _parse_value(s: str, out: list[Challenge]) -> None:
    m = _well_formed(s)
    if m is not None:
        params: dict[str, str] = {}
        for key, quoted, token in _well_formed_params(m.group(2)):
            value = quoted or token
            if value:
                params[key.lower()] = value
        out.append(Challenge(m.group(1).lower(), params))
        return

    n = len(s)
    pos = 0
    current: dict[str, str] | None = None
    # True right after "scheme 1*SP": only a token68 or an auth-param may follow there.
    after_scheme = False
    while True:
        if not after_scheme:
            pos = _skip_separators(s, pos).end()  # type: ignore[union-attr]  # a "*" pattern always matches
            if pos >= n:
                return
        m = _token_then_ws(s, pos)
        if m is not None:
            end = m.end()
            nxt = s[end] if end < n else ""
            if nxt == "=":
                after_scheme = False
                v = _param_value(s, end + 1)
                assert v is not None  # every part of the pattern is optional
                pos = v.end()
                quoted, token = v.group(1), v.group(2)
                if current is not None:
                    if token is not None:
                        current[m.group(1).lower()] = token
                    elif quoted:
                        current[m.group(1).lower()] = _unescape(r"\1", quoted) if "\\" in quoted else quoted
                if pos < n and s[pos] != ",":
                    pos = _skip_garbage(s, pos)
                continue
            if not after_scheme and (nxt == "" or nxt == "," or m.group(2)):
                current = {}
                challenge = Challenge(m.group(1).lower(), current)
                out.append(challenge)
                pos = end
                if nxt == "" or nxt == ",":
                    continue
                t = _token68_element(s, end)
                if t is not None:
                    challenge.token68 = t.group(1)
                    pos = t.end()
                    continue
                after_scheme = True
                continue
        after_scheme = False
        pos = _skip_garbage(s, pos)


def parse_challenges(value: str | Iterable[str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` header values into challenges, in order.

    ``value`` is one header value or an iterable of them (one per header line); every value may hold
    several challenges. Scheme and parameter names come back lower-cased, values as sent; a repeated
    parameter keeps its last value. Malformed parts are dropped, never raised on.

    >>> parse_challenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io"')
    [Challenge('bearer', {'realm': 'https://auth.docker.io/token', 'service': 'registry.docker.io'}, insecure=False)]

    Raises ``TypeError`` when ``value`` is not a str nor an iterable of str (bytes included).
    """
    out: list[Challenge] = []
    if isinstance(value, str):
        _parse_value(value, out)
        return out
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"parse_challenges() expects a str or an iterable of str, got {type(value).__name__}")
    try:
        values = iter(value)
    except TypeError:
        raise TypeError(
            f"parse_challenges() expects a str or an iterable of str, got {type(value).__name__}"
        ) from None
    for item in values:
        if not isinstance(item, str):
            raise TypeError(f"parse_challenges() expects str header values, got {type(item).__name__}")
        _parse_value(item, out)
    return out
