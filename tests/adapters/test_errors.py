"""The one error table: every exception of ours maps to the host library's type, request attached."""

from __future__ import annotations

import httpx
import pytest
import requests
import urllib3

from ocitransport import exceptions as ox
from ocitransport.adapters import _errors
from ocitransport.transport import Error

CASES = [
    (ox.ConnectTimeout, requests.exceptions.ConnectTimeout, httpx.ConnectTimeout),
    (ox.ReadTimeout, requests.exceptions.ReadTimeout, httpx.ReadTimeout),
    (ox.WriteTimeout, requests.exceptions.ReadTimeout, httpx.WriteTimeout),
    (ox.PoolTimeout, requests.exceptions.ConnectionError, httpx.PoolTimeout),
    (ox.TLSError, requests.exceptions.SSLError, httpx.ConnectError),
    (ox.ProxyError, requests.exceptions.ProxyError, httpx.ProxyError),
    (ox.ConnectError, requests.exceptions.ConnectionError, httpx.ConnectError),
    (ox.UnsupportedProtocol, requests.exceptions.InvalidSchema, httpx.UnsupportedProtocol),
    (ox.InvalidURL, requests.exceptions.InvalidURL, httpx.LocalProtocolError),
    (ox.ProtocolError, requests.exceptions.ConnectionError, httpx.RemoteProtocolError),
    (ox.ReadError, requests.exceptions.ConnectionError, httpx.ReadError),
    (ox.WriteError, requests.exceptions.ConnectionError, httpx.WriteError),
    (ox.RequestCancelled, requests.exceptions.ConnectionError, httpx.ReadError),
]


@pytest.mark.parametrize(("ours", "req_type", "httpx_type"), CASES, ids=[c[0].__name__ for c in CASES])
def test_table(ours: type[ox.TransportError], req_type: type, httpx_type: type) -> None:
    exc = ours("GET http://r.example/: boom", url="http://r.example/")
    prepared = requests.Request("GET", "http://r.example/").prepare()
    mapped = _errors.to_requests(exc, prepared)
    assert type(mapped) is req_type
    assert mapped.request is prepared
    assert mapped.__cause__ is exc
    hreq = httpx.Request("GET", "http://r.example/")
    hmapped = _errors.to_httpx(exc, hreq)
    assert type(hmapped) is httpx_type
    assert hmapped.request is hreq
    assert isinstance(hmapped, httpx.TransportError)


def test_mid_body_curl_code() -> None:
    exc = ox.ReadError("partial", curl_code=18)
    assert type(_errors.to_requests(exc, None)) is requests.exceptions.ChunkedEncodingError
    assert type(_errors.to_httpx(exc, httpx.Request("GET", "http://x/"))) is httpx.RemoteProtocolError


def test_urllib3_column() -> None:
    assert isinstance(_errors.to_urllib3(ox.ReadTimeout("t")), urllib3.exceptions.ReadTimeoutError)
    assert isinstance(_errors.to_urllib3(ox.TLSError("t")), urllib3.exceptions.SSLError)
    assert isinstance(_errors.to_urllib3(ox.ReadError("t")), urllib3.exceptions.ProtocolError)


def test_registry_errors_and_foreign_errors() -> None:
    exc = Error([], status_code=500) if _accepts_error() else ox.OCITransportError("x")
    assert isinstance(_errors.to_requests(exc, None), requests.exceptions.RequestException)
    assert type(_errors.to_httpx(ox.ClientClosed("closed"), None)) is httpx.TransportError
    foreign = ValueError("not ours")
    assert _errors.to_requests(foreign, None) is foreign
    assert _errors.to_httpx(foreign, None) is foreign


def _accepts_error() -> bool:
    try:
        Error([], status_code=500)
    except TypeError:
        return False
    return True
