"""Security proofs where the receiving server records what it got: the registry's credentials and
tokens never reach another host (blob redirects, upload Locations, token realms), and a registry that
is not local never falls back from HTTPS to plain HTTP. The redirect and realm rules of the transport
layer itself are proved in tests/transport and tests/test_redirects.py; these go through the mirror's
Session, as a mirror run does."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from ocitransport import transport
from ocitransport.authn import Authenticator, Basic
from ocitransport.client import Client
from ocitransport.exceptions import OCITransportError
from ocitransport.messages import Request, Response
from ocitransport.mirror import MirrorError
from ocitransport.mirror.session import Session
from ocitransport.name import Registry, Repository
from ocitransport.roundtrip import RoundTripper
from tests.servers.faults import FaultServer, Step

PASSWORD = "s3cret-Pa55word"
TOKEN = "tok-" + "Q" * 40
BLOB = b"layer bytes"
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


class _Keychain:
    """Basic credentials for every registry (a Keychain: ``resolve(target)``)."""

    def resolve(self, target: object) -> Authenticator:
        return Basic("alice", PASSWORD)


@pytest.fixture
def other() -> Iterator[FaultServer]:
    """A second recording server on another port of 127.0.0.1."""
    with FaultServer() as server:
        yield server


def _bearer_registry(server: FaultServer, pings: int = 2) -> None:
    """The fault server as a Bearer registry whose token endpoint is on itself."""
    realm = server.url_for("/token")
    server.script([Step(401, [("WWW-Authenticate", f'Bearer realm="{realm}",service="hostile"')])] * pings,
                  path="/v2/")
    server.script([Step(200, [("Content-Type", "application/json")],
                        json.dumps({"token": TOKEN, "expires_in": 300}).encode())] * pings, path="/token")


def _secrets_absent(server: FaultServer) -> None:
    for request in server.requests:
        names = {k.lower() for k, _ in request.headers}
        assert not names & {"authorization", "cookie", "proxy-authorization"}, request
        text = json.dumps([request.target, request.headers]) + request.body.decode("latin-1")
        assert PASSWORD not in text and TOKEN not in text


def _run(server: FaultServer, work):  # type: ignore[no-untyped-def]
    repo = Repository(f"{server.host}/hostile/repo")

    async def main():  # type: ignore[no-untyped-def]
        with Client() as client:
            return await work(Session(client, _Keychain(), retries=0), repo)

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_blob_redirect_to_another_port_carries_no_credentials(fault_server: FaultServer, other: FaultServer) -> None:
    _bearer_registry(fault_server)
    fault_server.script([Step(307, [("Location", other.url_for("/bytes?n=11"))])],
                        path=f"/v2/hostile/repo/blobs/{DIGEST}")

    async def work(session: Session, repo: Repository) -> int:
        rt = await session.pull(repo)
        response = await session.open_blob(rt, repo, DIGEST)
        body = await response.aread()
        return len(body)

    assert _run(fault_server, work) == 11
    sent = fault_server.requests_to(f"/v2/hostile/repo/blobs/{DIGEST}")
    assert [r.header("authorization") for r in sent] == [f"Bearer {TOKEN}"]  # the registry did get it
    assert len(other.requests) == 1
    _secrets_absent(other)


def test_upload_location_on_another_host_gets_no_credentials(fault_server: FaultServer, other: FaultServer) -> None:
    # "localhost" is another host than 127.0.0.1 (a DNS name, so not refused by the SSRF guard).
    _bearer_registry(fault_server)
    fault_server.script([Step(202, [("Location", f"http://localhost:{other.port}/drain?upload=1")])],
                        path="/v2/hostile/repo/blobs/uploads/")

    async def blob():  # type: ignore[no-untyped-def]
        yield BLOB

    async def work(session: Session, repo: Repository) -> None:
        rt = await session.push(repo)
        location = await session.start_upload(rt, repo)
        assert location is not None and location.startswith(f"http://localhost:{other.port}/")
        with pytest.raises(transport.Error):  # the recording server answers 200, not 201
            await session.finish_upload(rt, location, DIGEST, len(BLOB), blob())

    _run(fault_server, work)
    [put] = other.requests
    assert put.method == "PUT" and put.body == BLOB and put.query["digest"] == [DIGEST]
    _secrets_absent(other)
    assert fault_server.requests_to("/v2/hostile/repo/blobs/uploads/")[0].header("authorization") == f"Bearer {TOKEN}"


def test_upload_location_on_a_private_address_is_refused(fault_server: FaultServer) -> None:
    with FaultServer(host="127.0.0.2") as private:
        _bearer_registry(fault_server)
        fault_server.script([Step(202, [("Location", private.url_for("/drain"))])],
                            path="/v2/hostile/repo/blobs/uploads/")

        async def work(session: Session, repo: Repository) -> None:
            rt = await session.push(repo)
            with pytest.raises(MirrorError, match="SSRF protection: Location header redirects to private"):
                await session.start_upload(rt, repo)

        _run(fault_server, work)
        assert private.requests == []


def test_token_realm_on_a_private_address_is_refused(fault_server: FaultServer, client: Client) -> None:
    with FaultServer(host="127.0.0.2") as private:
        fault_server.script([Step(401, [("WWW-Authenticate",
                                         f'Bearer realm="{private.url_for("/token")}",service="x"')])], path="/v2/")
        with pytest.raises(transport.TokenError, match="private or link-local"):
            transport.new(fault_server.host, Basic("alice", PASSWORD), client, ["repository:a:pull"])
        assert private.requests == []


# ------------------------------------------------------------------------------------------ no downgrade

class _ToLocal(RoundTripper):
    """Sends every request to the fault server (same scheme, path and query) and records the scheme and
    host the layers above asked for: a registry name that is not local can then be pinged for real."""

    def __init__(self, inner: Client, server: FaultServer) -> None:
        self.inner, self.server, self.asked = inner, server, []  # type: list[tuple[str, str]]

    def round_trip(self, request: Request) -> Response:
        parts = urlsplit(request.url)
        self.asked.append((parts.scheme, parts.netloc))
        return self.inner.round_trip(request.copy(url=urlunsplit(parts._replace(netloc=self.server.host))))


@pytest.mark.parametrize("name", ["registry.example.com", "registry.example.com:5000", "8.8.8.8:5000",
                                  "localhost.example.com", "127.0.0.1.nip.io:5000"])
def test_https_registry_never_falls_back_to_http(fault_server: FaultServer, client: Client, name: str) -> None:
    # The fault server speaks plain HTTP, so the TLS handshake fails: a non-local name must stop there.
    assert not Registry(name).allows_http_fallback
    via = _ToLocal(client, fault_server)
    with pytest.raises(OCITransportError):
        transport.ping(Registry(name), via)
    assert [scheme for scheme, _ in via.asked] == ["https"]
    assert fault_server.requests == []  # no plain-HTTP request was ever read


@pytest.mark.parametrize("name", ["localhost:5000", "127.0.0.1:5000", "[::1]:5000", "10.1.2.3:5000"])
def test_local_registry_falls_back_to_http_by_design(fault_server: FaultServer, client: Client, name: str) -> None:
    fault_server.alias("/v2/", "/status/200")
    via = _ToLocal(client, fault_server)
    challenge = transport.ping(Registry(name), via)
    assert challenge.insecure
    assert [scheme for scheme, _ in via.asked] == ["https", "http"]


# -- blob HEADs as registries on object storage answer them ---------------------------------------------

_SIGNED = "X-Amz-Credential=AKIAHOSTILEKEY%2F20240101&X-Amz-Signature=5ec7e75160a75e"


def test_blob_head_redirect_refused_by_storage_is_confirmed_with_a_ranged_get(fault_server: FaultServer,
                                                                            other: FaultServer) -> None:
    """GHCR-like: the blob HEAD is a 307 to a URL presigned for GET, where HEAD gets 403. A ranged GET
    decides, and neither request to storage carries the registry's credentials."""
    _bearer_registry(fault_server)
    storage = f"/data?{_SIGNED}"
    fault_server.script([Step(307, [("Location", other.url_for(storage))])] * 2,
                        path=f"/v2/hostile/repo/blobs/{DIGEST}")
    other.script([Step(403), Step(206, [("Content-Range", f"bytes 0-0/{len(BLOB)}")], BLOB[:1])], path="/data")

    async def work(session: Session, repo: Repository) -> bool:
        return await session.blob_exists(await session.push(repo), repo, DIGEST)

    assert _run(fault_server, work) is True
    assert [(r.method, r.header("range")) for r in other.requests] == [("HEAD", None), ("GET", "bytes=0-0")]
    _secrets_absent(other)


@pytest.mark.parametrize("confirm, expected", [(206, True), (404, False)])
def test_blob_head_401_is_confirmed_with_a_ranged_get(fault_server: FaultServer, confirm: int,
                                                      expected: bool) -> None:
    """ECR Public answers 401 to blob HEADs, with a token that pulls the blob fine."""
    _bearer_registry(fault_server)
    fault_server.script([Step(401), Step(confirm, [("Content-Range", "bytes 0-0/11")] if confirm == 206
                                                 else [], BLOB[:1] if confirm == 206 else b"")],
                        path=f"/v2/hostile/repo/blobs/{DIGEST}")

    async def work(session: Session, repo: Repository) -> bool:
        return await session.blob_exists(await session.push(repo), repo, DIGEST)

    assert _run(fault_server, work) is expected
    sent = fault_server.requests_to(f"/v2/hostile/repo/blobs/{DIGEST}")
    assert [(r.method, r.header("range")) for r in sent] == [("HEAD", None), ("GET", "bytes=0-0")]


def test_storage_error_body_and_signed_location_stay_out_of_errors(fault_server: FaultServer,
                                                                   other: FaultServer) -> None:
    """S3's error document repeats the presigned request (access key, signature): the error names the
    registry's request and the storage's error code, never them."""
    _bearer_registry(fault_server)
    fault_server.script([Step(307, [("Location", other.url_for(f"/data?{_SIGNED}"))])],
                        path=f"/v2/hostile/repo/blobs/{DIGEST}")
    body = (b"<?xml version='1.0'?><Error><Code>SignatureDoesNotMatch</Code><AWSAccessKeyId>AKIAHOSTILEKEY"
            b"</AWSAccessKeyId><SignatureProvided>5ec7e75160a75e</SignatureProvided></Error>")
    other.script([Step(403, [("Content-Type", "application/xml")], body)], path="/data")

    async def work(session: Session, repo: Repository) -> str:
        with pytest.raises(transport.Error) as caught:
            await session.open_blob(await session.pull(repo), repo, DIGEST)
        assert caught.value.status_code == 403
        return str(caught.value)

    message = _run(fault_server, work)
    assert message.startswith(f"GET {fault_server.url_for(f'/v2/hostile/repo/blobs/{DIGEST}')}: unexpected status "
                              f"code 403 Forbidden: from storage {other.url_for('/data')}?X-Amz-Credential=REDACTED"
                              "&X-Amz-Signature=REDACTED: SignatureDoesNotMatch"), message
    assert "AKIAHOSTILEKEY" not in message and "5ec7e75160a75e" not in message
