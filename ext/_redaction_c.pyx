# cython: language_level=3
"""Compiled twin: redaction of secrets in URLs, headers and token-endpoint bodies.

Same behaviour as ``ocitransport._redaction_py`` (the reference for every rule): the URL split, the
password mask, the query rewrite and the header checks are C loops; token bodies still go through the
``json`` module (its C scanner), with the walk over the parsed document typed. The two twins must agree
on every input, errors included (``tests/test_redaction_twins.py``).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.list cimport PyList_Append
from cpython.unicode cimport (
    PyUnicode_1BYTE_DATA,
    PyUnicode_DATA,
    PyUnicode_FindChar,
    PyUnicode_GET_LENGTH,
    PyUnicode_KIND,
    PyUnicode_READ,
    PyUnicode_Substring,
)
from libc.string cimport memcmp

from _capi cimport PyUnicode_IS_ASCII
from _form cimport byte_string, encode_query, parse_query, utf8

import json as _json

cdef object json_loads = _json.loads
# json.dumps(obj, separators=(",", ":"), sort_keys=True) builds this encoder on every call; build it once.
cdef object json_encode = _json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode

__all__ = ["redact_headers", "redact_token_body", "redact_url"]

cdef str REDACTED = "REDACTED"
cdef bytes _REDACTED_BYTES = b"REDACTED"
cdef str _PASSWORD_MASK = "xxxxx"  # what Go's url.Redacted puts in place of a userinfo password
cdef str _AUTH_SUFFIX = " REDACTED"
cdef frozenset _SECRET_KEYS = frozenset(
    ("token", "access_token", "refresh_token", "id_token", "password", "identitytoken", "registrytoken")
)

cdef enum:
    # Token responses are flat; a deeper body is not re-serialised at all (and never nears the
    # recursion limit of the json module).
    MAX_JSON_DEPTH = 64


cdef bint _redact_param(bytes key) noexcept:
    """True unless ``key`` is one of upstream's kept query parameters (reference section 3.6)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(key)
    cdef const char* k = PyBytes_AS_STRING(key)
    if n == 1:
        return k[0] != 110  # "n"
    if n == 4:
        return memcmp(k, b"from", 4) != 0 and memcmp(k, b"last", 4) != 0
    if n == 5:
        return memcmp(k, b"scope", 5) != 0 and memcmp(k, b"mount", 5) != 0
    if n == 6:
        return memcmp(k, b"digest", 6) != 0
    if n == 7:
        return memcmp(k, b"service", 7) != 0
    return True


cdef inline bint _is_scheme_char(Py_UCS4 c, bint first) noexcept:
    # RFC 3986 scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
    if (97 <= c <= 122) or (65 <= c <= 90):  # a-z A-Z
        return True
    return not first and ((48 <= c <= 57) or c == 43 or c == 45 or c == 46)  # 0-9 + - .


cdef inline bint _is_tchar(Py_UCS4 c) noexcept:
    # RFC 7230 tchar: ALPHA / DIGIT / "!#$%&'*+-.^_`|~"
    if (97 <= c <= 122) or (65 <= c <= 90) or (48 <= c <= 57):  # a-z A-Z 0-9
        return True
    return c < 128 and c in b"!#$%&'*+-.^_`|~"


cdef str _mask_password(str url, int kind, const void* data, Py_ssize_t cut):
    """``url[:cut]`` (no query, no fragment) with a userinfo password replaced by ``xxxxx``."""
    cdef Py_ssize_t start = 0, end, at, colon
    while start < cut and _is_scheme_char(PyUnicode_READ(kind, data, start), start == 0):
        start += 1
    if start == 0 or start >= cut or PyUnicode_READ(kind, data, start) != 58:  # ":" ends a scheme
        start = 0
    else:
        start += 1
    if start + 2 > cut or PyUnicode_READ(kind, data, start) != 47 or PyUnicode_READ(kind, data, start + 1) != 47:
        return None  # no "//" after the scheme (or at the start): no authority
    start += 2
    end = start
    while end < cut and PyUnicode_READ(kind, data, end) != 47:  # "/" ends the authority
        end += 1
    at = end - 1
    while at >= start and PyUnicode_READ(kind, data, at) != 64:  # last "@"
        at -= 1
    if at < start:
        return None
    colon = start
    while colon < at and PyUnicode_READ(kind, data, colon) != 58:  # first ":" of the userinfo
        colon += 1
    if colon >= at:
        return None
    return PyUnicode_Substring(url, 0, colon + 1) + _PASSWORD_MASK + PyUnicode_Substring(url, at, cut)


def redact_url(url):
    """``url`` fit for logs and error messages, as upstream's ``redact.URL`` plus ``url.Redacted``.

    Query values are replaced by ``REDACTED`` unless their key is one of ``scope service mount from
    digest n last``, and the query is re-encoded with sorted keys; a userinfo password becomes
    ``xxxxx``. A URL with neither a query nor a password comes back unchanged. Never raises for a str:
    query pairs that do not parse are dropped, never shown.
    """
    if not isinstance(url, str):
        raise TypeError(f"redact_url() expects a str, got {type(url).__name__}")
    cdef str text = <str>url
    cdef int kind = PyUnicode_KIND(text)
    cdef const void* data = PyUnicode_DATA(text)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text)
    cdef Py_ssize_t hash_at, cut
    cdef Py_ssize_t question = PyUnicode_FindChar(text, 63, 0, n, 1)  # "?"
    if question < 0 and PyUnicode_FindChar(text, 64, 0, n, 1) < 0:  # "@"
        return url
    hash_at = PyUnicode_FindChar(text, 35, 0, n, 1)  # "#"
    if hash_at < 0:
        hash_at = n
    elif question > hash_at:
        question = -1  # the first "?" is inside the fragment
    cut = hash_at if question < 0 else question
    cdef str head = _mask_password(text, kind, data, cut)
    if question < 0 or question + 1 == hash_at:
        # No query, or an empty one that Go keeps as "?" (ForceQuery): only the password changes.
        if head is None:
            return url
        return head + PyUnicode_Substring(text, cut, n)
    if head is None:
        head = PyUnicode_Substring(text, 0, cut)
    cdef str query = encode_query(
        parse_query(byte_string(PyUnicode_Substring(text, question + 1, hash_at)), _redact_param,
                    _REDACTED_BYTES)
    )
    if query:
        return head + "?" + query + PyUnicode_Substring(text, hash_at, n)
    return head + PyUnicode_Substring(text, hash_at, n)


cdef bint _name_is(str name, const char* lower, Py_ssize_t length) noexcept:
    """ASCII case-insensitive ``name == lower`` (``lower`` is lower-case ASCII)."""
    cdef const unsigned char* data
    cdef Py_ssize_t i
    cdef unsigned char c
    if PyUnicode_GET_LENGTH(name) != length or not PyUnicode_IS_ASCII(name):
        return False
    data = PyUnicode_1BYTE_DATA(name)
    for i in range(length):
        c = data[i]
        if 65 <= c <= 90:  # A-Z
            c += 32
        if c != <unsigned char>lower[i]:
            return False
    return True


cdef str _redact_auth(str value):
    """``<scheme> REDACTED`` for credentials that start with an auth-scheme, else ``REDACTED``."""
    cdef int kind = PyUnicode_KIND(value)
    cdef const void* data = PyUnicode_DATA(value)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(value)
    cdef Py_ssize_t start = 0, end
    cdef Py_UCS4 c
    while start < n:
        c = PyUnicode_READ(kind, data, start)
        if c != 32 and c != 9:  # SP HT
            break
        start += 1
    end = start
    while end < n and _is_tchar(PyUnicode_READ(kind, data, end)):
        end += 1
    if end == start or end >= n:
        return REDACTED
    c = PyUnicode_READ(kind, data, end)
    if c != 32 and c != 9:  # SP HT
        return REDACTED
    return PyUnicode_Substring(value, start, end) + _AUTH_SUFFIX


def redact_headers(headers):
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
    cdef list out = []
    cdef Py_ssize_t length
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"redact_headers() expects (name, value) pairs, got {type(item).__name__}")
        name = item[0]
        value = item[1]
        if not isinstance(name, str) or not isinstance(value, str):
            bad = value if isinstance(name, str) else name
            raise TypeError(f"header names and values must be str, got {type(bad).__name__}")
        length = PyUnicode_GET_LENGTH(name)
        if length == 13 and _name_is(<str>name, b"authorization", 13):
            PyList_Append(out, (name, _redact_auth(<str>value)))
        elif length == 19 and _name_is(<str>name, b"proxy-authorization", 19):
            PyList_Append(out, (name, _redact_auth(<str>value)))
        elif (
            (length == 6 and _name_is(<str>name, b"cookie", 6))
            or (length == 10 and _name_is(<str>name, b"set-cookie", 10))
            or (length == 15 and _name_is(<str>name, b"x-registry-auth", 15))
        ):
            PyList_Append(out, (name, REDACTED))
        elif (
            # URL values: a presigned redirect's signed query, an upload's _state
            (length == 8 and _name_is(<str>name, b"location", 8))
            or (length == 16 and _name_is(<str>name, b"content-location", 16))
        ):
            PyList_Append(out, (name, redact_url(value)))
        elif type(item) is tuple:
            PyList_Append(out, item)
        else:
            PyList_Append(out, (name, value))
    return out


cdef bint _is_secret_key(str key) except -1:
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(key)
    cdef const unsigned char* data
    cdef char lowered[13]  # the longest secret key: "refresh_token", "identitytoken", "registrytoken"
    cdef Py_ssize_t i
    cdef unsigned char c
    if not PyUnicode_IS_ASCII(key):
        return key.lower() in _SECRET_KEYS
    if n != 5 and n != 8 and n != 12 and n != 13:  # the lengths of the secret keys
        return False
    data = PyUnicode_1BYTE_DATA(key)
    for i in range(n):
        c = data[i]
        if 65 <= c <= 90:  # A-Z
            c += 32
        lowered[i] = <char>c
    if n == 5:
        return memcmp(lowered, b"token", 5) == 0
    if n == 8:
        return memcmp(lowered, b"id_token", 8) == 0 or memcmp(lowered, b"password", 8) == 0
    if n == 12:
        return memcmp(lowered, b"access_token", 12) == 0
    return (
        memcmp(lowered, b"refresh_token", 13) == 0
        or memcmp(lowered, b"identitytoken", 13) == 0
        or memcmp(lowered, b"registrytoken", 13) == 0
    )


cdef bint _redact_json(dict root) except -1:
    """Replace secret values in ``root`` in place; False when it nests deeper than we re-serialise."""
    cdef list stack = [root]
    cdef list depths = [1]
    cdef Py_ssize_t depth
    cdef object node
    while stack:
        node = stack.pop()
        depth = depths.pop()
        if depth > MAX_JSON_DEPTH:
            return False
        if type(node) is dict:
            for key, value in (<dict>node).items():
                if _is_secret_key(<str>key):
                    (<dict>node)[key] = REDACTED
                elif type(value) is dict or type(value) is list:
                    PyList_Append(stack, value)
                    PyList_Append(depths, depth + 1)
        else:
            for value in <list>node:
                if type(value) is dict or type(value) is list:
                    PyList_Append(stack, value)
                    PyList_Append(depths, depth + 1)
    return True


def redact_token_body(body):
    """A token-endpoint response body fit for logs.

    A JSON object comes back compact with sorted keys and the values of ``token``, ``access_token``,
    ``refresh_token``, ``id_token``, ``password``, ``identitytoken`` and ``registrytoken`` (any depth,
    any case) replaced by ``"REDACTED"``; anything else becomes ``"[N bytes redacted]"``. Never raises
    for bytes or str.
    """
    cdef Py_ssize_t size
    if isinstance(body, str):
        size = PyUnicode_GET_LENGTH(body) if PyUnicode_IS_ASCII(body) else len(utf8(<str>body))
    elif isinstance(body, (bytes, bytearray)):
        size = len(body)
    else:
        raise TypeError(f"redact_token_body() expects bytes or str, got {type(body).__name__}")
    try:
        doc = json_loads(body)
    except (ValueError, RecursionError):
        doc = None
    if type(doc) is dict and _redact_json(<dict>doc):
        try:
            return json_encode(doc)
        except (ValueError, RecursionError):
            pass
    return f"[{size} bytes redacted]"
