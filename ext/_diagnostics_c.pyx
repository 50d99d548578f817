# cython: language_level=3
"""Compiled twin of ``ocitransport._diagnostics_py``: registry error bodies, decoded and printed as
go-containerregistry does.

Same rules, results and exceptions as the pure twin (its docstring states the decoding rules). Both
decode with the standard library's C JSON scanner; this twin walks the result and prints Go's ``%v``
(numbers included) in C.
"""

from cpython.mem cimport PyMem_Free
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.math cimport copysign, isinf, isnan
from libc.string cimport strlen

import json as _json
import re as _re
from operator import index as _index

from ocitransport._error_text import format_error as _error_text_format
from ocitransport._error_text import is_temporary, status_text
from ocitransport._values import Diagnostic as _Diagnostic

cdef extern from "Python.h":
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags, int* ptype) except NULL

cdef object Diagnostic = _Diagnostic
cdef object index = _index

__all__ = ["decode_error_body", "format_diagnostic", "format_error", "status_text", "is_temporary"]

DEF MAX_DEPTH = 10000  # Go's encoding/json refuses deeper documents (scanner.go maxNestingDepth)
DEF MAX_BODY_DEPTH = 512  # error bodies nested deeper give [] (the pure twin's docstring says why)
cdef double MAX_FLOAT = 1.7976931348623157e308  # largest finite float64

# Non-ASCII characters that Go's key folding (unicode.ToUpper(unicode.ToLower(r))) maps to ASCII.
cdef dict KEY_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})
cdef frozenset FIELDS = frozenset(("errors", "code", "message", "detail"))
cdef object ESCAPED_SURROGATE = _re.compile(r"\\u[dD][89a-fA-F]")
cdef object SURROGATE = _re.compile("[\ud800-\udfff]")




cdef class _Object(list):
    """A decoded JSON object as its ``(key, value)`` pairs in document order, repeats included."""


class _TooDeep(Exception):
    pass


cdef object TooDeep = _TooDeep


def _parse_int(str text):
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


def _parse_float(str text):
    cdef double value = float(text)
    return value if -MAX_FLOAT <= value <= MAX_FLOAT else None


def _reject_constant(str text):
    raise ValueError(f"{text} is not JSON")


cdef object scan = _json.JSONDecoder(
    object_pairs_hook=_Object,
    parse_int=_parse_int,
    parse_float=_parse_float,
    parse_constant=_reject_constant,
).scan_once


cdef inline str fold(str key):
    return key.lower() if key.isascii() else key.translate(KEY_FOLD).lower()


cdef inline str fix(str text):
    return SURROGATE.sub("\ufffd", text)


cdef object plain(object value, bint fixing):
    """Turn a decoded detail (``_Object`` pairs, lists) into plain dicts and lists, without recursion."""
    cdef object kind = type(value)
    cdef object root, source, target, child, key, item
    cdef list stack
    cdef Py_ssize_t depth
    if kind is str:
        return fix(value) if fixing else value
    if kind is not _Object and kind is not list:
        return value
    root = {} if kind is _Object else []
    stack = [(value, root, 4)]  # a detail container sits at depth 4: {"errors": [{"detail": ...}]}
    while stack:
        source, target, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise TooDeep
        if type(source) is _Object:
            for key, item in <list>source:
                if fixing:
                    key = fix(key)
                kind = type(item)
                if kind is _Object or kind is list:
                    child = {} if kind is _Object else []
                    stack.append((item, child, depth + 1))
                    item = child
                elif fixing and kind is str:
                    item = fix(item)
                (<dict>target)[key] = item
        else:
            for item in <list>source:
                kind = type(item)
                if kind is _Object or kind is list:
                    child = {} if kind is _Object else []
                    stack.append((item, child, depth + 1))
                    item = child
                elif fixing and kind is str:
                    item = fix(item)
                (<list>target).append(item)
    return root


cdef bint too_deep(str text):
    """Whether ``text`` nests brackets deeper than MAX_BODY_DEPTH outside JSON strings."""
    cdef Py_ssize_t depth = 0
    cdef bint in_string = False, escaped = False
    cdef Py_UCS4 char
    if text.count("[") + text.count("{") <= MAX_BODY_DEPTH:
        return False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == u"\\":
                escaped = True
            elif char == u'"':
                in_string = False
        elif char == u'"':
            in_string = True
        elif char == u"[" or char == u"{":
            depth += 1
            if depth > MAX_BODY_DEPTH:
                return True
        elif char == u"]" or char == u"}":
            depth -= 1
    return False


def decode_error_body(body):
    """The diagnostics of a registry error body ``{"errors": [{"code", "message", "detail"}]}``.

    Never raises for bytes input: whatever cannot be decoded gives fewer diagnostics or ``[]``
    (the caller then reports the raw body). Other types raise ``TypeError``.
    """
    cdef bytes data
    cdef str text, name
    cdef bint fixing
    cdef object doc, end, errors, key, value, item, code, detail
    cdef object message
    cdef list result
    if isinstance(body, bytes):
        data = body
    elif isinstance(body, (bytearray, memoryview)):
        data = bytes(body)
    else:
        raise TypeError(f"decode_error_body() expects bytes, got {type(body).__name__}")
    try:
        text = data.decode("utf-8")
        fixing = "\\u" in text and ESCAPED_SURROGATE.search(text) is not None
    except UnicodeDecodeError:
        text = data.decode("utf-8", "surrogateescape")
        fixing = True
    text = text.strip(" \t\r\n")
    if too_deep(text):
        return []
    try:
        doc, end = scan(text, 0)
    except (ValueError, RecursionError, StopIteration):
        return []
    if end != len(text) or type(doc) is not _Object:
        return []
    errors = None
    for key, value in <list>doc:
        if key == "errors" or (key not in FIELDS and fold(key) == "errors"):
            if type(value) is list:
                errors = value
            elif value is None:
                errors = None
    if not errors:
        return []
    result = []
    try:
        for item in <list>errors:
            if type(item) is not _Object:
                continue
            code = None
            message = ""
            detail = None
            for key, value in <list>item:
                name = key if key in FIELDS else fold(key)
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
            if fixing:
                code = fix(code)
                message = fix(message)
            if detail is not None:
                detail = plain(detail, fixing)
            result.append(Diagnostic(code, message, detail))
    except _TooDeep:
        return []
    return result


cdef str go_float(double value):
    """``value`` as Go's ``fmt`` ``%v`` prints a float64: ``%g`` with the shortest digits."""
    cdef char* text
    cdef char digits[32]
    cdef char out[48]
    cdef Py_ssize_t count = 0, n = 0, i, length, point = 0, exp_value = 0, lead = 0
    cdef bint seen_point = False, seen_digit = False, negative = False
    cdef int exp, shown
    if isnan(value):
        return "NaN"
    if isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if copysign(1.0, value) < 0 else "0"
    # repr's shortest round-trip digits, the digits Go's strconv picks with precision -1
    text = PyOS_double_to_string(value, b'r', 0, 0, NULL)
    try:
        length = <Py_ssize_t>strlen(text)
        i = 0
        if text[0] == b'-':
            negative = True
            i = 1
        while i < length:
            if text[i] == b'.':
                seen_point = True
            elif text[i] == b'e':
                exp_value = int(text[i + 1:length].decode("ascii"))
                break
            else:
                if not seen_point:
                    point += 1
                if text[i] != b'0' or seen_digit:
                    seen_digit = True
                    if count < 32:
                        digits[count] = text[i]
                        count += 1
                else:
                    lead += 1
            i += 1
    finally:
        PyMem_Free(text)
    while count > 0 and digits[count - 1] == b'0':
        count -= 1
    point = point + exp_value - lead  # value = 0.<digits> * 10**point
    exp = <int>(point - 1)
    if negative:
        out[n] = b'-'
        n += 1
    if exp < -4 or exp >= 6:  # strconv ftoa.go: shortest %g decides with precision 6
        out[n] = digits[0]
        n += 1
        if count > 1:
            out[n] = b'.'
            n += 1
            for i in range(1, count):
                out[n] = digits[i]
                n += 1
        out[n] = b'e'
        n += 1
        if exp < 0:
            out[n] = b'-'
            exp = -exp
        else:
            out[n] = b'+'
        n += 1
        if exp >= 100:
            out[n] = <char>(0x30 + exp // 100)  # '0' + digit
            n += 1
        out[n] = <char>(0x30 + (exp // 10) % 10)
        out[n + 1] = <char>(0x30 + exp % 10)
        n += 2
    elif point <= 0:
        out[n] = b'0'
        out[n + 1] = b'.'
        n += 2
        for i in range(-point):
            out[n] = b'0'
            n += 1
        for i in range(count):
            out[n] = digits[i]
            n += 1
    else:
        for i in range(point):
            out[n] = digits[i] if i < count else 0x30  # '0'
            n += 1
        if point < count:
            out[n] = b'.'
            n += 1
            for i in range(point, count):
                out[n] = digits[i]
                n += 1
    return PyUnicode_DecodeASCII(out, n, NULL)


cdef object go_scalar(object value):
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
        return go_float(value)
    if isinstance(value, int):
        try:
            return go_float(float(value))
        except OverflowError:
            return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, (dict, list, tuple)):
        return None
    return str(value)


cdef class _Literal:
    """Punctuation queued on the formatting stack, told apart from values by its type."""
    cdef readonly str text

    def __cinit__(self, str text):
        self.text = text


cdef _Literal MAP_OPEN = _Literal("map[")
cdef _Literal LIST_OPEN = _Literal("[")
cdef _Literal CLOSE = _Literal("]")
cdef _Literal SPACE = _Literal(" ")
cdef _Literal COLON = _Literal(":")


def _go_key(value):
    return go_value(value)


cdef object go_value(object value):
    """``value`` as Go's ``%v`` prints the ``any`` that encoding/json decodes, without recursion."""
    cdef object text = go_scalar(value)
    cdef list out, stack, keys
    cdef object item, key
    cdef Py_ssize_t depth, i
    if text is not None:
        return text
    out = []
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is _Literal:
            out.append((<_Literal>item).text)
            continue
        text = go_scalar(item)
        if text is not None:
            out.append(text)
            continue
        if depth > MAX_DEPTH:
            raise ValueError(f"diagnostic detail nests deeper than {MAX_DEPTH} levels")
        stack.append((CLOSE, 0))
        if isinstance(item, dict):
            try:
                keys = sorted(item)
            except TypeError:
                keys = sorted(item, key=_go_key)
            for i in range(len(keys) - 1, -1, -1):
                key = keys[i]
                stack.append((item[key], depth + 1))
                stack.append((COLON, 0))
                stack.append((key, depth + 1))
                if i:
                    stack.append((SPACE, 0))
            stack.append((MAP_OPEN, 0))
        else:
            for i in range(len(item) - 1, -1, -1):
                stack.append((item[i], depth + 1))
                if i:
                    stack.append((SPACE, 0))
            stack.append((LIST_OPEN, 0))
    return "".join(out)


def format_diagnostic(d):
    """``"CODE: message"`` plus ``"; <detail>"`` when there is a detail, printed as Go's ``%v`` does."""
    if not isinstance(d, Diagnostic):
        raise TypeError(f"format_diagnostic() expects a Diagnostic, got {type(d).__name__}")
    cdef object code = d.code
    cdef object message = d.message
    cdef object detail
    cdef str text = (code if type(code) is str else str(code)) + ": " + (
        message if type(message) is str else str(message)
    )
    detail = d.detail
    if detail is None:
        return text
    return text + "; " + go_value(detail)


def format_error(method, url, status, diagnostics, body):
    """go-containerregistry's ``Error.Error()`` text for a failed response (``_error_text.format_error``)."""
    return _error_text_format(method, url, status, diagnostics, body, format_diagnostic)
