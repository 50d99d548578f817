# cython: language_level=3
"""Compiled twin: ``WWW-Authenticate`` challenge parsing (RFC 7235).

The same scanner as ``ocitransport._challenges_py`` (whose docstring states the grammar and the
tolerances, and each deliberate difference from go-containerregistry internal/authchallenge, listed with
its reason in docs/deviations.md), written as typed loops over the code points of the header value. The
two twins must agree on every input, errors included (``tests/test_challenges_twins.py``).
"""

from cpython.list cimport PyList_Append
from cpython.dict cimport PyDict_SetItem
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject, PyTypeObject
from cpython.unicode cimport (
    PyUnicode_1BYTE_KIND,
    PyUnicode_2BYTE_KIND,
    PyUnicode_4BYTE_KIND,
    PyUnicode_DATA,
    PyUnicode_DecodeASCII,
    PyUnicode_FromKindAndData,
    PyUnicode_GET_LENGTH,
    PyUnicode_KIND,
    PyUnicode_Substring,
)
from libc.string cimport memchr, memcmp

from _capi cimport PyMember_SetOne, PyMemberDef, Py_UCS1, Py_UCS2, slot_member, ucs_t

from ocitransport._values import Challenge as _Challenge

cdef object Challenge = _Challenge
cdef PyTypeObject* _challenge_type = <PyTypeObject*>_Challenge
cdef tuple _EMPTY = ()
cdef tuple _CHALLENGE_SLOTS = ("scheme", "parameters", "insecure", "token68")
cdef PyMemberDef* _SLOT_SCHEME = slot_member(_Challenge, "scheme", _CHALLENGE_SLOTS)
cdef PyMemberDef* _SLOT_PARAMETERS = slot_member(_Challenge, "parameters", _CHALLENGE_SLOTS)
cdef PyMemberDef* _SLOT_INSECURE = slot_member(_Challenge, "insecure", _CHALLENGE_SLOTS)
cdef PyMemberDef* _SLOT_TOKEN68 = slot_member(_Challenge, "token68", _CHALLENGE_SLOTS)

__all__ = ["parse_challenges"]

# Character classes of the ASCII range (bit flags); code points >= 128 belong to none of them.
cdef enum:
    C_TCHAR = 1   # RFC 7230 tchar: token characters
    C_T68 = 2     # RFC 7235 token68 characters (before the "=" padding)
    C_WS = 4      # whitespace as upstream reads it: SP, HT, CR, LF

cdef unsigned char _CLASS[256]  # the latin-1 range, so a Py_UCS1 indexes it without a bound check


cdef void _init_classes() noexcept:
    cdef bytes tchar = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    cdef bytes t68 = b"-._~+/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    cdef unsigned char c
    cdef int i
    for i in range(256):
        _CLASS[i] = 0
    for c in tchar:
        _CLASS[c] |= C_TCHAR
    for c in t68:
        _CLASS[c] |= C_T68
    for c in b" \t\r\n":
        _CLASS[c] |= C_WS


_init_classes()

# Parameter names and schemes almost every registry sends: reused instead of building a new str.
cdef str _REALM = "realm"
cdef str _SERVICE = "service"
cdef str _SCOPE = "scope"
cdef str _ERROR = "error"
cdef str _BEARER = "bearer"
cdef str _BASIC = "basic"

cdef enum:
    LOWER_BUF = 64  # longest token lowered on the stack; longer ones (never sent in practice) use str.lower()


cdef inline bint _is(Py_UCS4 c, unsigned char cls) noexcept:
    return c < 128 and (_CLASS[c] & cls) != 0


cdef inline Py_ssize_t _scan(const ucs_t* data, Py_ssize_t pos, Py_ssize_t n, unsigned char cls) noexcept:
    if ucs_t is Py_UCS1:
        while pos < n and (_CLASS[data[pos]] & cls) != 0:
            pos += 1
    else:
        while pos < n and _is(data[pos], cls):
            pos += 1
    return pos


cdef inline Py_ssize_t _quoted_end(const ucs_t* data, Py_ssize_t pos, Py_ssize_t n, bint* escaped) noexcept:
    """Index of the closing quote of a quoted-string whose content starts at ``pos``; -1 if unterminated."""
    cdef Py_UCS4 c
    cdef const void* quote
    if ucs_t is Py_UCS1:
        # Values are long (URLs) and rarely escaped: find the quote with memchr, then check for a
        # backslash before it; only an escaped value takes the loop below.
        quote = memchr(data + pos, 34, n - pos)  # double quote
        if quote != NULL and memchr(data + pos, 92, <const Py_UCS1*>quote - (data + pos)) == NULL:  # backslash
            return <const Py_UCS1*>quote - data
    while pos < n:
        c = data[pos]
        if c == 92:  # backslash: quoted-pair
            if pos + 1 >= n:
                return -1
            escaped[0] = True
            pos += 2
        elif c == 34:  # double quote
            return pos
        else:
            pos += 1
    return -1


cdef inline Py_ssize_t _skip_garbage(const ucs_t* data, Py_ssize_t pos, Py_ssize_t n) noexcept:
    """Position of the next comma at or after ``pos`` outside a quoted-string, or ``n``."""
    cdef Py_UCS4 c
    cdef bint escaped = False
    while pos < n:
        c = data[pos]
        if c == 44:  # comma
            return pos
        if c == 34:  # double quote
            pos = _quoted_end(data, pos + 1, n, &escaped)
            if pos < 0:
                return n
        pos += 1
    return n


cdef inline bint _ieq(const ucs_t* data, const char* lower, Py_ssize_t length) noexcept:
    """``data[:length]`` equals ``lower`` (lower-case ASCII letters) ignoring ASCII case."""
    cdef Py_ssize_t i
    for i in range(length):
        # 0x20 is the ASCII case bit; for the letters of ``lower`` only its two cases match.
        if (<unsigned int>data[i] | 0x20) != <unsigned char>lower[i]:
            return False
    return True


cdef str _lower_token(str s, const ucs_t* data, Py_ssize_t start, Py_ssize_t end):
    """The token ``s[start:end]`` (ASCII by construction) lower-cased."""
    cdef char buf[LOWER_BUF]
    cdef Py_ssize_t i, length = end - start
    cdef unsigned int c
    cdef const ucs_t* token = data + start
    if length == 5:
        if _ieq(token, b"realm", 5):
            return _REALM
        if _ieq(token, b"scope", 5):
            return _SCOPE
        if _ieq(token, b"error", 5):
            return _ERROR
        if _ieq(token, b"basic", 5):
            return _BASIC
    elif length == 7:
        if _ieq(token, b"service", 7):
            return _SERVICE
    elif length == 6:
        if _ieq(token, b"bearer", 6):
            return _BEARER
    if length > LOWER_BUF:
        return PyUnicode_Substring(s, start, end).lower()
    for i in range(length):
        c = token[i]
        if 65 <= c <= 90:  # A-Z
            c += 32
        buf[i] = <char>c
    return PyUnicode_DecodeASCII(buf, length, NULL)


cdef inline object _new_challenge(str scheme, dict parameters):
    # Challenge.__init__ is a Python frame and each attribute store a type lookup: allocating through
    # tp_new and storing into the __slots__ members directly costs a fifth of Challenge(...).
    cdef object challenge = _challenge_type.tp_new(Challenge, <PyObject*>_EMPTY, NULL)
    cdef char* addr = <char*><PyObject*>challenge
    PyMember_SetOne(addr, _SLOT_SCHEME, scheme)
    PyMember_SetOne(addr, _SLOT_PARAMETERS, parameters)
    PyMember_SetOne(addr, _SLOT_INSECURE, False)
    PyMember_SetOne(addr, _SLOT_TOKEN68, None)
    return challenge


cdef str _unescape(const ucs_t* data, Py_ssize_t start, Py_ssize_t end):
    """The content of a quoted-string ``s[start:end]`` with each quoted-pair ``\\x`` replaced by ``x``."""
    cdef Py_UCS4* buf = <Py_UCS4*>PyMem_Malloc((end - start) * sizeof(Py_UCS4))
    cdef Py_ssize_t length = 0
    cdef Py_UCS4 c
    if buf == NULL:
        raise MemoryError()
    try:
        while start < end:
            c = data[start]
            if c == 92:  # backslash: keep the next character as it is
                start += 1
                c = data[start]
            buf[length] = c
            length += 1
            start += 1
        return PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, buf, length)
    finally:
        PyMem_Free(buf)


cdef int _parse_chars(str s, const ucs_t* data, Py_ssize_t n, list out) except -1:
    cdef Py_ssize_t pos = 0, tok_end, end, vpos, qend, t68_end, pad_end
    cdef Py_UCS4 c
    cdef bint after_scheme = False, escaped
    cdef dict current = None
    cdef object challenge
    cdef str value
    while True:
        if not after_scheme:
            while pos < n:
                c = data[pos]
                if c != 44 and not _is(c, C_WS):  # 44: comma
                    break
                pos += 1
            if pos >= n:
                return 0
        tok_end = _scan(data, pos, n, C_TCHAR)
        if tok_end > pos:
            end = _scan(data, tok_end, n, C_WS)
            c = data[end] if end < n else 0
            if end < n and c == 61:  # "=": an auth-param
                after_scheme = False
                vpos = _scan(data, end + 1, n, C_WS)
                value = None
                if vpos < n and data[vpos] == 34:  # double quote
                    escaped = False
                    qend = _quoted_end(data, vpos + 1, n, &escaped)
                    if qend >= 0:
                        if qend > vpos + 1 and current is not None:
                            if escaped:
                                value = _unescape(data, vpos + 1, qend)
                            else:
                                value = PyUnicode_Substring(s, vpos + 1, qend)
                        vpos = _scan(data, qend + 1, n, C_WS)
                else:
                    qend = _scan(data, vpos, n, C_TCHAR)
                    if qend > vpos:
                        if current is not None:
                            value = PyUnicode_Substring(s, vpos, qend)
                        vpos = _scan(data, qend, n, C_WS)
                if value is not None:
                    PyDict_SetItem(current, _lower_token(s, data, pos, tok_end), value)
                pos = vpos
                if pos < n and data[pos] != 44:  # comma
                    pos = _skip_garbage(data, pos, n)
                continue
            if not after_scheme and (end == n or c == 44 or end > tok_end):  # 44: comma
                current = {}
                challenge = _new_challenge(_lower_token(s, data, pos, tok_end), current)
                PyList_Append(out, challenge)
                pos = end
                if end == n or c == 44:
                    continue
                t68_end = _scan(data, end, n, C_T68)
                if t68_end > end:
                    pad_end = t68_end
                    while pad_end < n and data[pad_end] == 61:  # "=" padding
                        pad_end += 1
                    qend = _scan(data, pad_end, n, C_WS)
                    if qend == n or data[qend] == 44:  # comma
                        challenge.token68 = PyUnicode_Substring(s, end, pad_end)
                        pos = qend
                        continue
                after_scheme = True
                continue
        after_scheme = False
        pos = _skip_garbage(data, pos, n)


cdef inline int _parse_value(str s, list out) except -1:
    cdef int kind = PyUnicode_KIND(s)
    cdef void* data = PyUnicode_DATA(s)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s)
    if kind == PyUnicode_1BYTE_KIND:
        return _parse_chars(s, <const Py_UCS1*>data, n, out)
    if kind == PyUnicode_2BYTE_KIND:
        return _parse_chars(s, <const Py_UCS2*>data, n, out)
    return _parse_chars(s, <const Py_UCS4*>data, n, out)


def parse_challenges(value):
    """Parse ``WWW-Authenticate`` header values into challenges, in order.

    ``value`` is one header value or an iterable of them (one per header line); every value may hold
    several challenges. Scheme and parameter names come back lower-cased, values as sent; a repeated
    parameter keeps its last value. Malformed parts are dropped, never raised on.

    Raises ``TypeError`` when ``value`` is not a str nor an iterable of str (bytes included).
    """
    cdef list out = []
    if isinstance(value, str):
        _parse_value(<str>value, out)
        return out
    if type(value) is list:
        # What the engine passes (Headers.get_all): index the list instead of going through iter().
        for item in <list>value:
            if not isinstance(item, str):
                raise TypeError(f"parse_challenges() expects str header values, got {type(item).__name__}")
            _parse_value(<str>item, out)
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
        _parse_value(<str>item, out)
    return out
