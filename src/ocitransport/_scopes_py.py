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

from collections.abc import Iterable, Sequence

from ._form import byte_string as _bytestr
from ._form import encode_query as _encode_query
from ._form import escape as _escape
from ._form import parse_query as _parse_query
from ._values import Scope

__all__ = ["merge_scopes", "parse_scope", "registry_scope", "repository_scope", "token_query"]

_CATALOG = "registry:catalog:*"


def _type_name(value: object) -> str:
    return type(value).__name__


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
