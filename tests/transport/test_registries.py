"""The registry protocol against real registries: docker-registry open, Basic, Bearer (our JWT token
server) and TLS, all on 127.0.0.1 and started by the fixtures."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Iterator

import pytest

import ocitransport
from ocitransport import Request, authn, transport
from ocitransport.transport import CATALOG_SCOPE, DELETE_SCOPE, PULL_SCOPE, PUSH_SCOPE, Error, ErrorCode
from tests.servers import raw
from tests.servers.faults import FaultServer, Step

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def client() -> Iterator[ocitransport.Client]:
    with ocitransport.Client() as c:
        yield c


def _scope(repo: str, action: str) -> str:
    return f"repository:{repo}:{action}"


def push_blob(rt: ocitransport.RoundTripper, base: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = rt.round_trip(Request("POST", f"{base}/v2/{repo}/blobs/uploads/"))
    transport.check_error(start, 202)
    location = start.headers["location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    put = rt.round_trip(Request("PUT", f"{location}{sep}digest={digest}",
                                {"Content-Type": "application/octet-stream"}, data))
    transport.check_error(put, 201)
    return digest


def push_manifest(rt: ocitransport.RoundTripper, base: str, repo: str, tag: str,
                  blobs: list[bytes]) -> tuple[str, bytes]:
    config = b"{}"
    cfg = push_blob(rt, base, repo, config)
    layers = [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": push_blob(rt, base, repo, b),
               "size": len(b)} for b in blobs]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": cfg, "size": len(config)},
                           "layers": layers}).encode()
    resp = rt.round_trip(Request("PUT", f"{base}/v2/{repo}/manifests/{tag}", {"Content-Type": OCI_MANIFEST},
                                 manifest))
    transport.check_error(resp, 201)
    return "sha256:" + hashlib.sha256(manifest).hexdigest(), manifest


def roundtrip_image(rt: ocitransport.RoundTripper, base: str, repo: str) -> None:
    digest, manifest = push_manifest(rt, base, repo, "v1", [b"layer-one", b"layer-two" * 1000])
    got = rt.round_trip(Request("GET", f"{base}/v2/{repo}/manifests/v1", {"Accept": OCI_MANIFEST}))
    transport.check_error(got, 200)
    assert got.content == manifest
    assert got.headers["docker-content-digest"] == digest
    blob = rt.round_trip(Request("GET", f"{base}/v2/{repo}/blobs/sha256:"
                                 + hashlib.sha256(b"layer-one").hexdigest()))
    transport.check_error(blob, 200)
    assert blob.content == b"layer-one"


class TestOpenRegistry:
    def test_ping_needs_no_auth(self, registry, client) -> None:
        ch = transport.ping(registry.host, client)
        assert ch.scheme == "" and ch.insecure  # plain HTTP on loopback, after HTTPS failed

    def test_push_pull_delete(self, registry, client, repo_name) -> None:
        rt = transport.new(registry.host, authn.Anonymous, client, [_scope(repo_name, PUSH_SCOPE)])
        roundtrip_image(rt, registry.url, repo_name)
        # Independent client sees the same content.
        assert "v1" in raw.list_tags(registry, repo_name)
        digest = raw.get_manifest(registry, repo_name, "v1")
        assert digest is not None

    def test_error_is_structured(self, registry, client, repo_name) -> None:
        rt = transport.new(registry.host, authn.Anonymous, client, [])
        resp = rt.round_trip(Request("GET", f"{registry.url}/v2/{repo_name}/manifests/missing"))
        with pytest.raises(Error) as info:
            transport.check_error(resp, 200)
        assert info.value.status_code == 404
        assert info.value.has_code(ErrorCode.MANIFEST_UNKNOWN, ErrorCode.NAME_UNKNOWN)
        assert str(info.value).startswith(f"GET {registry.url}/v2/{repo_name}/manifests/missing: ")

    def test_wrapper_is_returned_unchanged(self, registry, client) -> None:
        rt = transport.new(registry.host, authn.Anonymous, client, [])
        assert isinstance(rt, transport.Wrapper)
        assert transport.new(registry.host, authn.Anonymous, rt, []) is rt


class TestBasicRegistry:
    def test_push_pull(self, basic_registry, client, repo_name) -> None:
        auth = authn.Basic(basic_registry.username, basic_registry.password)
        ch = transport.ping(basic_registry.host, client)
        assert ch.scheme == "basic" and ch.parameters.get("realm")
        rt = transport.new(basic_registry.host, auth, client, [])
        roundtrip_image(rt, basic_registry.url, repo_name)

    def test_wrong_password_is_a_clear_unauthorized_error(self, basic_registry, client, repo_name) -> None:
        rt = transport.new(basic_registry.host, authn.Basic(basic_registry.username, "Wr0ngPa55zq"),
                           transport.new_retry(client), [])
        resp = rt.round_trip(Request("GET", f"{basic_registry.url}/v2/{repo_name}/tags/list"))
        with pytest.raises(Error) as info:
            transport.check_error(resp, 200)
        assert info.value.status_code == 401
        assert info.value.has_code(ErrorCode.UNAUTHORIZED)
        assert "Wr0ngPa55zq" not in str(info.value)

    def test_credentials_from_docker_config(self, basic_registry, client, repo_name, tmp_path,
                                            monkeypatch) -> None:
        import base64

        token = base64.b64encode(f"{basic_registry.username}:{basic_registry.password}".encode()).decode()
        (tmp_path / "config.json").write_text(json.dumps({"auths": {basic_registry.host: {"auth": token}}}))
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
        monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "none"))
        auth = authn.DefaultKeychain().resolve(basic_registry.host)
        rt = transport.new(basic_registry.host, auth, client, [])
        roundtrip_image(rt, basic_registry.url, repo_name)


class TestBearerRegistry:
    def _auth(self, reg) -> authn.Basic:
        return authn.Basic(reg.username, reg.password)

    def test_push_pull_with_one_token(self, bearer_registry, client, repo_name) -> None:
        ts = bearer_registry.token_server
        rt = transport.new(bearer_registry.host, self._auth(bearer_registry), client,
                           [_scope(repo_name, PUSH_SCOPE)])
        roundtrip_image(rt, bearer_registry.url, repo_name)
        assert ts.issued == 1

    def test_transports_on_one_client_share_its_token_cache(self, bearer_registry, client, repo_name) -> None:
        """The Client owns the token cache and hands it down: transports built on it, directly or
        through more layers, share one token; another Client keeps its own."""
        ts = bearer_registry.token_server
        auth = self._auth(bearer_registry)
        scopes = [_scope(repo_name, PULL_SCOPE)]
        transport.new(bearer_registry.host, auth, client, scopes)
        layered = transport.new_retry(transport.new_limit(client))
        assert layered.token_cache is client.token_cache
        transport.new(bearer_registry.host, auth, layered, scopes)
        assert ts.issued == 1
        assert client.token_cache.fetches == 1
        with ocitransport.Client() as other:
            assert other.token_cache is not client.token_cache
            transport.new(bearer_registry.host, auth, other, scopes)
            assert ts.issued == 2
            assert other.token_cache.fetches == 1

    def test_from_token_seeds_the_clients_cache(self, bearer_registry, client, repo_name) -> None:
        """A token from ``exchange`` handed to ``from_token`` is used as it is (no second fetch) and
        lands in the Client's cache, where later transports find it."""
        ts = bearer_registry.token_server
        auth = self._auth(bearer_registry)
        issued = ts.issued
        challenge = transport.ping(bearer_registry.host, client)
        token = transport.exchange(bearer_registry.host, auth, client, [], challenge)
        assert ts.issued == issued + 1
        rt = transport.from_token(bearer_registry.host, auth, client, challenge, token)
        resp = rt.round_trip(Request("GET", f"{bearer_registry.url}/v2/"))
        assert resp.status == 200
        assert ts.issued == issued + 1
        assert any(e.token == token.value for e in client.token_cache.entries.values())

    def test_401_from_another_host_gets_that_hosts_anonymous_token(self, bearer_registry, client,
                                                                   repo_name) -> None:
        """A 401 from another host (a redirect target) is answered with an anonymous token from that
        host's own realm, for that one request: the registry's token never goes there, and the other
        token never enters the Client's cache."""
        with FaultServer() as other:
            challenge = f'Bearer realm="{other.url_for("/token")}",service="elsewhere",scope="x:y:pull"'
            other.script([Step(401, [("WWW-Authenticate", challenge)])], path="/echo")
            other.script([Step(200, [("Content-Type", "application/json")], b'{"token": "anon-token"}')],
                         path="/token")
            rt = transport.new(bearer_registry.host, self._auth(bearer_registry), client,
                               [_scope(repo_name, PULL_SCOPE)])
            resp = rt.round_trip(Request("GET", other.url_for("/echo")))
            assert resp.status == 200
            sent = [r.header("authorization") for r in other.requests_to("/echo")]
            assert sent == [None, "Bearer anon-token"]
            token_request = other.requests_to("/token")[0]
            assert token_request.header("authorization") is None
            assert all(e.token != "anon-token" for e in client.token_cache.entries.values())

    def test_scope_upgrade_on_insufficient_scope(self, bearer_registry, client, repo_name) -> None:
        ts = bearer_registry.token_server
        rt = transport.new(bearer_registry.host, self._auth(bearer_registry), client,
                           [_scope(repo_name, PULL_SCOPE)])
        assert ts.issued == 1
        push_blob(rt, bearer_registry.url, repo_name, b"upgrade me")
        # The registry answered the pull-only token with insufficient_scope; one new token covered push.
        assert ts.issued == 2
        last = ts.requests_snapshot()[-1]
        assert any("push" in s for s in last.scopes)

    def test_catalog_and_delete(self, bearer_registry, client, repo_name) -> None:
        reg = ocitransport.name.Registry(bearer_registry.host)
        rt = transport.new(reg, self._auth(bearer_registry), client,
                           [reg.scope(CATALOG_SCOPE), _scope(repo_name, DELETE_SCOPE)])
        digest, _ = push_manifest(rt, bearer_registry.url, repo_name, "gone", [b"x"])
        cat = rt.round_trip(Request("GET", f"{bearer_registry.url}/v2/_catalog"))
        transport.check_error(cat, 200)
        assert repo_name in cat.json()["repositories"]
        deleted = rt.round_trip(Request("DELETE", f"{bearer_registry.url}/v2/{repo_name}/manifests/{digest}"))
        transport.check_error(deleted, 202)
        assert raw.get_manifest(bearer_registry, repo_name, digest).status == 404

    def test_wrong_password_fails_once_not_a_storm(self, bearer_registry, client) -> None:
        ts = bearer_registry.token_server
        with pytest.raises(Error) as info:
            transport.new(bearer_registry.host, authn.Basic(bearer_registry.username, "nope-nope"),
                          transport.new_retry(client), [_scope("a/b", PULL_SCOPE)])
        assert info.value.status_code == 401
        assert "nope-nope" not in str(info.value)
        assert len(ts.requests_snapshot()) == 1

    # Token lifetime of the expiry tests: with ``expire_early`` the registry rejects a token exactly
    # ``expires_in`` after it was issued, and the cache refreshes it a fifth of that earlier. A burst
    # longer than that refresh window (a loaded box) legitimately refreshes once more per window, so
    # the tests allow one token per window crossed: far below what a burst without single flight
    # fetches (one per request).
    LIFETIME = 2
    BURST = 200

    def _refreshes(self, elapsed: float) -> int:
        """Refresh points a burst of ``elapsed`` seconds crosses after the token it started with."""
        return int(elapsed // (self.LIFETIME * 0.8))

    def test_expiring_token_refreshed_once_per_expiry(self, bearer_registry, repo_name) -> None:
        """200 concurrent requests (asyncio tasks on one AsyncClient) across two expiries: every one
        succeeds, and each expiry costs exactly one token request (single flight)."""
        ts = bearer_registry.token_server
        ts.token_lifetime = self.LIFETIME
        ts.expire_early = True
        digest = raw.push_blob(bearer_registry, repo_name, b"shared")
        url = f"{bearer_registry.url}/v2/{repo_name}/blobs/{digest}"

        async def main() -> list[tuple[int, float, int]]:
            rounds: list[tuple[int, float, int]] = []
            async with ocitransport.AsyncClient() as ac:
                first_token = time.monotonic()  # new_async fetches the first token
                rt = await transport.new_async(bearer_registry.host, self._auth(bearer_registry), ac,
                                               [_scope(repo_name, PULL_SCOPE)])
                fetched = time.monotonic()
                for burst in range(3):
                    if burst:
                        # Past the expiry of every token fetched so far (the last one no later than
                        # the end of the previous burst).
                        await asyncio.sleep(max(0.0, fetched + self.LIFETIME + 0.2 - time.monotonic()))
                    issued_before = ts.issued
                    # The first burst runs on the token new_async fetched: its refresh points count
                    # from then; later bursts start past an expiry and fetch theirs inside the burst.
                    start = first_token if burst == 0 else time.monotonic()
                    resps = await asyncio.gather(*[rt.round_trip_async(Request("HEAD", url))
                                                   for _ in range(self.BURST)])
                    fetched = time.monotonic()
                    rounds.append((sum(r.status == 200 for r in resps), fetched - start,
                                   ts.issued - issued_before))
            return rounds

        rounds = asyncio.run(asyncio.wait_for(main(), 60))
        assert [ok for ok, _, _ in rounds] == [self.BURST] * 3
        # new_async fetched the first token; each later burst started past an expiry: one token
        # request for it (single flight), plus one per refresh window a slow burst outlasted.
        for burst, (_, elapsed, issued) in enumerate(rounds):
            expected = (1 if burst else 0) + self._refreshes(elapsed)
            assert (1 if burst else 0) <= issued <= expected, (burst, issued, f"{elapsed:.2f} s")
        assert ts.issued == 1 + sum(issued for _, _, issued in rounds)
        assert len(ts.requests_snapshot()) == ts.issued  # no token request failed or went uncounted

    def test_expiring_token_threads(self, bearer_registry, client, repo_name) -> None:
        """The sync face: 200 threads through one Client, across an expiry, one token per expiry."""
        ts = bearer_registry.token_server
        ts.token_lifetime = self.LIFETIME
        ts.expire_early = True
        fetched = time.monotonic()  # before new(): it may fetch the first token already
        rt = transport.new(bearer_registry.host, self._auth(bearer_registry), client,
                           [_scope(repo_name, PUSH_SCOPE)])
        digest = push_blob(rt, bearer_registry.url, repo_name, b"shared")
        url = f"{bearer_registry.url}/v2/{repo_name}/blobs/{digest}"

        def burst() -> float:
            start = time.monotonic()
            results: list[int] = []
            lock = threading.Lock()
            go = threading.Barrier(self.BURST, timeout=30)

            def one() -> None:
                go.wait()
                r = rt.round_trip(Request("HEAD", url))
                with lock:
                    results.append(r.status)

            threads = [threading.Thread(target=one) for _ in range(self.BURST)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 30
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            assert results.count(200) == self.BURST
            return time.monotonic() - start

        burst()
        ended = time.monotonic()
        assert ts.issued <= 1 + self._refreshes(ended - fetched)
        time.sleep(max(0.0, ended + self.LIFETIME + 0.2 - time.monotonic()))  # every token expired
        before = ts.issued
        elapsed = burst()
        assert 1 <= ts.issued - before <= 1 + self._refreshes(elapsed)
        assert len(ts.requests_snapshot()) == ts.issued

    def test_refresh_token_from_oauth_post(self, bearer_registry, client, repo_name) -> None:
        ts = bearer_registry.token_server
        rt = transport.new(bearer_registry.host, self._auth(bearer_registry), client,
                           [_scope(repo_name, PUSH_SCOPE)], password_grant=True)
        push_blob(rt, bearer_registry.url, repo_name, b"pw grant")
        assert ts.count(grant="password") == 1

    def test_post_falls_back_to_get(self, bearer_registry, client, repo_name) -> None:
        ts = bearer_registry.token_server
        ts.post_status = 405
        rt = transport.new(bearer_registry.host, self._auth(bearer_registry), client,
                           [_scope(repo_name, PUSH_SCOPE)], password_grant=True)
        push_blob(rt, bearer_registry.url, repo_name, b"fallback")
        assert ts.count(grant="get") == 1

    def test_async_face(self, bearer_registry, repo_name) -> None:
        async def main() -> int:
            async with ocitransport.AsyncClient() as ac:
                rt = await transport.new_async(bearer_registry.host, self._auth(bearer_registry), ac,
                                               [_scope(repo_name, PULL_SCOPE)])
                resps = await asyncio.gather(*[
                    rt.round_trip_async(Request("GET", f"{bearer_registry.url}/v2/{repo_name}/tags/list"))
                    for _ in range(50)])
                return sum(r.status == 404 for r in resps)

        assert asyncio.run(main()) == 50  # NAME_UNKNOWN for a repository never pushed, but authorized
        assert bearer_registry.token_server.issued == 1


class TestTLS:
    def test_https_registry(self, tls_registry, repo_name) -> None:
        with ocitransport.Client(verify=tls_registry.ca_file) as client:
            ch = transport.ping(tls_registry.host, client)
            assert not ch.insecure
            rt = transport.new(tls_registry.host, authn.Anonymous, client, [])
            roundtrip_image(rt, tls_registry.url, repo_name)

    def test_tls_bearer(self, tls_bearer_registry, repo_name) -> None:
        with ocitransport.Client(verify=tls_bearer_registry.ca_file) as client:
            rt = transport.new(tls_bearer_registry.host,
                               authn.Basic(tls_bearer_registry.username, tls_bearer_registry.password),
                               client, [_scope(repo_name, PUSH_SCOPE)])
            roundtrip_image(rt, tls_bearer_registry.url, repo_name)


class TestSecurity:
    def test_realm_at_metadata_address_is_refused(self, fault_server, client) -> None:
        fault_server.script([Step(401, [("WWW-Authenticate",
                                         'Bearer realm="https://169.254.169.254/token",service="x"')])],
                            path="/v2/")
        with pytest.raises(transport.TokenError, match="private or link-local"):
            transport.new(fault_server.host, authn.Basic("u", "p"), client, [])

    def test_redirect_to_another_server_never_carries_credentials(self, fault_server, client) -> None:
        with FaultServer() as other:
            fault_server.script([Step(401, [("WWW-Authenticate", 'Basic realm="test"')])], path="/v2/")
            rt = transport.new(fault_server.host, authn.Basic("alice", "s3cret-pass"), client, [])
            target = other.url_for("/echo")
            resp = rt.round_trip(Request("GET", fault_server.url_for(f"/redirect?to={target}&code=307")))
            assert resp.status == 307
            from ocitransport.redirects import Redirects

            resp = Redirects(rt).round_trip(
                Request("GET", fault_server.url_for(f"/redirect?to={target}&code=307")))
            assert resp.status == 200
            first = fault_server.requests_to("/redirect")[-1]
            assert (first.header("authorization") or "").startswith("Basic ")
            seen = other.requests_to("/echo")[-1]
            assert seen.header("authorization") is None
            assert "s3cret-pass" not in json.dumps(resp.json())
