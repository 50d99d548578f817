"""One table from libcurl error codes (``CURLE_*``) to ocitransport exceptions.

The engine calls :func:`error_from_curl` once per failed transfer; the adapters map our exceptions onward
to requests/httpx types, so this is the only place that knows curl's numbers. Rows are checked most
specific first (a TLS error is also a connect error, so its row comes before the connect rows).
Codes pycurl 7.49 does not export are spelled with their numbers from ``curl/curl.h`` (libcurl 8.x).
"""

from __future__ import annotations

import pycurl

from ._redaction import redact_url
from .exceptions import (
    ConnectError,
    ConnectTimeout,
    InvalidURL,
    ProtocolError,
    ProxyError,
    ReadError,
    ReadTimeout,
    RequestCancelled,
    TimeoutError,
    TLSError,
    TransportError,
    UnsupportedProtocol,
    WriteError,
    WriteTimeout,
)

# curl.h numbers that pycurl does not export as E_* names (stable since they were added).
E_WEIRD_SERVER_REPLY = 8  # pycurl names it E_FTP_WEIRD_SERVER_REPLY
E_HTTP2_STREAM = 92  # libcurl 7.49.0
E_HTTP3 = 95  # libcurl 7.68.0
E_QUIC_CONNECT_ERROR = 96  # libcurl 7.69.0
E_PROXY = 97  # libcurl 7.73.0: a proxy handshake failed (CONNECT refused, SOCKS error)
E_SSL_CLIENTCERT = 98  # libcurl 7.77.0: the server wanted a client certificate (TLS 1.3 alert)
E_UNRECOVERABLE_POLL = 99  # libcurl 7.84.0
E_TOO_LARGE = 100  # libcurl 8.6.0: a header or response too large to handle
E_ECH_REQUIRED = 101  # libcurl 8.8.0

#: ``(codes, exception type)`` rows; the first row whose codes contain the error wins.
#: Timeouts are refined by phase in :func:`error_from_curl` (connect / write / read).
TABLE: tuple[tuple[frozenset[int], type[TransportError]], ...] = (
    (frozenset({pycurl.E_OPERATION_TIMEDOUT}), TimeoutError),
    (frozenset({
        pycurl.E_SSL_CONNECT_ERROR, pycurl.E_PEER_FAILED_VERIFICATION, pycurl.E_SSL_CERTPROBLEM,
        pycurl.E_SSL_CIPHER, pycurl.E_SSL_CACERT_BADFILE, pycurl.E_SSL_ENGINE_NOTFOUND,
        pycurl.E_SSL_ENGINE_SETFAILED, pycurl.E_SSL_ENGINE_INITFAILED, pycurl.E_SSL_SHUTDOWN_FAILED,
        pycurl.E_SSL_CRL_BADFILE, pycurl.E_SSL_ISSUER_ERROR, pycurl.E_SSL_PINNEDPUBKEYNOTMATCH,
        pycurl.E_SSL_INVALIDCERTSTATUS, pycurl.E_USE_SSL_FAILED, E_SSL_CLIENTCERT, E_ECH_REQUIRED,
    }), TLSError),
    (frozenset({pycurl.E_COULDNT_RESOLVE_PROXY, E_PROXY}), ProxyError),
    (frozenset({pycurl.E_COULDNT_RESOLVE_HOST, pycurl.E_COULDNT_CONNECT, pycurl.E_INTERFACE_FAILED,
                pycurl.E_NO_CONNECTION_AVAILABLE, E_QUIC_CONNECT_ERROR}), ConnectError),
    (frozenset({pycurl.E_UNSUPPORTED_PROTOCOL}), UnsupportedProtocol),
    (frozenset({pycurl.E_URL_MALFORMAT}), InvalidURL),
    (frozenset({pycurl.E_PARTIAL_FILE, pycurl.E_RECV_ERROR, pycurl.E_GOT_NOTHING,
                pycurl.E_WRITE_ERROR}), ReadError),
    (frozenset({pycurl.E_SEND_ERROR, pycurl.E_READ_ERROR, pycurl.E_SEND_FAIL_REWIND,
                pycurl.E_UPLOAD_FAILED}), WriteError),
    (frozenset({pycurl.E_HTTP2, E_HTTP2_STREAM, E_HTTP3, E_WEIRD_SERVER_REPLY,
                pycurl.E_BAD_CONTENT_ENCODING, E_TOO_LARGE, pycurl.E_RANGE_ERROR}), ProtocolError),
    (frozenset({pycurl.E_ABORTED_BY_CALLBACK}), RequestCancelled),
)

_TLS_ALERT = "SSL routines"  # OpenSSL's text for errors from the TLS layer, alerts included

_BY_CODE: dict[int, type[TransportError]] = {}
for _codes, _kind in reversed(TABLE):  # earlier rows win
    for _code in _codes:
        _BY_CODE[_code] = _kind


def exception_type(code: int) -> type[TransportError]:
    """The exception class for a curl code (``TransportError`` for codes no row names)."""
    return _BY_CODE.get(code, TransportError)


def error_from_curl(code: int, message: str, method: str, url: str, *, phase: str = "read",
                    cause: BaseException | None = None) -> TransportError:
    """Build the mapped exception for a failed transfer.

    ``phase`` refines timeouts: ``"connect"`` (no connection yet), ``"write"`` (the request body was
    still being sent) or ``"read"``. The message names the method and the redacted URL, then curl's own
    text (which can itself contain the URL, so it is redacted too). The caller raises it ``from`` the
    ``pycurl.error`` in ``cause`` when there is one.
    """
    kind = _BY_CODE.get(code, TransportError)
    if kind in (ReadError, WriteError) and _TLS_ALERT in message:
        # TLS 1.3 sends the server's certificate verdict (e.g. "alert certificate required" for a
        # missing client certificate) after the handshake: libcurl sees it as a send/recv failure.
        kind = TLSError
    elif kind is TimeoutError:
        kind = {"connect": ConnectTimeout, "write": WriteTimeout}.get(phase, ReadTimeout)
    safe_url = redact_url(url)
    if url and url in message:
        message = message.replace(url, safe_url)
    exc = kind(f"{method} {safe_url}: {message} (curl error {code})", url=safe_url, curl_code=code)
    if cause is not None:
        exc.__cause__ = cause
    return exc
