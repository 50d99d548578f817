"""Fixtures for the adapter conformance suites: stock vs ours, on the same local servers."""

from __future__ import annotations

import gzip
import http.server
import socket
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


class RawReplyServer:
    """A loopback socket server that answers every connection with fixed bytes, then closes it (FIN):
    answers no real server sends, such as a head cut off before its blank line. ``url`` is its address."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.settimeout(5)
                    data = b""
                    while b"\r\n\r\n" not in data and len(data) < 65536:
                        more = conn.recv(4096)
                        if not more:
                            break
                        data += more
                    conn.sendall(self.reply)
                    conn.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


#: A head cut by the close before its blank line (a server that died mid-head).
CUT_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n"


@pytest.fixture
def raw_reply() -> Iterator[Callable[[bytes], RawReplyServer]]:
    """Start :class:`RawReplyServer`s answering the given bytes; all stopped after the test."""
    made: list[RawReplyServer] = []

    def make(reply: bytes) -> RawReplyServer:
        made.append(RawReplyServer(reply))
        return made[-1]

    yield make
    for server in made:
        server.stop()


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
