"""The one table from ocitransport exceptions to the requests, urllib3 and httpx exception types.

Rows are checked most specific first (``TLSError`` and ``ProxyError`` are ``ConnectError``s,
``UnsupportedProtocol`` is an ``InvalidURL``, every timeout is a ``TimeoutError``), as httpx's
``map_httpcore_exceptions`` and requests' ``HTTPAdapter.send`` do. Each column names the host library's
type for one situation:

* ``requests``: what ``RequestsAdapter.send`` raises before a response exists;
* ``urllib3``: what the ``raw`` body raises mid-stream, so that requests' own ``iter_content`` turns it
  into ``ChunkedEncodingError`` / ``ConnectionError`` / ``SSLError`` exactly as it does for stock;
* ``httpx``: what the httpx transports raise, before the response and mid-stream alike.

The host libraries are imported lazily: the requests adapter works without httpx installed and back.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import (
    ClientClosed,
    ConnectError,
    ConnectTimeout,
    InvalidURL,
    OCITransportError,
    PoolTimeout,
    ProtocolError,
    ProxyError,
    ReadError,
    ReadTimeout,
    RequestCancelled,
    TimeoutError,
    TLSError,
    UnsupportedProtocol,
    WriteError,
    WriteTimeout,
)

#: ``(our type, requests name, urllib3 name (mid-body), httpx name)``; the first matching row wins.
#: The last row catches every other error of ours (registry-layer errors such as a failed token fetch).
_Row = tuple[type[BaseException], str, str, str]
TABLE: tuple[_Row, ...] = (
    (ConnectTimeout, "ConnectTimeout", "ReadTimeoutError", "ConnectTimeout"),
    (WriteTimeout, "ReadTimeout", "ReadTimeoutError", "WriteTimeout"),
    (PoolTimeout, "ConnectionError", "ReadTimeoutError", "PoolTimeout"),
    (ReadTimeout, "ReadTimeout", "ReadTimeoutError", "ReadTimeout"),
    (TimeoutError, "ReadTimeout", "ReadTimeoutError", "ReadTimeout"),
    (TLSError, "SSLError", "SSLError", "ConnectError"),
    (ProxyError, "ProxyError", "ProtocolError", "ProxyError"),
    (ConnectError, "ConnectionError", "ProtocolError", "ConnectError"),
    (UnsupportedProtocol, "InvalidSchema", "ProtocolError", "UnsupportedProtocol"),
    (InvalidURL, "InvalidURL", "ProtocolError", "LocalProtocolError"),
    (ProtocolError, "ConnectionError", "ProtocolError", "RemoteProtocolError"),
    (ReadError, "ConnectionError", "ProtocolError", "ReadError"),
    (WriteError, "ConnectionError", "ProtocolError", "WriteError"),
    (RequestCancelled, "ConnectionError", "ProtocolError", "ReadError"),
    (ClientClosed, "ConnectionError", "ProtocolError", "TransportError"),
    (OCITransportError, "RequestException", "ProtocolError", "TransportError"),
)

def _row(exc: BaseException) -> _Row | None:
    for row in TABLE:
        if isinstance(exc, row[0]):
            return row
    return None


def is_mapped(exc: BaseException) -> bool:
    """Whether ``exc`` is one of ours (and so is translated; anything else propagates unchanged)."""
    return isinstance(exc, OCITransportError)


#: libcurl codes that can only mean the head arrived and the body broke (CURLE_PARTIAL_FILE: fewer
#: bytes than Content-Length). For a body the engine buffered, requests' stock adapter would have
#: raised ``ChunkedEncodingError`` while reading ``content``.
MID_BODY_CURL_CODES = frozenset({18})


#: libcurl's CURLE_WEIRD_SERVER_REPLY, which it also gives for conflicting ``Content-Length`` values.
WEIRD_SERVER_REPLY = 8

#: The words stock's read timeouts carry (urllib3's ``ReadTimeoutError``), prefixed to ours.
READ_TIMED_OUT = "Read timed out."


def to_requests(exc: BaseException, request: Any, via_proxy: bool = False) -> BaseException:
    """The ``requests.exceptions`` instance for ``exc`` (raised before a response), ``request=`` set.

    ``via_proxy``: the request went through a proxy, so a connection failure is requests'
    ``ProxyError`` (urllib3 reports every failure to reach or tunnel through a proxy as one).
    Not one of ours: returned unchanged.
    """
    row = _row(exc)
    if row is None:
        return exc
    import requests.exceptions as rex

    code = getattr(exc, "curl_code", None)
    if code in MID_BODY_CURL_CODES:
        name = "ChunkedEncodingError"
    elif code == WEIRD_SERVER_REPLY and "content-length" in str(exc).lower():
        name = "InvalidHeader"  # stock: urllib3's InvalidHeader for unmatching Content-Length values
    elif via_proxy and isinstance(exc, ConnectError) and not isinstance(exc, TLSError):
        name = "ProxyError"
    else:
        name = row[1]
    kind: type[rex.RequestException] = getattr(rex, name)
    if name == "ReadTimeout":
        # As stock: the first argument is urllib3's ReadTimeoutError ("... Read timed out. ...").
        new = kind(to_urllib3(exc, getattr(request, "url", None)), request=request)
    else:
        new = kind(exc, request=request)
    new.__cause__ = exc
    return new


def to_urllib3(exc: BaseException, url: str | None = None) -> BaseException:
    """The ``urllib3.exceptions`` instance a stock ``raw`` body would raise mid-stream for ``exc``.

    requests' ``Response.iter_content`` maps these onward (``ProtocolError`` to ``ChunkedEncodingError``,
    ``ReadTimeoutError`` to ``ConnectionError``, ``SSLError`` to ``SSLError``), as it does for stock.
    """
    row = _row(exc)
    if row is None:
        return exc
    import urllib3.exceptions as uex

    name = row[2]
    if name == "ReadTimeoutError":
        new: BaseException = uex.ReadTimeoutError(None, url, f"{READ_TIMED_OUT} ({exc})")  # type: ignore[arg-type]
    else:
        kind: type[BaseException] = getattr(uex, name)
        new = kind(str(exc), exc)
    new.__cause__ = exc
    return new


def to_httpx(exc: BaseException, request: Any) -> BaseException:
    """The ``httpx.TransportError`` instance for ``exc``, ``request=`` set. Not ours: unchanged."""
    row = _row(exc)
    if row is None:
        return exc
    import httpx

    # httpcore calls a body shorter than its Content-Length a protocol error, not a read error.
    name = "RemoteProtocolError" if getattr(exc, "curl_code", None) in MID_BODY_CURL_CODES else row[3]
    kind: type[httpx.TransportError] = getattr(httpx, name)
    new = kind(str(exc), request=request)
    new.__cause__ = exc
    return new


__all__ = ["MID_BODY_CURL_CODES", "TABLE", "is_mapped", "to_httpx", "to_requests", "to_urllib3"]
