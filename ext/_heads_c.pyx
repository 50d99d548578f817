# cython: language_level=3
"""Compiled twin of ``ocitransport._heads_py``: response heads from libcurl's raw header lines.

Same rules, results and exceptions as the pure twin (its docstring states them); this one scans the
bytes buffers in place and builds each ``str`` once with ``PyUnicode_DecodeLatin1``.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_GET_SIZE
from cpython.list cimport PyList_Check
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_Check
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.string cimport memchr, memcmp

from ocitransport.exceptions import ProtocolError as _ProtocolError

cdef object ProtocolError = _ProtocolError

__all__ = ["is_interim", "parse_head"]

cdef str NO_STATUS_LINE = "no HTTP status line in the response head"

# Header names and values that nearly every registry response carries, in the spellings servers
# send (Go's canonical form from distribution, and the lower case of HTTP/2). A match reuses one
# shared str instead of building a new one: most of a head's strings come from this table.
cdef tuple COMMON = (
    "HTTP/1.1", "HTTP/2", "HTTP/1.0", "HTTP/3", "OK", "Created", "Accepted", "No Content",
    "Partial Content", "Continue", "Connection established", "Moved Permanently", "Found",
    "See Other", "Not Modified", "Temporary Redirect", "Permanent Redirect", "Bad Request",
    "Unauthorized", "Forbidden", "Not Found", "Method Not Allowed", "Too Many Requests",
    "Internal Server Error", "Bad Gateway", "Service Unavailable", "Gateway Timeout",
    "Content-Type", "Content-Length", "Docker-Content-Digest", "Docker-Distribution-Api-Version",
    "Date", "Etag", "ETag", "X-Content-Type-Options", "Www-Authenticate", "WWW-Authenticate",
    "Location", "Range", "Docker-Upload-Uuid", "Strict-Transport-Security", "Connection", "Server",
    "Accept-Ranges", "Cache-Control", "Last-Modified", "Vary", "Via", "Age", "Expires", "Link",
    "Retry-After", "Transfer-Encoding", "Content-Encoding", "Content-Range", "Keep-Alive",
    "X-Frame-Options", "X-Xss-Protection", "Docker-Ratelimit-Source", "Ratelimit-Limit",
    "Ratelimit-Remaining", "X-Cache", "X-Amz-Cf-Id", "X-Amz-Cf-Pop", "Cf-Ray", "Cf-Cache-Status",
    "content-type", "content-length", "docker-content-digest", "docker-distribution-api-version",
    "date", "etag", "x-content-type-options", "www-authenticate", "location", "range",
    "docker-upload-uuid", "strict-transport-security", "server", "accept-ranges", "cache-control",
    "last-modified", "vary", "via", "age", "expires", "link", "retry-after", "content-encoding",
    "content-range", "x-frame-options", "docker-ratelimit-source", "ratelimit-limit",
    "ratelimit-remaining", "x-cache", "cf-ray", "cf-cache-status",
    "registry/2.0", "nosniff", "keep-alive", "close", "bytes", "chunked", "gzip", "0", "nginx",
    "Accept-Encoding", "accept-encoding", "max-age=31536000", "max-age=31536000; includeSubDomains",
    "application/json", "application/json; charset=utf-8", "text/plain; charset=utf-8",
    "application/octet-stream", "DENY", "SAMEORIGIN",
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
DEF TABLE_SIZE = 512  # slots of the open table below; a power of two
cdef const char* table_data[TABLE_SIZE]
cdef Py_ssize_t table_size[TABLE_SIZE]
cdef PyObject* table_str[TABLE_SIZE]  # borrowed from COMMON, which lives as long as the module
cdef dict COMMON_BYTES = {}  # keeps the latin-1 bytes that table_data points into alive


cdef inline Py_ssize_t slot(const unsigned char* p, Py_ssize_t size) noexcept nogil:
    return (size * 31 + p[0] * 7 + p[size - 1] * 3 + p[size >> 1]) & (TABLE_SIZE - 1)


cdef void fill_table():
    cdef Py_ssize_t h
    cdef bytes raw
    for text in COMMON:
        raw = (<str>text).encode("latin-1")
        COMMON_BYTES[text] = raw
        h = slot(<const unsigned char*>PyBytes_AS_STRING(raw), len(raw))
        if table_str[h] == NULL:  # a colliding later entry is simply not cached
            table_data[h] = PyBytes_AS_STRING(raw)
            table_size[h] = len(raw)
            table_str[h] = <PyObject*>text


fill_table()


cdef inline bint is_space(unsigned char c) noexcept nogil:
    # bytes.strip()/split() whitespace: SP (0x20), and HT LF VT FF CR (0x09-0x0D)
    return c == 0x20 or 0x09 <= c <= 0x0D


cdef inline bint is_blank(const unsigned char* p, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(size):
        if p[i] != 0x0D and p[i] != 0x0A:  # CR, LF
            return False
    return True


cdef inline str latin1(const unsigned char* p, Py_ssize_t size):
    cdef Py_ssize_t h
    if size:
        h = slot(p, size)
        if table_size[h] == size and table_str[h] != NULL and memcmp(table_data[h], p, size) == 0:
            return <str>table_str[h]
    return PyUnicode_DecodeLatin1(<const char*>p, size, NULL)


cdef object malformed(bytes line):
    cdef str text = line.rstrip(b"\r\n")[:200].decode("latin-1")
    return ProtocolError(f"malformed HTTP status line: {text!r}")


cdef tuple status_line(bytes line, const unsigned char* p, Py_ssize_t size):
    """``(version, status, reason)`` of a line known to start with ``HTTP/``."""
    cdef Py_ssize_t version_end = 0, code_start, pos, reason_start, reason_end
    cdef int code
    while version_end < size and not is_space(p[version_end]):
        version_end += 1
    pos = version_end
    while pos < size and is_space(p[pos]):
        pos += 1
    if pos == size:
        raise malformed(line)
    code_start = pos
    while pos < size and not is_space(p[pos]):
        pos += 1
    if pos - code_start != 3:
        raise malformed(line)
    code = 0
    for reason_start in range(code_start, pos):
        if not (0x30 <= p[reason_start] <= 0x39):  # '0'..'9'
            raise malformed(line)
        code = code * 10 + (p[reason_start] - 0x30)
    reason_start = pos
    while reason_start < size and is_space(p[reason_start]):
        reason_start += 1
    reason_end = size
    while reason_end > reason_start and is_space(p[reason_end - 1]):
        reason_end -= 1
    return (latin1(p, version_end), code, latin1(p + reason_start, reason_end - reason_start))


cdef inline str stripped(const unsigned char* start, const unsigned char* end):
    while start < end and is_space(start[0]):
        start += 1
    while end > start and is_space((end - 1)[0]):
        end -= 1
    return latin1(start, end - start)


def is_interim(line):
    """Whether ``line`` is a status line of an interim head (1xx other than ``101 Switching
    Protocols``, which is final), by ``parse_head``'s rules. A malformed status line or any other
    line is not: the head it starts is final, and ``parse_head`` raises for it."""
    cdef const unsigned char* p
    cdef Py_ssize_t size, pos = 0, start
    cdef int code = 0
    if not PyBytes_Check(line):
        raise TypeError(f"is_interim() expects bytes, got {type(line).__name__}")
    p = <const unsigned char*>PyBytes_AS_STRING(line)
    size = PyBytes_GET_SIZE(line)
    if size < 5 or memcmp(p, b"HTTP/", 5) != 0:
        return False
    # status_line()'s scan without building strings: VERSION WS three digits (WS | end).
    while pos < size and not is_space(p[pos]):
        pos += 1
    while pos < size and is_space(p[pos]):
        pos += 1
    start = pos
    while pos < size and not is_space(p[pos]):
        if not (0x30 <= p[pos] <= 0x39):  # '0'..'9'
            return False
        code = code * 10 + (p[pos] - 0x30)
        pos += 1
    if pos - start != 3:
        return False
    return 100 <= code < 200 and code != 101


def parse_head(lines):
    """``(http_version, status, reason, headers)`` of the last head in libcurl's header lines.

    ``headers`` is a list of ``(name, value)`` pairs in arrival order, ready for
    ``Headers._from_list``. Raises ``ProtocolError`` for a missing or malformed status line and
    ``TypeError`` when ``lines`` is not a list or tuple of bytes.
    """
    if not (PyList_Check(lines) or PyTuple_Check(lines)):
        raise TypeError(f"parse_head() expects a list or tuple of bytes, got {type(lines).__name__}")
    cdef Py_ssize_t size, last
    cdef object line
    cdef tuple status = None
    cdef list headers = []
    cdef bint in_head = False
    cdef const unsigned char* p
    cdef const unsigned char* colon
    cdef str more, text
    for line in lines:  # Cython indexes lists and tuples directly, holding a reference per item
        if not PyBytes_Check(line):
            raise TypeError(f"parse_head() expects bytes lines, got {type(line).__name__}")
        p = <const unsigned char*>PyBytes_AS_STRING(line)
        size = PyBytes_GET_SIZE(line)
        if size >= 5 and memcmp(p, b"HTTP/", 5) == 0:
            status = status_line(line, p, size)
            headers = []
            in_head = True
            continue
        if not in_head:
            continue
        colon = <const unsigned char*>memchr(p, 0x3A, size)  # ':'
        if colon != NULL and colon != p and p[0] != 0x20 and p[0] != 0x09:  # name not empty, no SP/HT
            headers.append((latin1(p, colon - p), stripped(colon + 1, p + size)))
        elif is_blank(p, size):
            in_head = False
        elif p[0] == 0x20 or p[0] == 0x09:  # SP, HT: obsolete line folding
            more = stripped(p, p + size)
            if headers and more:
                last = len(headers) - 1  # no negative indexing: the build sets wraparound=False
                name, text = headers[last]
                headers[last] = (name, text + " " + more if text else more)
    if status is None:
        raise ProtocolError(NO_STATUS_LINE)
    return (status[0], status[1], status[2], headers)
