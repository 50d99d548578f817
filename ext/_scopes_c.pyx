# cython: language_level=3
"""Compiled twin: token scope strings (build, parse, merge) and the token request query.

Same behaviour as ``ocitransport._scopes_py`` (the reference for every rule), with the scanning and the
form encoding done in C (``_form.pxd``). The two twins must agree on every input, errors included
(``tests/test_scopes_twins.py``).
"""

from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.list cimport PyList_Append
from cpython.object cimport PyObject, PyTypeObject
from cpython.unicode cimport (
    PyUnicode_1BYTE_DATA,
    PyUnicode_DATA,
    PyUnicode_GET_LENGTH,
    PyUnicode_KIND,
    PyUnicode_New,
    PyUnicode_READ,
    PyUnicode_Substring,
)

from libc.string cimport memcpy

from _capi cimport PyMember_SetOne, PyMemberDef, slot_member
from _form cimport byte_data, byte_string, encode_query, escaped_length, parse_query, write_escaped

from ocitransport._values import Scope as _Scope

cdef object Scope = _Scope
cdef PyTypeObject* _scope_type = <PyTypeObject*>_Scope
cdef tuple _SCOPE_SLOTS = ("type", "name", "actions")
cdef PyMemberDef* _SLOT_TYPE = slot_member(_Scope, "type", _SCOPE_SLOTS)
cdef PyMemberDef* _SLOT_NAME = slot_member(_Scope, "name", _SCOPE_SLOTS)
cdef PyMemberDef* _SLOT_ACTIONS = slot_member(_Scope, "actions", _SCOPE_SLOTS)
cdef tuple _EMPTY = ()

cdef str _CATALOG = "registry:catalog:*"
cdef str _REPOSITORY_PREFIX = "repository:"
cdef bytes _SCOPE_KEY = b"scope"
cdef bytes _SERVICE_KEY = b"service"

__all__ = ["merge_scopes", "parse_scope", "registry_scope", "repository_scope", "token_query"]


cdef inline str _type_name(object value):
    return type(value).__name__


cdef object _iter_str(object value, str what, str expected="an iterable of str"):
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be {expected}, got {_type_name(value)}")
    try:
        return iter(value)
    except TypeError:
        raise TypeError(f"{what} must be {expected}, got {_type_name(value)}") from None


cdef inline Py_ssize_t _find_colon(str text, Py_ssize_t n, bint last) noexcept:
    cdef int kind = PyUnicode_KIND(text)
    cdef const void* data = PyUnicode_DATA(text)
    cdef Py_ssize_t i
    if last:
        i = n - 1
        while i >= 0 and PyUnicode_READ(kind, data, i) != 58:  # ":"
            i -= 1
        return i
    i = 0
    while i < n and PyUnicode_READ(kind, data, i) != 58:  # ":"
        i += 1
    return i if i < n else -1


cdef int _split_actions(str text, Py_ssize_t start, Py_ssize_t n, list out, bint unique) except -1:
    """Append the non-empty comma-separated items of ``text[start:n]`` to ``out`` (once each if unique)."""
    cdef int kind = PyUnicode_KIND(text)
    cdef const void* data = PyUnicode_DATA(text)
    cdef Py_ssize_t end
    cdef str action
    while start < n:
        end = start
        while end < n and PyUnicode_READ(kind, data, end) != 44:  # ","
            end += 1
        if end > start:
            action = PyUnicode_Substring(text, start, end)
            if not unique or action not in out:
                PyList_Append(out, action)
        start = end + 1
    return 0


def repository_scope(repository, actions):
    """The token scope ``repository:NAME:ACTIONS``; an iterable of actions is joined with ``,``."""
    if not isinstance(repository, str):
        raise TypeError(f"repository must be a str, got {_type_name(repository)}")
    if not isinstance(actions, str):
        items = []
        for action in _iter_str(actions, "actions", "a str or an iterable of str"):
            if not isinstance(action, str):
                raise TypeError(f"actions must be str, got {_type_name(action)}")
            PyList_Append(items, action)
        actions = ",".join(items)
    return _REPOSITORY_PREFIX + <str>repository + ":" + <str>actions


def registry_scope(action="catalog"):
    """The registry-wide scope: always ``registry:catalog:*`` (upstream ignores ``action`` too)."""
    return _CATALOG


def parse_scope(scope):
    """Split ``TYPE:NAME:ACTIONS`` (``NAME`` may hold ``:``; empty actions dropped).

    Raises ``ValueError`` for fewer than two ``:`` or an empty type, ``TypeError`` for a non-str.
    """
    if not isinstance(scope, str):
        raise TypeError(f"scope must be a str, got {_type_name(scope)}")
    cdef str text = <str>scope
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text)
    cdef Py_ssize_t first = _find_colon(text, n, False)
    cdef Py_ssize_t last = _find_colon(text, n, True)
    if first <= 0 or first == last:
        raise ValueError(f"invalid scope {scope!r}: want TYPE:NAME:ACTIONS")
    cdef list actions = []
    _split_actions(text, last + 1, n, actions, False)
    # Scope.__init__ is a Python frame: allocate and fill the __slots__ directly (see _capi.pxd).
    cdef object result = _scope_type.tp_new(Scope, <PyObject*>_EMPTY, NULL)
    cdef char* addr = <char*><PyObject*>result
    PyMember_SetOne(addr, _SLOT_TYPE, PyUnicode_Substring(text, 0, first))
    PyMember_SetOne(addr, _SLOT_NAME, PyUnicode_Substring(text, first + 1, last))
    PyMember_SetOne(addr, _SLOT_ACTIONS, tuple(actions))
    return result


cdef int _merge_into(dict resources, object scopes, str what) except -1:
    cdef list actions
    cdef PyObject* found
    cdef str text, key
    cdef Py_ssize_t n, first, last
    for scope in _iter_str(scopes, what):
        if not isinstance(scope, str):
            raise TypeError(f"{what} must hold str scopes, got {_type_name(scope)}")
        text = <str>scope
        n = PyUnicode_GET_LENGTH(text)
        first = _find_colon(text, n, False)
        last = _find_colon(text, n, True)
        if first <= 0 or first == last:
            if PyDict_GetItem(resources, text) == NULL:
                PyDict_SetItem(resources, text, None)
            continue
        # "TYPE:NAME:" names the resource: TYPE holds no ":", and no unparseable string (fewer than
        # two ":" or an empty TYPE) can equal it.
        key = PyUnicode_Substring(text, 0, last + 1)
        found = PyDict_GetItem(resources, key)
        if found == NULL:
            actions = []
            PyDict_SetItem(resources, key, actions)
        else:
            actions = <list>found
        _split_actions(text, last + 1, n, actions, True)
    return 0


def merge_scopes(new, old):
    """The union of two scope lists, one scope per resource (type and name), new scopes first.

    Resources keep the order in which they first appear in ``new`` then ``old`` (some registries read
    only the first scope, so what a 401 asked for leads); actions keep their first-appearance order too.
    Strings that are not ``TYPE:NAME:ACTIONS`` are kept verbatim, once.
    """
    cdef dict resources = {}
    cdef list out = []
    _merge_into(resources, new, "new")
    _merge_into(resources, old, "old")
    for key, actions in resources.items():
        if actions is None:
            PyList_Append(out, key)
        else:
            PyList_Append(out, <str>key + ",".join(<list>actions))
    return out


cdef str _simple_token_query(list scope_values, object service_value):
    """``scope=..&..&service=..`` for a realm without a query: no keys to sort, one allocation."""
    cdef Py_ssize_t total = 8, length, w = 0  # "service="
    cdef const unsigned char* data
    cdef char* buf
    cdef str out
    for value in scope_values:
        data = byte_data(value, &length)
        total += 7 + escaped_length(data, length)  # "scope=" and "&"
    data = byte_data(service_value, &length)
    total += escaped_length(data, length)
    out = PyUnicode_New(total, 127)  # escaped text is ASCII
    buf = <char*>PyUnicode_1BYTE_DATA(out)
    for value in scope_values:
        memcpy(buf + w, b"scope=", 6)
        w += 6
        data = byte_data(value, &length)
        w += write_escaped(buf + w, data, length)
        buf[w] = 38  # "&"
        w += 1
    memcpy(buf + w, b"service=", 8)
    w += 8
    data = byte_data(service_value, &length)
    write_escaped(buf + w, data, length)
    return out


def token_query(service, scopes, query=""):
    """The query string of a token GET, encoded as Go's ``url.Values.Encode()`` does.

    ``query`` is the realm URL's own raw query: its parameters are kept except ``scope`` and
    ``service``; one ``scope`` per scope follows in order, and ``service`` always (``service=`` when
    empty, upstream #1359).
    """
    if not isinstance(service, str):
        raise TypeError(f"service must be a str, got {_type_name(service)}")
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {_type_name(query)}")
    cdef list scope_values = []
    for scope in _iter_str(scopes, "scopes"):
        if not isinstance(scope, str):
            raise TypeError(f"scopes must hold str scopes, got {_type_name(scope)}")
        PyList_Append(scope_values, byte_string(<str>scope))
    if PyUnicode_GET_LENGTH(query) == 0:
        return _simple_token_query(scope_values, byte_string(<str>service))
    cdef dict values = parse_query(byte_string(<str>query))
    values.pop(_SCOPE_KEY, None)
    if scope_values:
        values[_SCOPE_KEY] = scope_values
    values[_SERVICE_KEY] = [byte_string(<str>service)]
    return encode_query(values)
