"""Pure-Python twin: redaction of secrets in URLs, headers and token-endpoint bodies.

The compiled twin is ``ext/_redaction_c.pyx``; both must agree on every input, errors included
(``tests/test_redaction_twins.py``). Query parsing and encoding are Go's (``_form``, shared with ``_scopes_py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from ._form import encode_query, parse_query, utf8

__all__ = ["redact_headers", "redact_token_body", "redact_url"]

REDACTED = "REDACTED"
#: Query parameters upstream's redact.URL keeps (reference section 3.6); every other value is replaced.
_KEEP_PARAMS = frozenset(("scope", "service", "mount", "from", "digest", "n", "last"))
#: What Go's url.Redacted puts in place of a userinfo password.
_PASSWORD_MASK = "xxxxx"
#: Header names (lower-case) whose whole value is secret; Authorization-like ones keep their scheme.
_SECRET_HEADERS = frozenset(("cookie", "set-cookie", "x-registry-auth"))
_AUTH_HEADERS = frozenset(("authorization", "proxy-authorization"))
#: Header names (lower-case) whose value is a URL: a redirect to storage is a presigned URL whose signed
#: query (X-Amz-*, X-Goog-*, Azure's sig/se/sp, CloudFront's Signature/Key-Pair-Id/Policy) hands the
#: blob to anyone who has it, and an upload Location carries the registry's ``_state``.
_URL_HEADERS = frozenset(("location", "content-location"))
#: JSON keys (compared lower-cased, at any depth) whose values a token response must not log.
_SECRET_KEYS = frozenset(
    ("token", "access_token", "refresh_token", "id_token", "password", "identitytoken", "registrytoken")
)
#: json.dumps(obj, separators=(",", ":"), sort_keys=True) builds this encoder on every call; build it once.
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)
#: Token responses are flat; a deeper body is not re-serialised at all (and never nears the recursion limit).
_MAX_JSON_DEPTH = 64

# RFC 3986 scheme, then "//": where an authority (and so a userinfo) starts.
_authority_start = re.compile(r"(?:[A-Za-z][A-Za-z0-9+\-.]*:)?//").match
# Leading OWS, an RFC 7230 token, then SP or HT: the auth-scheme of a credentials value.
_auth_scheme = re.compile(r"[ \t]*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]").match


def _mask_password(head: str) -> str:
    """``head`` (a URL without query and fragment) with a userinfo password replaced by ``xxxxx``."""
    m = _authority_start(head)
    if m is None:
        return head
    start = m.end()
    end = head.find("/", start)
    if end < 0:
        end = len(head)
    at = head.rfind("@", start, end)
    if at < 0:
        return head
    colon = head.find(":", start, at)
    if colon < 0:
        return head
    return head[: colon + 1] + _PASSWORD_MASK + head[at:]


def _redact_query(query: str) -> str:
    """Go's ``url.ParseQuery`` + value redaction + ``url.Values.Encode`` of a non-empty raw query."""
    values = parse_query(query)
    for key, found in values.items():
        if key not in _KEEP_PARAMS:
            values[key] = [REDACTED] * len(found)
    return encode_query(values)


def redact_url(url: str) -> str:
    """``url`` fit for logs and error messages, as upstream's ``redact.URL`` plus ``url.Redacted``.

    Query values are replaced by ``REDACTED`` unless their key is one of ``scope service mount from
    digest n last``, and the query is re-encoded with sorted keys; a userinfo password becomes
    ``xxxxx``. A URL with neither a query nor a password comes back unchanged. Never raises for a str:
    query pairs that do not parse are dropped, never shown.

    >>> redact_url("https://u:p@r.example/v2/a/blobs/uploads/1?_state=abc&digest=sha256%3A00")
    'https://u:xxxxx@r.example/v2/a/blobs/uploads/1?_state=REDACTED&digest=sha256%3A00'
    """
    if not isinstance(url, str):
        raise TypeError(f"redact_url() expects a str, got {type(url).__name__}")
    if "?" not in url and "@" not in url:
        return url
    hash_at = url.find("#")
    if hash_at < 0:
        hash_at = len(url)
    question = url.find("?", 0, hash_at)
    cut = hash_at if question < 0 else question
    head = _mask_password(url[:cut])
    if question < 0 or question + 1 == hash_at:
        # No query, or an empty one that Go keeps as "?" (ForceQuery): only the password changes.
        return head + url[cut:]
    query = _redact_query(url[question + 1:hash_at])
    return head + ("?" + query if query else "") + url[hash_at:]


def _redact_auth(value: str) -> str:
    m = _auth_scheme(value)
    return REDACTED if m is None else m.group(1) + " " + REDACTED


def redact_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Header pairs fit for logs: credentials and cookies replaced, everything else as it was.

    ``Authorization`` and ``Proxy-Authorization`` keep their scheme (``Bearer REDACTED``; a value with
    no scheme becomes ``REDACTED``); ``Cookie``, ``Set-Cookie`` and ``X-Registry-Auth`` become
    ``REDACTED``; ``Location`` and ``Content-Location`` go through :func:`redact_url` (a presigned URL's
    signature and credential). Names compare ASCII case-insensitively; the order is kept.
    """
    if isinstance(headers, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"redact_headers() expects an iterable of (name, value) pairs, got {type(headers).__name__}")
    try:
        items = iter(headers)
    except TypeError:
        raise TypeError(
            f"redact_headers() expects an iterable of (name, value) pairs, got {type(headers).__name__}"
        ) from None
    out = []
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"redact_headers() expects (name, value) pairs, got {type(item).__name__}")
        name, value = item
        if not isinstance(name, str) or not isinstance(value, str):
            bad = value if isinstance(name, str) else name
            raise TypeError(f"header names and values must be str, got {type(bad).__name__}")
        if name.isascii():
            lowered = name.lower()
            if lowered in _AUTH_HEADERS:
                out.append((name, _redact_auth(value)))
                continue
            if lowered in _SECRET_HEADERS:
                out.append((name, REDACTED))
                continue
            if lowered in _URL_HEADERS:
                out.append((name, redact_url(value)))
                continue
        out.append(item if type(item) is tuple else (name, value))
    return out


def _redact_json(root: dict) -> bool:  # type: ignore[type-arg]
    """Replace secret values in ``root`` in place; False when it nests deeper than we re-serialise."""
    stack: list[tuple[object, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_JSON_DEPTH:
            return False
        if type(node) is dict:
            for key, value in node.items():
                if key.lower() in _SECRET_KEYS:
                    node[key] = REDACTED
                elif type(value) is dict or type(value) is list:
                    stack.append((value, depth + 1))
        else:
            for value in node:  # type: ignore[attr-defined]
                if type(value) is dict or type(value) is list:
                    stack.append((value, depth + 1))
    return True


def redact_token_body(body: bytes | str) -> str:
    """A token-endpoint response body fit for logs.

    A JSON object comes back compact with sorted keys and the values of ``token``, ``access_token``,
    ``refresh_token``, ``id_token``, ``password``, ``identitytoken`` and ``registrytoken`` (any depth,
    any case) replaced by ``"REDACTED"``; anything else becomes ``"[N bytes redacted]"``. Never raises
    for bytes or str.
    """
    if isinstance(body, str):
        size = len(utf8(body))
    elif isinstance(body, (bytes, bytearray)):
        size = len(body)
    else:
        raise TypeError(f"redact_token_body() expects bytes or str, got {type(body).__name__}")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        doc = None
    if type(doc) is dict and _redact_json(doc):
        try:
            return _ENCODER.encode(doc)
        except (ValueError, RecursionError):
            pass
    return f"[{size} bytes redacted]"
