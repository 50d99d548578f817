"""Oversized answers are cut at documented limits with a typed error, against the real fault server:
a 50 MiB error body, 10 MiB of response headers, manifests over the limits, and endless chunked bodies
where a manifest, a tag list or a token is expected. Each test is bounded in time by the limit itself."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from ocitransport import transport
from ocitransport.authn import Anonymous, MultiKeychain
from ocitransport.client import Client
from ocitransport.engine import MAX_RESPONSE_HEAD
from ocitransport.exceptions import BodyTooLarge, ProtocolError
from ocitransport.mirror.manifests import MAX_MANIFEST_PUSH, MAX_MANIFEST_READ, OCI_MANIFEST, ManifestError
from ocitransport.mirror.session import Session
from ocitransport.mirror.tags import MAX_TAG_LIST_BODY
from ocitransport.name import Registry, Repository
from tests.servers.faults import FaultServer, Step

MIB = 1 << 20


def _registry(server: FaultServer) -> None:
    """Make the fault server answer the ping like an open registry."""
    server.alias("/v2/", "/status/200")


def _session_call(server: FaultServer, call: str, *args: object) -> object:
    """Run one Session operation against the fault server (anonymous, no retries)."""
    repo = Repository(f"{server.host}/hostile/repo")

    async def run() -> object:
        with Client() as client:
            session = Session(client, MultiKeychain(), retries=0)
            rt = await session.pull(repo)
            return await getattr(session, call)(rt, repo, *args)

    return asyncio.run(asyncio.wait_for(run(), 60))


# ------------------------------------------------------------------------------------------ error bodies

def test_50_mib_error_body_is_cut_at_64_kib(fault_server: FaultServer, client: Client) -> None:
    start = time.monotonic()
    response = client.request("GET", fault_server.url_for(f"/flood?status=500&n={50 * MIB}"), stream=True)
    assert response.status == 500
    with pytest.raises(BodyTooLarge) as info:
        transport.check_error(response, 200)
    assert info.value.limit == transport.MAX_ERROR_BODY == 64 * 1024
    assert str(info.value) == "body exceeds 65536 byte limit"
    assert time.monotonic() - start < 10


def test_50_mib_error_body_on_the_ping(fault_server: FaultServer, client: Client) -> None:
    fault_server.alias("/v2/", f"/flood?status=500&n={50 * MIB}")
    start = time.monotonic()
    with pytest.raises(BodyTooLarge, match="error body exceeds 65536 byte limit"):
        transport.ping(Registry(fault_server.host), client)
    assert time.monotonic() - start < 10


def test_50_mib_error_body_on_a_manifest(fault_server: FaultServer) -> None:
    _registry(fault_server)
    fault_server.alias("/v2/hostile/repo/manifests/v1", f"/flood?status=404&n={50 * MIB}")
    with pytest.raises(BodyTooLarge, match="error body exceeds 65536 byte limit"):
        _session_call(fault_server, "get_manifest", "v1")


# ------------------------------------------------------------------------------------------ heads

@pytest.mark.parametrize("query", ["/headers?n=640&size=16384", "/headers?n=1&size=200000"])
@pytest.mark.parametrize("stream", [False, True])
def test_10_mib_of_headers_is_a_protocol_error(fault_server: FaultServer, client: Client, query: str,
                                               stream: bool) -> None:
    # 640 headers of 16 KiB (10 MiB in all), or one header line of 200 KB.
    start = time.monotonic()
    with pytest.raises(ProtocolError) as info:
        client.request("GET", fault_server.url_for(query), stream=stream)
    assert f"response head exceeds {MAX_RESPONSE_HEAD} bytes" in str(info.value)
    assert time.monotonic() - start < 10
    # The connection was not left in a state that hurts the next request.
    assert client.request("GET", fault_server.url_for("/bytes?n=10")).status == 200


def test_headers_under_the_limit_are_fine(fault_server: FaultServer, client: Client) -> None:
    response = client.request("GET", fault_server.url_for("/headers?n=100&size=2000"))
    assert response.status == 200 and len(response.headers.get_all("X-Fault-99")) == 1


# ------------------------------------------------------------------------------------------ manifests

@pytest.mark.parametrize("query", [f"/flood?n={MAX_MANIFEST_READ + MIB}&type={OCI_MANIFEST}",
                                   f"/flood?n=0&chunked=1&type={OCI_MANIFEST}"])
def test_oversized_or_endless_manifest_is_cut_at_the_read_limit(fault_server: FaultServer, query: str) -> None:
    _registry(fault_server)
    fault_server.alias("/v2/hostile/repo/manifests/v1", query)
    start = time.monotonic()
    with pytest.raises(BodyTooLarge) as info:
        _session_call(fault_server, "get_manifest", "v1")
    assert info.value.limit == MAX_MANIFEST_READ == 8 * MIB
    assert str(info.value) == f"manifest {fault_server.host}/hostile/repo:v1 exceeds {MAX_MANIFEST_READ} byte limit"
    assert time.monotonic() - start < 20


def test_manifest_between_push_and_read_limits_is_read_then_refused_on_push(fault_server: FaultServer) -> None:
    # A real manifest a little over 4 MiB (long annotations): read in full, then refused before the PUT.
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": "sha256:" + "a" * 64, "size": 2},
                "layers": [], "annotations": {"padding": "x" * (MAX_MANIFEST_PUSH + 1000)}}
    body = json.dumps(manifest).encode()
    assert MAX_MANIFEST_PUSH < len(body) < MAX_MANIFEST_READ
    _registry(fault_server)
    fault_server.script([Step(200, [("Content-Type", OCI_MANIFEST)], body)], path="/v2/hostile/repo/manifests/v1")
    got = _session_call(fault_server, "get_manifest", "v1")
    assert got.raw == body  # type: ignore[attr-defined]
    with pytest.raises(ManifestError, match=f"registries accept at most {MAX_MANIFEST_PUSH}"):
        _session_call(fault_server, "put_manifest", "v2", got)
    assert not [r for r in fault_server.requests if r.method == "PUT"]


# ------------------------------------------------------------------------------------------ tag lists, tokens

def test_endless_tag_list_is_cut(fault_server: FaultServer) -> None:
    _registry(fault_server)
    fault_server.alias("/v2/hostile/repo/tags/list", "/flood?n=0&chunked=1")
    start = time.monotonic()
    with pytest.raises(BodyTooLarge) as info:
        _session_call(fault_server, "list_tags")
    assert info.value.limit == MAX_TAG_LIST_BODY
    assert f"tag list of {fault_server.host}/hostile/repo exceeds" in str(info.value)
    assert time.monotonic() - start < 30


def test_tag_list_that_is_not_json_is_a_clear_error(fault_server: FaultServer) -> None:
    from ocitransport.mirror import MirrorError

    _registry(fault_server)
    fault_server.alias("/v2/hostile/repo/tags/list", "/flood?n=1000")
    with pytest.raises(MirrorError, match=r"GET http://.*/v2/hostile/repo/tags/list\?n=1000: tag list is not JSON"):
        _session_call(fault_server, "list_tags")


def test_tag_list_link_to_a_private_address_is_refused(fault_server: FaultServer) -> None:
    from ocitransport.mirror import MirrorError

    _registry(fault_server)
    fault_server.script([Step(200, [("Link", '<http://169.254.169.254/latest/meta-data>; rel="next"')],
                              b'{"tags": ["v1"]}')], path="/v2/hostile/repo/tags/list")
    with pytest.raises(MirrorError, match="SSRF protection: tag list of .*/hostile/repo links to private"):
        _session_call(fault_server, "list_tags")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_endless_token_body_is_cut_at_64_kib(fault_server: FaultServer, client: Client, method: str) -> None:
    realm = fault_server.url_for("/token")
    fault_server.script([Step(401, [("WWW-Authenticate", f'Bearer realm="{realm}",service="hostile"')])],
                        path="/v2/")
    fault_server.alias("/token", "/flood?n=0&chunked=1")
    # An identity token makes the exchange a POST (OAuth2 refresh grant); anonymous is a GET.
    from ocitransport.authn import IdentityToken

    auth = IdentityToken("refresh-me") if method == "POST" else Anonymous
    start = time.monotonic()
    with pytest.raises(BodyTooLarge, match="token response exceeds 65536 byte limit"):
        transport.new(Registry(fault_server.host), auth, client, ["repository:hostile/repo:pull"])
    assert time.monotonic() - start < 10
    assert [r.method for r in fault_server.requests_to("/token")] == [method]
