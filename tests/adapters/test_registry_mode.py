"""Registry mode: code written for an open registry works unchanged against Bearer-token auth."""

from __future__ import annotations

import base64
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

import ocitransport.transport
from ocitransport.adapters import RegistryRouter, scope_for
from ocitransport.adapters.httpx import HTTPXTransport
from ocitransport.adapters.requests import RequestsAdapter
from ocitransport.authn import Basic
from tests.servers import raw

ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


def _session(adapter: RequestsAdapter) -> requests.Session:
    s = requests.Session()
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


@pytest.fixture
def new_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every ``transport.new`` call (one per ping + auth setup)."""
    calls: list[Any] = []
    real = ocitransport.transport.new

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(ocitransport.transport, "new", spy)
    return calls


def test_scope_for() -> None:
    assert scope_for("GET", "http://r/v2/a/b/manifests/v1") == ["repository:a/b:pull"]
    assert scope_for("HEAD", "http://r/v2/a/blobs/sha256:x") == ["repository:a:pull"]
    assert scope_for("POST", "http://r/v2/a/blobs/uploads/") == ["repository:a:push,pull"]
    assert scope_for("GET", "http://r/v2/a/tags/list?n=1") == ["repository:a:pull"]
    assert scope_for("GET", "http://r/v2/") == []
    assert scope_for("GET", "http://r/v2/_catalog") == []


def test_open_registry_code_against_bearer(bearer_registry, repo_name: str, new_calls: list[Any]) -> None:
    image = raw.push_image(bearer_registry, repo_name, "v1")
    adapter = RequestsAdapter(auth=Basic(bearer_registry.username, bearer_registry.password))
    with _session(adapter) as s:
        url = f"{bearer_registry.url}/v2/{repo_name}/manifests/v1"
        for _ in range(5):
            r = s.get(url, headers=ACCEPT)
            assert r.status_code == 200
            assert r.content == image.manifest
        tags = s.get(f"{bearer_registry.url}/v2/{repo_name}/tags/list").json()
        assert tags["tags"] == ["v1"]
    adapter.close()
    assert len(new_calls) == 1  # one ping (and setup) per registry host
    assert bearer_registry.token_server.issued == 1  # one token, from the shared cache afterwards


def test_concurrent_first_requests_ping_once(bearer_registry, repo_name: str, new_calls: list[Any]) -> None:
    raw.push_image(bearer_registry, repo_name, "v1")
    adapter = RequestsAdapter(auth=Basic(bearer_registry.username, bearer_registry.password))
    url = f"{bearer_registry.url}/v2/{repo_name}/manifests/v1"

    def get(_: int) -> int:
        # Sessions share the adapter: not closed here (Session.close() closes mounted adapters).
        return _session(adapter).get(url, headers=ACCEPT).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(get, range(32))) == [200] * 32
    adapter.close()
    assert len(new_calls) == 1
    assert bearer_registry.token_server.issued == 1


def test_scope_upgrade_on_insufficient_scope(bearer_registry, repo_name: str) -> None:
    raw.push_image(bearer_registry, repo_name, "v1")
    adapter = RequestsAdapter(auth=Basic(bearer_registry.username, bearer_registry.password))
    with _session(adapter) as s:
        base = f"{bearer_registry.url}/v2/{repo_name}"
        assert s.get(f"{base}/manifests/v1", headers=ACCEPT).status_code == 200  # pull token
        r = s.post(f"{base}/blobs/uploads/")  # needs push: 401 insufficient_scope, upgraded inside
        assert r.status_code == 202
        other = f"{bearer_registry.url}/v2/{repo_name}-other/tags/list"
        assert s.get(other).status_code in (200, 404)  # another repository: upgraded again, not 401
    adapter.close()
    scopes = [set(r.scopes) for r in bearer_registry.token_server.requests_snapshot()]
    assert any(f"repository:{repo_name}:push,pull" in s or f"repository:{repo_name}:pull,push" in s
               for s in scopes)


def test_callers_authorization_wins(bearer_registry, repo_name: str) -> None:
    raw.push_image(bearer_registry, repo_name, "v1")
    adapter = RequestsAdapter(auth=Basic(bearer_registry.username, bearer_registry.password))
    with _session(adapter) as s:
        url = f"{bearer_registry.url}/v2/{repo_name}/manifests/v1"
        r = s.get(url, headers={**ACCEPT, "Authorization": "Bearer not-a-token"})
        assert r.status_code == 401  # passed through untouched: no token of ours, no retry
        token = bearer_registry.token_server.issue_token(bearer_registry.username,
                                                         [f"repository:{repo_name}:pull"])
        r = s.get(url, headers={**ACCEPT, "Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    adapter.close()
    assert bearer_registry.token_server.issued == 0 or bearer_registry.token_server.count("get") == 0


def test_non_registry_hosts_get_no_credentials(bearer_registry, fault_server, repo_name: str) -> None:
    raw.push_image(bearer_registry, repo_name, "v1")
    adapter = RequestsAdapter(auth=Basic(bearer_registry.username, bearer_registry.password))
    with _session(adapter) as s:
        assert s.get(f"{bearer_registry.url}/v2/{repo_name}/tags/list").status_code == 200
        # Another host (think blob storage after a redirect) and a /v2/ path on a non-registry.
        echoed = s.get(fault_server.url_for("/echo")).json()["headers"]
        assert not [v for k, v in echoed if k.lower() == "authorization"]
        assert s.get(fault_server.url_for("/v2/")).status_code == 404
        assert not any(r.header("authorization") for r in fault_server.requests)
    adapter.close()


def test_refused_credentials_fall_back_to_plain(bearer_registry, repo_name: str) -> None:
    raw.push_image(bearer_registry, repo_name, "v1")
    adapter = RequestsAdapter(auth=Basic(bearer_registry.username, "wrong-password"))
    with _session(adapter) as s:
        r = s.get(f"{bearer_registry.url}/v2/{repo_name}/manifests/v1", headers=ACCEPT)
        assert r.status_code == 401  # what the caller would see without the adapter
        assert "www-authenticate" in r.headers
    adapter.close()


def test_keychain_from_docker_config(bearer_registry, repo_name: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    secret = base64.b64encode(f"{bearer_registry.username}:{bearer_registry.password}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {bearer_registry.host: {"auth": secret}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    image = raw.push_image(bearer_registry, repo_name, "v1", layers=[os.urandom(100)])
    adapter = RequestsAdapter(registry_auth=True)
    with _session(adapter) as s:
        r = s.post(f"{bearer_registry.url}/v2/{repo_name}/blobs/uploads/")
        assert r.status_code == 202  # push needs alice's credentials, found in the docker config
        r = s.get(f"{bearer_registry.url}/v2/{repo_name}/blobs/{image.layer_digests[0]}")
        assert r.content == image.layers[0]
    adapter.close()


def test_anonymous_pull(bearer_registry, repo_name: str) -> None:
    image = raw.push_image(bearer_registry, repo_name, "v1")
    router = RegistryRouter()  # no credentials: anonymous tokens (the registry allows anonymous pull)
    adapter = RequestsAdapter(registry_auth=True)
    adapter.router = router
    with _session(adapter) as s:
        assert s.get(f"{bearer_registry.url}/v2/{repo_name}/manifests/v1", headers=ACCEPT).content == image.manifest
    adapter.close()


def test_httpx_registry_mode_streaming(bearer_registry, repo_name: str) -> None:
    layer = os.urandom(3 << 20)
    image = raw.push_image(bearer_registry, repo_name, "v1", layers=[layer])
    transport = HTTPXTransport(auth=Basic(bearer_registry.username, bearer_registry.password))
    with httpx.Client(transport=transport) as client:
        url = f"{bearer_registry.url}/v2/{repo_name}/blobs/{image.layer_digests[0]}"
        with client.stream("GET", url, follow_redirects=True) as r:
            assert r.status_code == 200
            assert b"".join(r.iter_bytes()) == layer
