"""Fixtures for the adapter conformance suites: stock vs ours, on the same local servers."""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Callable, Iterator

import pytest

#: The body the gzip server compresses (compressible, so the wire size differs from it).
GZIP_PLAIN = b"ocitransport gzip body " * 400


class _GzipHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        data = gzip.compress(GZIP_PLAIN)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gzip_url() -> Iterator[str]:
    """A loopback server answering every GET with a gzip-encoded body of :data:`GZIP_PLAIN`.

    (The fault server has no gzip endpoint and nginx_factory cannot add ``Content-Encoding``.)
    """
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GzipHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/gz"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(params=["stock", "ours"])
def kind(request: pytest.FixtureRequest) -> str:
    """Which transport a conformance test runs against."""
    return str(request.param)


@pytest.fixture
def session(kind: str) -> Iterator[object]:
    """A ``requests.Session`` with the stock ``HTTPAdapter`` or our ``RequestsAdapter`` mounted."""
    import requests

    from ocitransport.adapters.requests import RequestsAdapter

    s = requests.Session()
    if kind == "ours":
        adapter = RequestsAdapter()
        s.mount("http://", adapter)
        s.mount("https://", adapter)
    with s:
        yield s


@pytest.fixture
def make_httpx(kind: str) -> Iterator[Callable[..., object]]:
    """Build ``httpx.Client``s over ``httpx.HTTPTransport`` or our ``HTTPXTransport``; all closed after."""
    import httpx

    from ocitransport.adapters.httpx import HTTPXTransport

    made: list[httpx.Client] = []

    def make(verify: object = True, **client_kwargs: object) -> httpx.Client:
        if kind == "ours":
            transport: httpx.BaseTransport = HTTPXTransport(verify=verify)  # type: ignore[arg-type]
        else:
            if verify not in (True, False):
                import ssl

                verify = ssl.create_default_context(cafile=str(verify))
            transport = httpx.HTTPTransport(verify=verify)  # type: ignore[arg-type]
        client = httpx.Client(transport=transport, **client_kwargs)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
