"""go-containerregistry's error texts that are not hot: Go's status text table, ``Error.Error()`` and
``Error.Temporary()`` (pkg/v1/remote/transport/error.go). Pure Python, once: both diagnostics twins
re-export these (only decoding and ``format_diagnostic`` are compiled).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import index

from ._values import Diagnostic

__all__ = ["format_error", "is_temporary", "status_text"]

HEAD_SUFFIX = " (HEAD responses have no body, use GET for details)"
TEMPORARY_STATUS = frozenset((408, 429, 500, 502, 503, 504))
TEMPORARY_CODES = frozenset(("BLOB_UPLOAD_INVALID", "TOOMANYREQUESTS", "UNKNOWN", "UNAVAILABLE"))

# Go's net/http StatusText table (status.go).
STATUS_TEXT: dict[int, str] = {
    100: "Continue",
    101: "Switching Protocols",
    102: "Processing",
    103: "Early Hints",
    200: "OK",
    201: "Created",
    202: "Accepted",
    203: "Non-Authoritative Information",
    204: "No Content",
    205: "Reset Content",
    206: "Partial Content",
    207: "Multi-Status",
    208: "Already Reported",
    226: "IM Used",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    305: "Use Proxy",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    414: "Request URI Too Long",
    415: "Unsupported Media Type",
    416: "Requested Range Not Satisfiable",
    417: "Expectation Failed",
    418: "I'm a teapot",
    421: "Misdirected Request",
    422: "Unprocessable Entity",
    423: "Locked",
    424: "Failed Dependency",
    425: "Too Early",
    426: "Upgrade Required",
    428: "Precondition Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    451: "Unavailable For Legal Reasons",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates",
    507: "Insufficient Storage",
    508: "Loop Detected",
    510: "Not Extended",
    511: "Network Authentication Required",
}


def status_text(code: int) -> str:
    """Go's ``http.StatusText``: the reason phrase for ``code``, ``""`` when Go does not know it."""
    return STATUS_TEXT.get(index(code), "")


def check_diagnostics(diagnostics: Sequence[Diagnostic], caller: str) -> None:
    if not isinstance(diagnostics, (list, tuple)):
        raise TypeError(f"{caller}() expects a list of Diagnostic, got {type(diagnostics).__name__}")
    for d in diagnostics:
        if not isinstance(d, Diagnostic):
            raise TypeError(f"{caller}() expects a list of Diagnostic, got an item of type {type(d).__name__}")


def format_error(
    method: str | None,
    url: str | None,
    status: int,
    diagnostics: Sequence[Diagnostic],
    body: bytes | bytearray | memoryview,
    format_diagnostic: Callable[[Diagnostic], str],
) -> str:
    """go-containerregistry's ``Error.Error()`` text for a failed response (transport/error.go).

    ``url`` must already be redacted; the ``"METHOD URL: "`` prefix appears only when both are given.
    ``format_diagnostic`` is the twin's (each twin's ``format_error`` passes its own).
    """
    if method is not None and not isinstance(method, str):
        raise TypeError(f"format_error() expects method as str or None, got {type(method).__name__}")
    if url is not None and not isinstance(url, str):
        raise TypeError(f"format_error() expects url as str or None, got {type(url).__name__}")
    status = index(status)
    check_diagnostics(diagnostics, "format_error")
    if isinstance(body, bytes):
        data = body
    elif isinstance(body, (bytearray, memoryview)):
        data = bytes(body)
    else:
        raise TypeError(f"format_error() expects body as bytes, got {type(body).__name__}")
    prefix = f"{method} {url}: " if method is not None and url is not None else ""
    count = len(diagnostics)
    if count == 1:
        return prefix + format_diagnostic(diagnostics[0])
    if count:
        return prefix + "multiple errors returned: " + "; ".join([format_diagnostic(d) for d in diagnostics])
    text = f"{prefix}unexpected status code {status} {STATUS_TEXT.get(status, '')}"
    if data:
        return text + ": " + data.decode("utf-8", "replace")
    if method == "HEAD":
        return text + HEAD_SUFFIX
    return text


def is_temporary(status: int, diagnostics: Sequence[Diagnostic]) -> bool:
    """go-containerregistry's ``Error.Temporary()`` rules 2 and 3 (transport/error.go).

    Without diagnostics: the status is 408, 429, 500, 502, 503 or 504. With diagnostics: every code is
    one of BLOB_UPLOAD_INVALID, TOOMANYREQUESTS, UNKNOWN, UNAVAILABLE.
    """
    status = index(status)
    check_diagnostics(diagnostics, "is_temporary")
    if not diagnostics:
        return status in TEMPORARY_STATUS
    return all(d.code in TEMPORARY_CODES for d in diagnostics)
