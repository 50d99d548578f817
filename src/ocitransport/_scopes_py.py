"""Pure-Python twin: token scope strings (build, parse, merge) and the token request query.

The compiled twin is ``ext/_scopes_c.pyx``; both must agree on every input, errors included
(``tests/test_scopes_twins.py``).

The query helpers here (Go's ``url.ParseQuery`` and ``url.Values.Encode``) are shared with
``_redaction_py``. They work on *byte strings held in a str*: each code point below 256 stands for one
byte, so that sorting keys and escaping match Go's byte-wise behaviour whatever the input holds. Text is
turned into that form by UTF-8 encoding it (``surrogateescape`` first, so a value that came from bytes
decoded with ``surrogateescape`` gets its own bytes back; ``surrogatepass`` for any other lone surrogate).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import unquote_to_bytes

from ._values import Scope

__all__ = ["merge_scopes", "parse_scope", "registry_scope", "repository_scope", "token_query"]

# Go's QueryEscape leaves only these bytes as they are (space becomes "+").
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
_ESCAPE_TABLE = {i: ("+" if i == 0x20 else f"%{i:02X}") for i in range(256) if i not in _UNRESERVED}
_has_reserved = re.compile(r"[^A-Za-z0-9\-_.~]").search
# Text made only of these characters is escaped by a few str.replace calls instead of translate().
_has_uncommon = re.compile(r"[^A-Za-z0-9\-_.~:/,%@= ]").search
# Go's unescape rejects a "%" that is not followed by two hex digits (and drops that query pair).
_bad_escape = re.compile(r"%(?![0-9A-Fa-f]{2})").search

_CATALOG = "registry:catalog:*"


def _type_name(value: object) -> str:
    return type(value).__name__


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _bytestr(text: str) -> str:
    """``text`` as UTF-8 bytes, one code point per byte (ASCII text is its own byte string)."""
    return text if text.isascii() else _utf8(text).decode("latin-1")


def _escape(bs: str) -> str:
    """Go's ``url.QueryEscape`` of a byte string."""
    if _has_reserved(bs) is None:
        return bs
    if _has_uncommon(bs) is None:
        return (
            bs.replace("%", "%25").replace(":", "%3A").replace("/", "%2F").replace(",", "%2C")
            .replace("@", "%40").replace("=", "%3D").replace(" ", "+")
        )
    return bs.translate(_ESCAPE_TABLE)


def _unescape(bs: str) -> str | None:
    """Go's ``url.QueryUnescape`` of a byte string; ``None`` where Go returns an error."""
    if "+" in bs:
        bs = bs.replace("+", " ")
    if "%" in bs:
        if _bad_escape(bs) is not None:
            return None
        bs = unquote_to_bytes(bs.encode("latin-1")).decode("latin-1")
    return bs


def _parse_query(query: str) -> dict[str, list[str]]:
    """Go's ``url.ParseQuery`` (errors ignored): byte-string keys to their values, in order."""
    values: dict[str, list[str]] = {}
    for part in _bytestr(query).split("&"):
        if not part or ";" in part:
            continue
        key, _, value = part.partition("=")
        key = _unescape(key)  # type: ignore[assignment]
        if key is None:
            continue
        value = _unescape(value)  # type: ignore[assignment]
        if value is None:
            continue
        if key in values:
            values[key].append(value)
        else:
            values[key] = [value]
    return values


def _encode_query(values: dict[str, list[str]]) -> str:
    """Go's ``url.Values.Encode``: keys sorted byte-wise, each key's values in order."""
    out = []
    for key in sorted(values):
        prefix = _escape(key) + "="
        out.extend([prefix + _escape(v) for v in values[key]])
    return "&".join(out)


def _iter_str(value: object, what: str, expected: str = "an iterable of str") -> Iterable[str]:
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be {expected}, got {_type_name(value)}")
    try:
        return iter(value)  # type: ignore[call-overload, no-any-return]
    except TypeError:
        raise TypeError(f"{what} must be {expected}, got {_type_name(value)}") from None


def repository_scope(repository: str, actions: str | Iterable[str]) -> str:
    """The token scope ``repository:NAME:ACTIONS``; an iterable of actions is joined with ``,``.

    >>> repository_scope("library/ubuntu", ["push", "pull"])
    'repository:library/ubuntu:push,pull'
    """
    if not isinstance(repository, str):
        raise TypeError(f"repository must be a str, got {_type_name(repository)}")
    if not isinstance(actions, str):
        items = []
        for action in _iter_str(actions, "actions", "a str or an iterable of str"):
            if not isinstance(action, str):
                raise TypeError(f"actions must be str, got {_type_name(action)}")
            items.append(action)
        actions = ",".join(items)
    return "repository:" + repository + ":" + actions


def registry_scope(action: str = "catalog") -> str:
    """The registry-wide scope: always ``registry:catalog:*`` (upstream ignores ``action`` too)."""
    return _CATALOG


def parse_scope(scope: str) -> Scope:
    """Split ``TYPE:NAME:ACTIONS`` (``NAME`` may hold ``:``; empty actions dropped).

    Raises ``ValueError`` for fewer than two ``:`` or an empty type, ``TypeError`` for a non-str.
    """
    if not isinstance(scope, str):
        raise TypeError(f"scope must be a str, got {_type_name(scope)}")
    first = scope.find(":")
    last = scope.rfind(":")
    if first <= 0 or first == last:
        raise ValueError(f"invalid scope {scope!r}: want TYPE:NAME:ACTIONS")
    return Scope(scope[:first], scope[first + 1:last], tuple([a for a in scope[last + 1:].split(",") if a]))


def merge_scopes(new: Iterable[str], old: Iterable[str]) -> list[str]:
    """The union of two scope lists, one scope per resource (type and name), new scopes first.

    Resources keep the order in which they first appear in ``new`` then ``old`` (some registries read
    only the first scope, so what a 401 asked for leads); actions keep their first-appearance order too.
    Strings that are not ``TYPE:NAME:ACTIONS`` are kept verbatim, once.

    >>> merge_scopes(["repository:a:push"], ["repository:a:pull", "registry:catalog:*"])
    ['repository:a:push,pull', 'registry:catalog:*']
    """
    resources: dict[str, list[str] | None] = {}
    for what, scopes in (("new", new), ("old", old)):
        for scope in _iter_str(scopes, what):
            if not isinstance(scope, str):
                raise TypeError(f"{what} must hold str scopes, got {_type_name(scope)}")
            first = scope.find(":")
            last = scope.rfind(":")
            if first <= 0 or first == last:
                if scope not in resources:
                    resources[scope] = None
                continue
            # "TYPE:NAME:" names the resource: TYPE holds no ":", and no unparseable string (fewer than
            # two ":" or an empty TYPE) can equal it.
            key = scope[:last + 1]
            actions = resources.get(key)
            if actions is None:
                actions = resources[key] = []
            for action in scope[last + 1:].split(","):
                if action and action not in actions:
                    actions.append(action)
    return [key if actions is None else key + ",".join(actions) for key, actions in resources.items()]


def token_query(service: str, scopes: Sequence[str], query: str = "") -> str:
    """The query string of a token GET, encoded as Go's ``url.Values.Encode()`` does.

    ``query`` is the realm URL's own raw query: its parameters are kept except ``scope`` and
    ``service``; one ``scope`` per scope follows in order, and ``service`` always (``service=`` when
    empty, upstream #1359).

    >>> token_query("registry.docker.io", ["repository:library/ubuntu:pull"])
    'scope=repository%3Alibrary%2Fubuntu%3Apull&service=registry.docker.io'
    """
    if not isinstance(service, str):
        raise TypeError(f"service must be a str, got {_type_name(service)}")
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {_type_name(query)}")
    scope_values = []
    for scope in _iter_str(scopes, "scopes"):
        if not isinstance(scope, str):
            raise TypeError(f"scopes must hold str scopes, got {_type_name(scope)}")
        scope_values.append(_bytestr(scope))
    if not query:
        # The realm has no query of its own: "scope" sorts before "service", nothing else to order.
        parts = ["scope=" + _escape(v) for v in scope_values]
        parts.append("service=" + _escape(_bytestr(service)))
        return "&".join(parts)
    values = _parse_query(query)
    values.pop("scope", None)
    if scope_values:
        values["scope"] = scope_values
    values["service"] = [_bytestr(service)]
    return _encode_query(values)
