"""One behavioural suite for requests, run against the stock ``HTTPAdapter`` and our ``RequestsAdapter``
on the same loopback servers: "drop-in" as a tested claim."""

from __future__ import annotations

import hashlib
import io
import json
import time

import pytest
import requests

from tests.adapters.conftest import GZIP_PLAIN
from tests.servers.faults import pattern


@pytest.mark.parametrize("code", [200, 201, 204, 301, 404, 418, 500, 503])
def test_status_codes(session: requests.Session, fault_server, code: int) -> None:
    r = session.get(fault_server.url_for(f"/status/{code}"), allow_redirects=False)
    assert r.status_code == code
    assert r.reason
    assert r.ok == (code < 400)


def test_headers_with_repeats(session: requests.Session, fault_server) -> None:
    r = session.get(fault_server.url_for("/status/200?header=X-Rep:one&header=X-Rep:two&header=X-One:1"))
    assert r.headers["x-rep"] == "one, two"
    assert r.headers["X-One"] == "1"
    assert r.raw.headers.getlist("X-Rep") == ["one", "two"]


def test_request_headers_sent_as_given(session: requests.Session, fault_server) -> None:
    r = session.get(fault_server.url_for("/echo"), headers={"X-Custom": "v", "User-Agent": "ua/1"})
    echoed = {k.lower(): v for k, v in r.json()["headers"]}
    assert echoed["x-custom"] == "v"
    assert echoed["user-agent"] == "ua/1"
    assert "expect" not in echoed
    assert echoed["accept"] == "*/*"  # requests' own default, nothing added or removed


def test_head(session: requests.Session, fault_server) -> None:
    r = session.head(fault_server.url_for("/bytes?n=1000"))
    assert r.status_code == 200
    assert r.headers["Content-Length"] == "1000"
    assert r.content == b""


def test_download_streaming(session: requests.Session, fault_server) -> None:
    n = 5 << 20
    r = session.get(fault_server.url_for(f"/bytes?n={n}"), stream=True)
    digest = hashlib.sha256()
    size = 0
    for chunk in r.iter_content(64 * 1024):
        digest.update(chunk)
        size += len(chunk)
    assert size == n
    assert digest.hexdigest() == hashlib.sha256(pattern(n)).hexdigest()


def test_download_chunked(session: requests.Session, fault_server) -> None:
    r = session.get(fault_server.url_for("/bytes?n=300000&chunked=1&chunk=7000"))
    assert r.content == pattern(300000)
    assert "Content-Length" not in r.headers


def test_raw_read(session: requests.Session, fault_server) -> None:
    r = session.get(fault_server.url_for("/bytes?n=100000"), stream=True)
    data = r.raw.read(1000)
    assert data == pattern(1000)
    rest = r.raw.read()
    assert data + rest == pattern(100000)


def test_early_close_then_reuse(session: requests.Session, fault_server) -> None:
    r = session.get(fault_server.url_for(f"/bytes?n={8 << 20}"), stream=True)
    next(r.iter_content(1024))
    r.close()
    assert session.get(fault_server.url_for("/bytes?n=10")).content == pattern(10)


def test_upload_bytes(session: requests.Session, fault_server) -> None:
    body = pattern(200000)
    r = session.put(fault_server.url_for("/drain"), data=body)
    assert r.json() == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_upload_file(session: requests.Session, fault_server) -> None:
    body = pattern(300000)
    r = session.post(fault_server.url_for("/drain"), data=io.BytesIO(body))
    assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()
    assert fault_server.requests_to("/drain")[-1].header("content-length") == str(len(body))


def test_upload_generator_is_chunked(session: requests.Session, fault_server) -> None:
    parts = [pattern(1000, i * 1000) for i in range(50)]
    r = session.post(fault_server.url_for("/drain"), data=iter(parts))
    assert r.json()["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
    assert fault_server.requests_to("/drain")[-1].header("transfer-encoding") == "chunked"


def test_upload_str_and_form(session: requests.Session, fault_server) -> None:
    r = session.post(fault_server.url_for("/echo"), data={"a": "b"})
    assert r.json()["body_length"] == 3
    r = session.post(fault_server.url_for("/echo"), data="héllo")
    assert r.json()["body_length"] == len("héllo".encode())


def test_redirect_followed_by_requests(session: requests.Session, fault_server) -> None:
    r = session.get(fault_server.url_for("/redirect?to=/bytes%3Fn%3D5&code=302"))
    assert r.status_code == 200
    assert [h.status_code for h in r.history] == [302]
    assert r.content == pattern(5)
    r = session.get(fault_server.url_for("/redirect?to=/echo&code=302"), allow_redirects=False)
    assert r.status_code == 302
    assert r.is_redirect


def test_redirect_307_resends_body(session: requests.Session, fault_server) -> None:
    r = session.post(fault_server.url_for("/redirect?to=/drain&code=307"), data=b"x" * 100)
    assert r.json()["length"] == 100


def test_cookies_persist(session: requests.Session, fault_server) -> None:
    session.get(fault_server.url_for("/cookie?name=sid&value=abc"))
    assert session.cookies.get("sid") == "abc"
    r = session.get(fault_server.url_for("/cookie?name=other&value=1"))
    assert "sid=abc" in r.text


def test_gzip_decoded_once(session: requests.Session, gzip_url: str) -> None:
    r = session.get(gzip_url)
    assert r.headers["Content-Encoding"] == "gzip"
    assert r.content == GZIP_PLAIN
    streamed = b"".join(session.get(gzip_url, stream=True).iter_content(100))
    assert streamed == GZIP_PLAIN
    raw = session.get(gzip_url, stream=True).raw.read(decode_content=False)
    assert raw[:2] == b"\x1f\x8b"


def test_read_timeout(session: requests.Session, fault_server) -> None:
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout) as info:
        session.get(fault_server.url_for("/delay?seconds=5"), timeout=(3, 1))
    assert time.monotonic() - started < 4.5
    assert info.value.request is not None


def test_read_timeout_mid_body(session: requests.Session, fault_server) -> None:
    r = session.get(fault_server.url_for("/stall?after=1000&seconds=5"), stream=True, timeout=(3, 1))
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):
        b"".join(r.iter_content(100))
    assert time.monotonic() - started < 4


def test_connection_refused(session: requests.Session) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(requests.exceptions.ConnectionError) as info:
        session.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert info.value.request is not None
    assert not isinstance(info.value, requests.exceptions.Timeout)


def test_reset_before_response(session: requests.Session, fault_server) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(fault_server.url_for("/reset?when=before"), timeout=5)


def test_truncated_body(session: requests.Session, fault_server) -> None:
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        session.get(fault_server.url_for("/truncate?length=1000&send=10"), timeout=5)


def test_truncated_body_streaming(session: requests.Session, fault_server) -> None:
    r = session.get(fault_server.url_for("/truncate?length=100000&send=10"), stream=True, timeout=5)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        b"".join(r.iter_content(100))


def test_reset_mid_body_streaming(session: requests.Session, fault_server) -> None:
    r = session.get(fault_server.url_for("/reset?when=mid&after=5000"), stream=True, timeout=5)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        b"".join(r.iter_content(100))


def test_invalid_schema(session: requests.Session) -> None:
    with pytest.raises(requests.exceptions.InvalidSchema):
        session.get("ftp://127.0.0.1/x")


def test_tls_custom_ca(session: requests.Session, tls_registry) -> None:
    r = session.get(f"{tls_registry.url}/v2/", verify=str(tls_registry.ca_file))
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_tls_custom_ca_pathlike(session: requests.Session, tls_registry) -> None:
    r = session.get(f"{tls_registry.url}/v2/", verify=tls_registry.ca_file)
    assert r.status_code == 200


def test_tls_untrusted(session: requests.Session, tls_registry) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        session.get(f"{tls_registry.url}/v2/", timeout=10)


def test_tls_no_verify(session: requests.Session, tls_registry) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert session.get(f"{tls_registry.url}/v2/", verify=False).status_code == 200


def test_json_and_encoding(session: requests.Session, fault_server) -> None:
    r = session.get(fault_server.url_for("/echo?x=1"))
    assert r.encoding == "utf-8" or r.headers["Content-Type"].startswith("application/json")
    assert json.loads(r.text)["query"] == {"x": ["1"]}


def test_response_shape(session: requests.Session, fault_server) -> None:
    url = fault_server.url_for("/bytes?n=3")
    r = session.get(url)
    assert r.url == url
    assert r.request.url == url
    assert r.connection is session.get_adapter(url)
    assert r.elapsed.total_seconds() >= 0
    assert r.raw._original_response is not None


def test_stall_after_head_on_reused_connection(session: requests.Session, fault_server, kind: str,
                                               request: pytest.FixtureRequest) -> None:
    if kind == "ours":
        request.applymarker(pytest.mark.xfail(strict=True, raises=requests.exceptions.ReadTimeout, reason=(
            "deliberate: with stream=False the adapter reads the body itself, so a stall after the "
            "head is requests' ReadTimeout (a Timeout) raised by send(); stock returns the head and "
            "its Session-side body read turns urllib3's ReadTimeoutError into ConnectionError. Both "
            "are RequestException; ours names the timeout. Not ConnectTimeout either way")))
    assert session.get(fault_server.url_for("/bytes?n=10")).status_code == 200  # pools the connection
    with pytest.raises(requests.exceptions.ConnectionError) as info:
        session.get(fault_server.url_for("/stall?after=0&seconds=4"), timeout=(3, 1))
    assert not isinstance(info.value, requests.exceptions.ConnectTimeout)


def test_head_cut_by_the_close(session: requests.Session, raw_reply) -> None:
    """A connection closed inside the head (no blank line): an error, never an empty 200."""
    from tests.adapters.conftest import CUT_HEAD

    server = raw_reply(CUT_HEAD)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        session.get(server.url)


def test_stream_readable_after_the_session_closed(kind: str, fault_server) -> None:
    """``with Session() as s: r = s.get(u, stream=True)``, then reading ``r`` after the block."""
    from ocitransport.adapters.requests import RequestsAdapter

    n = 300_000
    with requests.Session() as s:
        if kind == "ours":
            s.mount("http://", RequestsAdapter())
        r = s.get(fault_server.url_for(f"/bytes?n={n}"), stream=True)
    assert r.content == pattern(n)


def test_raw_read_after_the_body_was_consumed(session: requests.Session, fault_server) -> None:
    r = session.get(fault_server.url_for("/bytes?n=100"))
    assert r.content == pattern(100)
    assert r.raw.read() == b""
    r = session.get(fault_server.url_for("/bytes?n=100"), stream=True)
    assert r.content == pattern(100)
    assert r.raw.read() == b""


def test_refused_proxy_is_proxy_error(session: requests.Session, fault_server) -> None:
    from tests.servers.process import free_port

    proxy = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(requests.exceptions.ProxyError):
        session.get(fault_server.url_for("/bytes?n=1"), proxies={"http": proxy})


@pytest.mark.parametrize("proxy", ["http:///nohost", "http://:8080"])
def test_malformed_proxy_url(session: requests.Session, fault_server, proxy: str) -> None:
    with pytest.raises(requests.exceptions.InvalidProxyURL):
        session.get(fault_server.url_for("/bytes?n=1"), proxies={"http": proxy})


def test_session_with_the_adapter_pickles(session: requests.Session, fault_server) -> None:
    import pickle

    assert session.get(fault_server.url_for("/bytes?n=5")).content == pattern(5)
    with pickle.loads(pickle.dumps(session)) as copy:
        assert type(copy.get_adapter("http://x/")) is type(session.get_adapter("http://x/"))
        assert copy.get(fault_server.url_for("/bytes?n=7")).content == pattern(7)


def test_conflicting_content_lengths_are_invalid_header(session: requests.Session, raw_reply) -> None:
    server = raw_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 20\r\n\r\n0123456789")
    with pytest.raises(requests.exceptions.InvalidHeader):
        session.get(server.url)


@pytest.mark.parametrize("timeout", ["3", 0, -1, True, (1, "2"), (0, 1)])
def test_timeout_values_are_validated(session: requests.Session, fault_server, timeout: object) -> None:
    with pytest.raises(ValueError, match="Timeout|timeout"):
        session.get(fault_server.url_for("/bytes?n=1"), timeout=timeout)
    assert session.get(fault_server.url_for("/bytes?n=1"), timeout=(2, 3.5)).status_code == 200


def test_read_timeout_message(session: requests.Session, fault_server) -> None:
    with pytest.raises(requests.exceptions.ReadTimeout, match="Read timed out") as info:
        session.get(fault_server.url_for("/delay?seconds=3"), timeout=(3, 1))
    assert "Read timed out" in info.value.args[0].args[0]  # urllib3's ReadTimeoutError, as stock


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"verify": "/garbage"}, "Could not find a suitable TLS CA certificate bundle, invalid path: /garbage"),
    ({"cert": "/garbage"}, "Could not find the TLS certificate file, invalid path: /garbage"),
    ({"cert": (".", "/garbage")}, "Could not find the TLS key file, invalid path: /garbage"),
])
def test_missing_tls_files_are_os_errors(session: requests.Session, tls_registry, kwargs: dict,
                                         message: str) -> None:
    with pytest.raises(OSError) as info:
        session.get(f"{tls_registry.url}/v2/", **kwargs)
    assert str(info.value) == message
