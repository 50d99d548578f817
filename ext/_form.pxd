# Go's form encoding (``url.QueryEscape``, ``url.QueryUnescape``, ``url.ParseQuery``,
# ``url.Values.Encode``) over byte strings, shared by the compiled twins ``_scopes_c`` and
# ``_redaction_c``; the pure twins have the same in ``ocitransport._scopes_py``.
#
# Text enters as its UTF-8 bytes (``surrogateescape`` first, so a value decoded from bytes that way gets
# its own bytes back; ``surrogatepass`` for any other lone surrogate). An ASCII str is used in place.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_1BYTE_DATA, PyUnicode_GET_LENGTH, PyUnicode_New

from _capi cimport PyUnicode_IS_ASCII


cdef inline bytes utf8(str text):
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


cdef inline object byte_string(str text):
    """``text`` itself when it is ASCII, else its UTF-8 bytes; read it through ``byte_data``."""
    if PyUnicode_IS_ASCII(text):
        return text
    return utf8(text)


cdef inline const unsigned char* byte_data(object byte_str, Py_ssize_t* length) noexcept:
    """The bytes of a ``byte_string`` result (an ASCII str or a bytes); the caller keeps it alive."""
    if type(byte_str) is bytes:
        length[0] = PyBytes_GET_SIZE(byte_str)
        return <const unsigned char*>PyBytes_AS_STRING(byte_str)
    length[0] = PyUnicode_GET_LENGTH(byte_str)
    return <const unsigned char*>PyUnicode_1BYTE_DATA(byte_str)


cdef inline bint is_unreserved(unsigned char c) noexcept:
    # Go's shouldEscape for a query component: only ALPHA / DIGIT / "-" / "_" / "." / "~" stay.
    return (
        (97 <= c <= 122)  # a-z
        or (65 <= c <= 90)  # A-Z
        or (48 <= c <= 57)  # 0-9
        or c == 45 or c == 95 or c == 46 or c == 126  # - _ . ~
    )


cdef inline Py_ssize_t escaped_length(const unsigned char* data, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i, total = n
    for i in range(n):
        if not is_unreserved(data[i]) and data[i] != 32:  # space becomes "+", one byte
            total += 2  # %XX
    return total


cdef inline Py_ssize_t write_escaped(char* out, const unsigned char* data, Py_ssize_t n) noexcept:
    """Write Go's ``QueryEscape`` of ``data`` at ``out``; the number of bytes written."""
    cdef const char* hexdigits = b"0123456789ABCDEF"  # Go escapes with upper-case hex
    cdef Py_ssize_t i, w = 0
    cdef unsigned char c
    for i in range(n):
        c = data[i]
        if is_unreserved(c):
            out[w] = <char>c
            w += 1
        elif c == 32:  # space
            out[w] = 43  # "+"
            w += 1
        else:
            out[w] = 37  # "%"
            out[w + 1] = hexdigits[c >> 4]
            out[w + 2] = hexdigits[c & 15]
            w += 3
    return w


cdef inline int hex_value(unsigned char c) noexcept:
    if 48 <= c <= 57:  # 0-9
        return c - 48
    if 65 <= c <= 70:  # A-F
        return c - 55
    if 97 <= c <= 102:  # a-f
        return c - 87
    return -1


cdef inline Py_ssize_t unescaped_length(const unsigned char* data, Py_ssize_t n) noexcept:
    """Length of Go's ``QueryUnescape`` of ``data``; -1 where Go fails (a "%" without two hex digits)."""
    cdef Py_ssize_t i = 0, total = n
    while i < n:
        if data[i] == 37:  # "%"
            if i + 2 >= n or hex_value(data[i + 1]) < 0 or hex_value(data[i + 2]) < 0:
                return -1
            total -= 2
            i += 3
        else:
            i += 1
    return total


cdef inline bytes unescape(const unsigned char* data, Py_ssize_t n):
    """Go's ``QueryUnescape`` ("+" is a space); ``None`` where Go returns an error."""
    cdef Py_ssize_t i = 0, w = 0, length = unescaped_length(data, n)
    cdef bytes out
    cdef char* buf
    if length < 0:
        return None
    out = PyBytes_FromStringAndSize(NULL, length)
    buf = PyBytes_AS_STRING(out)
    while i < n:
        if data[i] == 37:  # "%XX"
            buf[w] = <char>(hex_value(data[i + 1]) * 16 + hex_value(data[i + 2]))
            i += 3
        elif data[i] == 43:  # "+"
            buf[w] = 32
            i += 1
        else:
            buf[w] = <char>data[i]
            i += 1
        w += 1
    return out


ctypedef bint (*key_predicate)(bytes key) noexcept


cdef inline dict parse_query(object byte_str, key_predicate redact=NULL, bytes replacement=None):
    """Go's ``url.ParseQuery`` with its errors ignored: bytes keys to lists of bytes values, in order.

    Pairs holding ";" or a bad escape are dropped, as are empty pairs. When ``redact(key)`` is true the
    value (still checked for bad escapes, as Go decodes it) is stored as ``replacement``.
    """
    cdef Py_ssize_t n, start = 0, end, eq, vstart
    cdef const unsigned char* data = byte_data(byte_str, &n)
    cdef dict values = {}
    cdef bytes key, value
    cdef bint semicolon
    cdef list bucket
    while start <= n:
        end = start
        eq = -1
        semicolon = False
        while end < n and data[end] != 38:  # "&"
            if data[end] == 59:  # ";": Go rejects the pair
                semicolon = True
            elif data[end] == 61 and eq < 0:  # first "="
                eq = end
            end += 1
        if end > start and not semicolon:
            if eq < 0:
                eq = vstart = end  # no "=": an empty value
            else:
                vstart = eq + 1
            key = unescape(data + start, eq - start)
            if key is None:
                value = None
            elif redact != NULL and redact(key):
                value = replacement if unescaped_length(data + vstart, end - vstart) >= 0 else None
            else:
                value = unescape(data + vstart, end - vstart)
            if value is not None:
                bucket = values.get(key)
                if bucket is None:
                    values[key] = [value]
                else:
                    bucket.append(value)
        start = end + 1
    return values


cdef inline str encode_query(dict values):
    """Go's ``url.Values.Encode``: keys sorted byte-wise, each key's values in order."""
    cdef list keys = sorted(values)
    cdef Py_ssize_t total = 0, klen, vlen, w = 0
    cdef const unsigned char* kdata
    cdef const unsigned char* vdata
    cdef str out
    cdef char* buf
    for key in keys:
        kdata = byte_data(key, &klen)
        klen = escaped_length(kdata, klen)
        for value in <list>values[key]:
            vdata = byte_data(value, &vlen)
            total += klen + 2 + escaped_length(vdata, vlen)  # key "=" value "&"
    if total == 0:
        return ""
    out = PyUnicode_New(total - 1, 127)  # no "&" after the last pair; escaped text is ASCII
    buf = <char*>PyUnicode_1BYTE_DATA(out)
    for key in keys:
        kdata = byte_data(key, &klen)
        for value in <list>values[key]:
            if w:
                buf[w] = 38  # "&"
                w += 1
            w += write_escaped(buf + w, kdata, klen)
            buf[w] = 61  # "="
            w += 1
            vdata = byte_data(value, &vlen)
            w += write_escaped(buf + w, vdata, vlen)
    return out
