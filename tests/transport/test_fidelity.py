"""Behaviours ported from go-containerregistry (pkg/v1/remote/transport ping.go, bearer.go, logger.go)
that we once did differently, against real servers on loopback. Deliberate differences that remain are
in docs/deviations.md."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import ocitransport
from ocitransport import authn, transport
from ocitransport.messages import Request
from ocitransport.transport import PULL_SCOPE, PingError
from tests.adapters.conftest import CUT_HEAD, RawReplyServer
from tests.servers.listener import SocketServer
from tests.servers.tls import server_certificate


class TwoFacedServer(SocketServer):
    """One loopback port that speaks both TLS and plain HTTP (the first byte says which: 0x16 starts a
    TLS handshake), answering each ``GET /v2/`` with its own scripted status and headers, then closing.
    A front end that answers HTTPS with a 404 or 500 while the registry listens in plain HTTP."""

    name = "two-faced"

    def __init__(self, context: ssl.SSLContext, https: tuple[int, list[tuple[str, str]]],
                 http: tuple[int, list[tuple[str, str]]]) -> None:
        super().__init__(idle_timeout=5.0)
        self.context = context
        self.answers = {"https": https, "http": http}
        self.seen: list[str] = []

    def _admit(self, sock: socket.socket) -> int | None:
        return 0

    def _serve(self, sock: socket.socket, number: int) -> None:
        try:
            first = sock.recv(1, socket.MSG_PEEK)
            scheme = "https" if first == b"\x16" else "http"
            conn: socket.socket = self.context.wrap_socket(sock, server_side=True) if scheme == "https" else sock
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            self.seen.append(scheme)
            status, headers = self.answers[scheme]
            body = b'{"errors":[{"code":"UNKNOWN","message":"front end"}]}' if status >= 300 else b"{}"
            lines = [f"HTTP/1.1 {status} X", "Content-Type: application/json", f"Content-Length: {len(body)}",
                     "Connection: close", *(f"{k}: {v}" for k, v in headers)]
            conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        except (OSError, ssl.SSLError):
            return


@pytest.fixture
def certs(tmp_path: Path) -> tuple[ssl.SSLContext, str]:
    _ca, files = server_certificate(tmp_path / "tls")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(files.cert_file), str(files.key_file))
    return context, str(files.ca_file)


def _serve(certs: tuple[ssl.SSLContext, str], https: tuple[int, list[tuple[str, str]]],
           http: tuple[int, list[tuple[str, str]]]) -> Iterator[tuple[TwoFacedServer, ocitransport.Client]]:
    server = TwoFacedServer(certs[0], https, http).start()
    try:
        with ocitransport.Client(verify=certs[1]) as client:
            yield server, client
    finally:
        server.stop()


class TestPingFallsBackOnAnyHTTPSError:
    """ping.go pingParallel: an HTTPS answer other than 200/401 is that scheme's error, and plain HTTP
    is still tried where it is allowed (loopback here)."""

    @pytest.mark.parametrize("status", [500, 404])
    def test_https_error_then_http_registry(self, certs, status: int) -> None:
        for server, client in _serve(certs, (status, []), (200, [])):
            host = f"127.0.0.1:{server.port}"
            ch = transport.ping(host, client)
            assert (ch.scheme, ch.insecure) == ("", True)
            assert server.seen == ["https", "http"]
            rt = transport.new(host, authn.Anonymous, client, [])  # new() no longer fails either
            assert isinstance(rt, transport.Wrapper)

    def test_https_error_then_http_challenge(self, certs) -> None:
        challenge = 'Bearer realm="http://127.0.0.1:1/token",service="s"'
        for server, client in _serve(certs, (500, []), (401, [("WWW-Authenticate", challenge)])):
            ch = transport.ping(f"127.0.0.1:{server.port}", client)
            assert (ch.scheme, ch.parameters["service"], ch.insecure) == ("bearer", "s", True)

    def test_both_schemes_failing_name_both(self, certs) -> None:
        for server, client in _serve(certs, (500, []), (404, [])):
            with pytest.raises(PingError) as info:
                transport.ping(f"127.0.0.1:{server.port}", client)
            assert [e.status_code for e in info.value.errors] == [500, 404]  # type: ignore[attr-defined]
            assert str(info.value).startswith(f"ping 127.0.0.1:{server.port}: ")


def test_exchange_asks_the_realm_for_a_registry_token(bearer_registry, repo_name: str) -> None:
    """bearer.go Exchange: always a network exchange, even for a credential holding a registry token;
    that token goes to the realm as ``Authorization: Bearer`` and the realm's token comes back."""
    ts = bearer_registry.token_server
    with ocitransport.Client() as client:
        ch = transport.ping(bearer_registry.host, client)
        tok = transport.exchange(bearer_registry.host, authn.Bearer("opaque-registry-token"), client,
                                 [f"repository:{repo_name}:{PULL_SCOPE}"], ch)
    seen = ts.requests_snapshot()
    assert len(seen) == 1 and seen[0].has_credentials
    assert seen[0].scopes == (f"repository:{repo_name}:pull",)
    assert tok.value and tok.value != "opaque-registry-token"


def test_logger_error_line_has_the_redacted_message(fault_server, caplog) -> None:
    """logger.go prints the error itself; ours names its type and its message, URLs redacted."""
    url = fault_server.url_for("/reset?when=headers&_state=s3cr3t-state")
    with ocitransport.Client() as client, caplog.at_level(logging.DEBUG, logger="ocitransport.transport"):
        rt = transport.new_logger(client)
        with pytest.raises(ocitransport.exceptions.TransportError) as info:
            rt.round_trip(Request("GET", url))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("<-- ")]
    assert len(lines) == 1
    name = type(info.value).__name__
    assert lines[0].startswith(f"<-- {name}: ")
    message = lines[0][len(f"<-- {name}: "):].split(" GET ")[0]
    assert len(message) > 3  # the error's own words, not just its type
    assert "s3cr3t" not in lines[0]


@pytest.fixture
def raw_reply() -> Iterator[Callable[[bytes], RawReplyServer]]:
    made: list[RawReplyServer] = []

    def make(reply: bytes) -> RawReplyServer:
        made.append(RawReplyServer(reply))
        return made[-1]

    yield make
    for server in made:
        server.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_client_refuses_a_head_cut_by_the_close(raw_reply, stream: bool) -> None:
    """libcurl 8.x completes a transfer whose connection closed inside the head; the engine raises
    (and so the Client, the adapters and the mirror all do) instead of returning an empty 200."""
    server = raw_reply(CUT_HEAD)
    with ocitransport.Client() as client:
        with pytest.raises(ocitransport.exceptions.ProtocolError,
                           match="connection closed before the end of the response head"):
            client.round_trip(Request("GET", server.url, stream=stream))
        # An interim head then a cut final one is cut too; a whole head still passes.
        server2 = raw_reply(b"HTTP/1.1 100 Continue\r\n\r\n" + CUT_HEAD)
        with pytest.raises(ocitransport.exceptions.ProtocolError):
            client.round_trip(Request("GET", server2.url, stream=stream))
        whole = raw_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        r = client.round_trip(Request("GET", whole.url, stream=stream))
        assert r.status == 200 and r.read() == b"ok"
