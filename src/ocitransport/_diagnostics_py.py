"""Pure-Python twin: registry error bodies, decoded and printed as go-containerregistry does.

The compiled twin (``ext/_diagnostics_c.pyx``) gives the same results and raises the same exceptions
on every input; ``tests/test_diagnostics_twins.py`` checks that.

Decoding follows what Go's ``encoding/json`` does when go-containerregistry unmarshals an error body into
its ``Error`` struct and ignores the error (pkg/v1/remote/transport/error.go, ``CheckError``):

- keys match case-insensitively, folded as Go folds them (ASCII case, plus ``K``, ``ſ``, ``İ`` and
  ``ı``, which Go's ``ToUpper(ToLower(r))`` maps onto ASCII letters);
- a repeated key (in any case) is applied in document order: the last value of the right type wins,
  a value of the wrong type (or ``null`` for ``code``/``message``) leaves the earlier one in place,
  ``"errors": null`` clears the list. Deviation: when ``errors`` itself repeats, Go decodes the second
  list *into* the first one's elements (fields absent from the second survive); we take the last
  list as it is;
- an item is kept when it is an object whose ``code`` is a string (Go would keep a zero
  ``Diagnostic`` for other items; an empty code helps nobody);
- numbers become what Go's ``float64`` can hold: integers stay ``int``, ``-0`` becomes ``-0.0``, and
  a number out of ``float64`` range (``1e400``, a 400-digit integer) becomes ``None``, as Go leaves
  ``nil`` there and keeps decoding;
- text that is not valid UTF-8 is decoded with one U+FFFD per invalid byte, and a ``\\uD800``-style
  lone surrogate becomes U+FFFD, as Go does; outside strings such bytes are a syntax error;
- invalid JSON (including ``NaN``/``Infinity`` literals and trailing data) and a document that is
  not an object give ``[]``;
- so does a document nested deeper than 512 levels (brackets inside strings do not count). Deviation:
  Go allows 10000; the limit is ours so that every Python version gives the same answer (how deep the
  standard library's JSON scanner may recurse depends on the interpreter and on the caller's stack),
  and no registry's error detail comes near it.
"""

from __future__ import annotations

import json as _json
import re as _re
import typing as _typing

from . import _error_text
from ._error_text import is_temporary, status_text
from ._values import Diagnostic as _Diagnostic

if _typing.TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["decode_error_body", "format_diagnostic", "format_error", "status_text", "is_temporary"]

#: Go's encoding/json refuses documents nested deeper than this (scanner.go ``maxNestingDepth``);
#: the bound for details given to :func:`format_diagnostic`.
_MAX_DEPTH = 10000
#: Error bodies nested deeper than this give ``[]`` (see the module docstring).
_MAX_BODY_DEPTH = 512
#: Largest finite float64; numbers beyond it are out of range for Go's ``strconv.ParseFloat``.
_MAX_FLOAT = 1.7976931348623157e308

# Non-ASCII characters that Go's key folding (unicode.ToUpper(unicode.ToLower(r))) maps to ASCII.
_KEY_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})
_FIELDS = frozenset(("errors", "code", "message", "detail"))
_ESCAPED_SURROGATE = _re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = _re.compile("[\ud800-\udfff]")




class _Object(list):  # type: ignore[type-arg]
    """A decoded JSON object as its ``(key, value)`` pairs in document order, repeats included."""

    __slots__ = ()


class _TooDeep(Exception):
    pass


def _parse_int(text: str) -> Any:
    if len(text) < 300:
        return -0.0 if text == "-0" else int(text)
    try:
        value = int(text)
    except ValueError:  # beyond the int digit limit: far outside float64 too
        return None
    try:
        float(value)
    except OverflowError:
        return None
    return value


def _parse_float(text: str) -> Any:
    value = float(text)
    return value if -_MAX_FLOAT <= value <= _MAX_FLOAT else None


def _reject_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


_scan = _json.JSONDecoder(
    object_pairs_hook=_Object,
    parse_int=_parse_int,
    parse_float=_parse_float,
    parse_constant=_reject_constant,
).scan_once  # type: ignore[attr-defined]  # set by JSONDecoder.__init__ (the C scanner); typeshed omits it


def _fold(key: str) -> str:
    return key.lower() if key.isascii() else key.translate(_KEY_FOLD).lower()


def _fix(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text)


def _plain(value: Any, fix: bool) -> Any:
    """Turn a decoded detail (``_Object`` pairs, lists) into plain dicts and lists, without recursion."""
    kind = type(value)
    if kind is str:
        return _fix(value) if fix else value
    if kind is not _Object and kind is not list:
        return value
    root: Any = {} if kind is _Object else []
    stack = [(value, root, 4)]  # a detail container sits at depth 4: {"errors": [{"detail": ...}]}
    while stack:
        source, target, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise _TooDeep
        if type(source) is _Object:
            for key, item in source:
                if fix:
                    key = _fix(key)
                kind = type(item)
                if kind is _Object or kind is list:
                    child: Any = {} if kind is _Object else []
                    stack.append((item, child, depth + 1))
                    item = child
                elif fix and kind is str:
                    item = _fix(item)
                target[key] = item
        else:
            for item in source:
                kind = type(item)
                if kind is _Object or kind is list:
                    child = {} if kind is _Object else []
                    stack.append((item, child, depth + 1))
                    item = child
                elif fix and kind is str:
                    item = _fix(item)
                target.append(item)
    return root


def _too_deep(text: str) -> bool:
    """Whether ``text`` nests brackets deeper than ``_MAX_BODY_DEPTH`` outside JSON strings."""
    if text.count("[") + text.count("{") <= _MAX_BODY_DEPTH:
        return False  # the common case, without a walk
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "[" or char == "{":
            depth += 1
            if depth > _MAX_BODY_DEPTH:
                return True
        elif char == "]" or char == "}":
            depth -= 1
    return False


def decode_error_body(body: bytes | bytearray | memoryview) -> list[_Diagnostic]:
    """The diagnostics of a registry error body ``{"errors": [{"code", "message", "detail"}]}``.

    Never raises for bytes input: whatever cannot be decoded gives fewer diagnostics or ``[]``
    (the caller then reports the raw body). Other types raise ``TypeError``.
    """
    if isinstance(body, bytes):
        data = body
    elif isinstance(body, (bytearray, memoryview)):
        data = bytes(body)
    else:
        raise TypeError(f"decode_error_body() expects bytes, got {type(body).__name__}")
    try:
        text = data.decode("utf-8")
        fix = "\\u" in text and _ESCAPED_SURROGATE.search(text) is not None
    except UnicodeDecodeError:
        text = data.decode("utf-8", "surrogateescape")
        fix = True
    text = text.strip(" \t\r\n")
    if _too_deep(text):
        return []
    try:
        doc, end = _scan(text, 0)
    except (ValueError, RecursionError, StopIteration):
        return []
    if end != len(text) or type(doc) is not _Object:
        return []
    errors = None
    for key, value in doc:
        if key == "errors" or (key not in _FIELDS and _fold(key) == "errors"):
            if type(value) is list:
                errors = value
            elif value is None:
                errors = None
    if not errors:
        return []
    result = []
    try:
        for item in errors:
            if type(item) is not _Object:
                continue
            code = None
            message = ""
            detail = None
            for key, value in item:
                name = key if key in _FIELDS else _fold(key)
                if name == "code":
                    if type(value) is str:
                        code = value
                elif name == "message":
                    if type(value) is str:
                        message = value
                elif name == "detail":
                    detail = value
            if code is None:
                continue
            if fix:
                code = _fix(code)
                message = _fix(message)
            if detail is not None:
                detail = _plain(detail, fix)
            result.append(_Diagnostic(code, message, detail))
    except _TooDeep:
        return []
    return result


def _go_float(value: float) -> str:
    """``value`` as Go's ``fmt`` ``%v`` prints a float64: ``%g`` with the shortest digits."""
    if value != value:
        return "NaN"
    if value > _MAX_FLOAT:
        return "+Inf"
    if value < -_MAX_FLOAT:
        return "-Inf"
    text = float.__repr__(value)
    sign = ""
    if text[0] == "-":
        sign = "-"
        text = text[1:]
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    stripped = digits.lstrip("0")
    if not stripped:
        return sign + "0"
    # value = 0.<digits> * 10**point
    point = len(whole) + (int(exponent) if exponent else 0) - (len(digits) - len(stripped))
    digits = stripped.rstrip("0")
    count = len(digits)
    exp = point - 1
    if exp < -4 or exp >= 6:  # strconv ftoa.go: shortest %g decides with precision 6
        head = digits[0] + "." + digits[1:] if count > 1 else digits
        if exp < 0:
            return f"{sign}{head}e-{-exp:02d}"
        return f"{sign}{head}e+{exp:02d}"
    if point <= 0:
        return sign + "0." + "0" * -point + digits
    if point >= count:
        return sign + digits + "0" * (point - count)
    return sign + digits[:point] + "." + digits[point:]


def _go_scalar(value: Any) -> str | None:
    """The ``%v`` text of a non-container value, or None for dicts, lists and tuples."""
    if isinstance(value, str):
        return value
    if value is None:
        return "<nil>"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, int):
        try:
            return _go_float(float(value))
        except OverflowError:
            return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, (dict, list, tuple)):
        return None
    return str(value)


class _Literal(str):
    __slots__ = ()


_MAP_OPEN = _Literal("map[")
_LIST_OPEN = _Literal("[")
_CLOSE = _Literal("]")
_SPACE = _Literal(" ")
_COLON = _Literal(":")


def _go_value(value: Any) -> str:
    """``value`` as Go's ``%v`` prints the ``any`` that encoding/json decodes, without recursion."""
    text = _go_scalar(value)
    if text is not None:
        return text
    out: list[str] = []
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is _Literal:
            out.append(item)
            continue
        text = _go_scalar(item)
        if text is not None:
            out.append(text)
            continue
        if depth > _MAX_DEPTH:
            raise ValueError(f"diagnostic detail nests deeper than {_MAX_DEPTH} levels")
        stack.append((_CLOSE, 0))
        if isinstance(item, dict):
            try:
                keys = sorted(item)
            except TypeError:
                keys = sorted(item, key=_go_value)
            for i in range(len(keys) - 1, -1, -1):
                key = keys[i]
                stack.append((item[key], depth + 1))
                stack.append((_COLON, 0))
                stack.append((key, depth + 1))
                if i:
                    stack.append((_SPACE, 0))
            stack.append((_MAP_OPEN, 0))
        else:
            for i in range(len(item) - 1, -1, -1):
                stack.append((item[i], depth + 1))
                if i:
                    stack.append((_SPACE, 0))
            stack.append((_LIST_OPEN, 0))
    return "".join(out)


def format_diagnostic(d: _Diagnostic) -> str:
    """``"CODE: message"`` plus ``"; <detail>"`` when there is a detail, printed as Go's ``%v`` does."""
    if not isinstance(d, _Diagnostic):
        raise TypeError(f"format_diagnostic() expects a Diagnostic, got {type(d).__name__}")
    code = d.code
    message = d.message
    text = (code if type(code) is str else str(code)) + ": " + (
        message if type(message) is str else str(message)
    )
    detail = d.detail
    if detail is None:
        return text
    return text + "; " + _go_value(detail)


def format_error(
    method: str | None,
    url: str | None,
    status: int,
    diagnostics: Sequence[_Diagnostic],
    body: bytes | bytearray | memoryview,
) -> str:
    """go-containerregistry's ``Error.Error()`` text for a failed response (``_error_text.format_error``)."""
    return _error_text.format_error(method, url, status, diagnostics, body, format_diagnostic)
