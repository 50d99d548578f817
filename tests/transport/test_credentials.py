"""Credentials from where users keep them drive ``transport.new`` end to end: a docker ``config.json``
(``auths``) and a real ``docker-credential-*`` program (``credHelpers`` / ``credsStore``), against the
Basic and the Bearer registries, each pushing and pulling a blob."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import pytest

import ocitransport
from ocitransport import Request, authn, transport
from ocitransport.transport import PUSH_SCOPE
from tests.servers import raw
from tests.servers.credentials import Env
from tests.transport.test_registries import push_blob


def _store(env: Env, source: str, host: str, username: str, password: str) -> None:
    if source == "config":
        encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
        env.docker({"auths": {host: {"auth": encoded}}})
    elif source == "credHelpers":
        env.docker({"credHelpers": {host: "ocitest"}})
        env.helper_creds({host: (username, password)})
    else:  # credsStore: the helper answers for every registry, keyed by its server URL
        env.docker({"credsStore": "ocitest"})
        env.helper_creds({f"https://{host}": (username, password)})


def _push_and_pull(rt: ocitransport.RoundTripper, base: str, repo: str, reg: Any) -> None:
    data = os.urandom(2048)
    digest = push_blob(rt, base, repo, data)
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    got = rt.round_trip(Request("GET", f"{base}/v2/{repo}/blobs/{digest}"))
    transport.check_error(got, 200)
    assert got.content == data
    assert raw.get_blob(reg, repo, digest) == data  # an independent client sees the upload


SOURCES = ["config", "credHelpers", "credsStore"]


@pytest.mark.parametrize("source", SOURCES)
def test_basic_registry(basic_registry, env: Env, repo_name: str, source: str) -> None:
    _store(env, source, basic_registry.host, basic_registry.username, basic_registry.password)
    auth = authn.DefaultKeychain().resolve(basic_registry.host)
    assert auth is not authn.Anonymous
    with ocitransport.Client() as client:
        rt = transport.new(basic_registry.host, auth, client, [])
        _push_and_pull(rt, basic_registry.url, repo_name, basic_registry)
    calls = env.helper_calls()
    if source == "config":
        assert calls == []
    else:
        assert [c["argv"][1] for c in calls] == ["get"]
        assert basic_registry.host in calls[0]["stdin"]


@pytest.mark.parametrize("source", SOURCES)
def test_bearer_registry(bearer_registry, env: Env, repo_name: str, source: str) -> None:
    ts = bearer_registry.token_server
    _store(env, source, bearer_registry.host, bearer_registry.username, bearer_registry.password)
    auth = authn.DefaultKeychain().resolve(bearer_registry.host)
    with ocitransport.Client() as client:
        rt = transport.new(bearer_registry.host, auth, client, [f"repository:{repo_name}:{PUSH_SCOPE}"])
        _push_and_pull(rt, bearer_registry.url, repo_name, bearer_registry)
    # One token, for the helper's (or the file's) user, with the push scope: not an anonymous one.
    seen = ts.requests_snapshot()
    assert [(r.username, r.status) for r in seen] == [(bearer_registry.username, 200)]
    assert seen[0].scopes == (f"repository:{repo_name}:push,pull",)
    assert (len(env.helper_calls()) == 1) == (source != "config")


def test_helper_credentials_refused_is_a_clear_error(bearer_registry, env: Env) -> None:
    """A helper that hands out a stale password: one token request, a 401 naming no secret."""
    ts = bearer_registry.token_server
    _store(env, "credHelpers", bearer_registry.host, bearer_registry.username, "stale-Pa55word")
    auth = authn.DefaultKeychain().resolve(bearer_registry.host)
    with ocitransport.Client() as client, pytest.raises(transport.Error) as info:
        transport.new(bearer_registry.host, auth, transport.new_retry(client), ["repository:a/b:pull"])
    assert info.value.status_code == 401
    assert "stale-Pa55word" not in str(info.value) and "stale-Pa55word" not in repr(info.value)
    assert len(ts.requests_snapshot()) == 1
