"""Smoke tests of the test servers themselves, with plain urllib / http.client / sockets only."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.servers import raw
from tests.servers.faults import FaultServer, pattern
from tests.servers.fixtures import require_registry
from tests.servers.nginx import NginxServer
from tests.servers.registry import RegistryServer
from tests.servers.token_server import REGISTRY_LEEWAY, TokenServer, decode_jwt

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- helpers

def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None, data: bytes | None = None,
          context: ssl.SSLContext | None = None, timeout: float = 10) -> tuple[int, Any, bytes]:
    """(status, headers, body) for any status, following no redirects."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def creds(server: RegistryServer) -> tuple[str, str]:
    assert server.username is not None and server.password is not None
    return server.username, server.password


def get_token(ts: TokenServer, scopes: list[str], creds: tuple[str, str] | None, **extra: str) -> tuple[int, Any]:
    query = urllib.parse.urlencode([("service", ts.service)] + [("scope", s) for s in scopes] + list(extra.items()))
    status, _h, body = fetch(f"{ts.realm}?{query}", headers=basic(*creds) if creds else {})
    return status, json.loads(body)


def post_token(ts: TokenServer, form: dict[str, str]) -> tuple[int, Any]:
    data = urllib.parse.urlencode(form).encode()
    status, _h, body = fetch(ts.realm, "POST", {"Content-Type": "application/x-www-form-urlencoded"}, data)
    return status, json.loads(body)


# ---------------------------------------------------------------------------------------------- open registry

def test_open_registry_ping(registry: RegistryServer) -> None:
    status, headers, _ = fetch(f"{registry.url}/v2/")
    assert status == 200
    assert headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert registry.url == f"http://{registry.host}" and registry.host == f"127.0.0.1:{registry.port}"
    assert registry.root.is_dir()


def test_push_image_round_trip(registry: RegistryServer, repo_name: str) -> None:
    layers = [b"first layer", os.urandom(3000)]
    image = raw.push_image(registry, repo_name, "v1", layers=layers)
    manifest = raw.get_manifest(registry, repo_name, "v1")
    assert manifest.status == 200 and manifest.body == image.manifest
    assert manifest.headers["Docker-Content-Digest"] == image.digest
    assert manifest.headers["Content-Type"] == raw.OCI_MANIFEST
    for digest, data in image.blobs.items():
        assert raw.get_blob(registry, repo_name, digest) == data
    assert raw.list_tags(registry, repo_name) == ["v1"]
    docker = raw.push_image(registry, repo_name, "docker", media_type=raw.DOCKER_MANIFEST)
    index = raw.push_index(registry, repo_name, "multi", [image, docker])
    assert raw.get_manifest(registry, repo_name, index).headers["Content-Type"] == raw.OCI_INDEX
    assert raw.request(registry, "DELETE", f"/v2/{repo_name}/manifests/{docker.digest}").status == 202


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_pushed_image_is_valid_for_skopeo(registry: RegistryServer, repo_name: str) -> None:
    image = raw.push_image(registry, repo_name, "v1")
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{image.reference}"],
                         capture_output=True, timeout=30, check=True)
    assert out.stdout.strip() == image.manifest.strip()


def test_repo_names_are_unique_and_valid(repo_name: str, make_repo_name: Any) -> None:
    names = {repo_name, make_repo_name(), make_repo_name()}
    assert len(names) == 3
    for name in names:
        assert name.startswith("test/test-repo-names-are-unique-and-valid-")


# ---------------------------------------------------------------------------------------------- basic auth

def test_basic_registry(basic_registry: RegistryServer, repo_name: str) -> None:
    status, headers, _ = fetch(f"{basic_registry.url}/v2/")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic realm=")
    assert basic_registry.username == "alice" and basic_registry.password
    assert fetch(f"{basic_registry.url}/v2/", headers=basic(*creds(basic_registry)))[0] == 200
    assert fetch(f"{basic_registry.url}/v2/", headers=basic("alice", "wrong"))[0] == 401
    image = raw.push_image(basic_registry, repo_name)
    url = f"{basic_registry.url}/v2/{repo_name}/blobs/{image.layer_digests[0]}"
    assert fetch(url, headers=basic("bob", basic_registry.users["bob"]))[2] == image.layers[0]


# ---------------------------------------------------------------------------------------------- bearer auth

def test_bearer_challenges(bearer_registry: RegistryServer, token_server: TokenServer, repo_name: str) -> None:
    status, headers, _ = fetch(f"{bearer_registry.url}/v2/")
    assert status == 401
    assert headers["WWW-Authenticate"] == (
        f'Bearer realm="{token_server.realm}",service="{token_server.service}"')
    status, headers, _ = fetch(f"{bearer_registry.url}/v2/{repo_name}/manifests/latest")
    assert status == 401
    assert f'scope="repository:{repo_name}:pull"' in headers["WWW-Authenticate"]


def test_bearer_get_token_and_pull(bearer_registry: RegistryServer, token_server: TokenServer,
                                   repo_name: str) -> None:
    image = raw.push_image(bearer_registry, repo_name)
    assert token_server.issued == 0  # set-up tokens are minted in-process and not counted
    scope = f"repository:{repo_name}:pull"
    status, answer = get_token(token_server, [scope], creds(bearer_registry))
    assert status == 200, answer
    assert answer["token"] == answer["access_token"]
    assert answer["expires_in"] == 300 and answer["issued_at"].endswith("Z")
    assert "refresh_token" not in answer
    header, claims = decode_jwt(answer["token"])
    assert header["alg"] == "ES256" and "x5c" in header
    assert claims["aud"] == token_server.service and claims["iss"] == token_server.issuer
    assert claims["sub"] == "alice" and claims["access"] == [
        {"type": "repository", "name": repo_name, "actions": ["pull"]}]
    token = answer["token"]
    assert fetch(f"{bearer_registry.url}/v2/", headers=bearer(token))[0] == 200
    url = f"{bearer_registry.url}/v2/{repo_name}/blobs/{image.layer_digests[0]}"
    assert fetch(url, headers=bearer(token))[2] == image.layers[0]
    # pull-only: an upload is refused with insufficient_scope
    status, headers, _ = fetch(f"{bearer_registry.url}/v2/{repo_name}/blobs/uploads/", "POST", bearer(token), b"")
    assert status == 401 and 'error="insufficient_scope"' in headers["WWW-Authenticate"]
    assert token_server.issued == 1 and token_server.count("get", {scope}) == 1
    [logged] = token_server.requests_snapshot()
    assert logged.has_credentials and logged.username == "alice" and logged.scopes == (scope,)
    assert creds(bearer_registry)[1] not in repr(logged)


def test_bearer_grants_follow_the_acl(bearer_registry: RegistryServer, token_server: TokenServer,
                                      repo_name: str) -> None:
    scopes = [f"repository:{repo_name}:pull,push,delete", "registry:catalog:*"]
    _, alice = get_token(token_server, scopes, ("alice", token_server.users["alice"]))
    assert decode_jwt(alice["token"])[1]["access"] == [
        {"type": "repository", "name": repo_name, "actions": ["pull", "push", "delete"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]}]
    assert fetch(f"{bearer_registry.url}/v2/_catalog", headers=bearer(alice["token"]))[0] == 200
    _, bob = get_token(token_server, scopes, ("bob", token_server.users["bob"]))
    assert decode_jwt(bob["token"])[1]["access"] == [
        {"type": "repository", "name": repo_name, "actions": ["pull"]}]
    _, anonymous = get_token(token_server, scopes, None)
    assert decode_jwt(anonymous["token"])[1]["sub"] == ""
    assert not token_server.requests_snapshot()[-1].has_credentials
    status, body = get_token(token_server, scopes, ("alice", "wrong"))
    assert status == 401 and body["errors"]
    token_server.anonymous = None
    assert get_token(token_server, scopes, None)[0] == 401
    # a push and a delete with alice's token
    image = raw.push_image(bearer_registry, repo_name)
    url = f"{bearer_registry.url}/v2/{repo_name}/manifests/{image.digest}"
    assert fetch(url, "DELETE", bearer(alice["token"]))[0] == 202


def test_bearer_expired_token_is_rejected(bearer_registry: RegistryServer, token_server: TokenServer) -> None:
    token_server.token_lifetime = 2
    token_server.expire_early = True
    status, answer = get_token(token_server, [], creds(bearer_registry))
    assert answer["expires_in"] == 2
    claims = decode_jwt(answer["token"])[1]
    assert claims["exp"] == claims["iat"] + 2 - REGISTRY_LEEWAY
    assert fetch(f"{bearer_registry.url}/v2/", headers=bearer(answer["token"]))[0] == 200
    time.sleep(max(0.0, claims["exp"] + REGISTRY_LEEWAY + 0.05 - time.time()))
    status, headers, _ = fetch(f"{bearer_registry.url}/v2/", headers=bearer(answer["token"]))
    assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"]


def test_bearer_post_grants(bearer_registry: RegistryServer, token_server: TokenServer, repo_name: str) -> None:
    scope = f"repository:{repo_name}:pull,push"
    status, answer = post_token(token_server, {
        "grant_type": "password", "username": "alice", "password": creds(bearer_registry)[1],
        "service": token_server.service, "client_id": "ocitransport-tests", "scope": scope})
    assert status == 200 and answer["refresh_token"]
    assert fetch(f"{bearer_registry.url}/v2/", headers=bearer(answer["access_token"]))[0] == 200
    status, refreshed = post_token(token_server, {
        "grant_type": "refresh_token", "refresh_token": answer["refresh_token"],
        "service": token_server.service, "client_id": "ocitransport-tests", "scope": scope})
    assert status == 200 and decode_jwt(refreshed["access_token"])[1]["sub"] == "alice"
    assert token_server.count("password") == 1 and token_server.count("refresh_token", {scope}) == 1
    assert post_token(token_server, {"grant_type": "refresh_token", "refresh_token": "bogus",
                                     "service": token_server.service})[0] == 401
    assert post_token(token_server, {"grant_type": "password", "username": "alice", "password": "x",
                                     "service": token_server.service})[0] == 401
    logged = token_server.requests_snapshot()
    assert all(r.form.get("password", ["***"]) == ["***"] for r in logged)
    assert answer["refresh_token"] not in repr(logged)
    # offline_token on GET gives a refresh token too
    _, offline = get_token(token_server, [], creds(bearer_registry), offline_token="true")
    assert offline["refresh_token"]


def test_token_server_failure_knobs(token_server: TokenServer) -> None:
    token_server.post_status = 404
    assert post_token(token_server, {"grant_type": "password", "username": "alice",
                                     "password": token_server.password})[0] == 404
    token_server.get_status = 500
    assert get_token(token_server, [], ("alice", token_server.password))[0] == 500
    token_server.get_status = None
    token_server.token_fields = ("access_token",)
    _, answer = get_token(token_server, [], ("alice", token_server.password))
    assert "token" not in answer and answer["access_token"]
    assert token_server.issued == 1
    token_server.reset()
    assert token_server.issued == 0
    _, answer = get_token(token_server, [], ("alice", token_server.password))
    assert answer["token"] == answer["access_token"]


def test_registry_factory_rs256_kid(registry_factory: Any) -> None:
    server = registry_factory(auth="bearer", token_server_options={"algorithm": "RS256", "key_reference": "kid"})
    assert server.token_server is not None
    _, answer = get_token(server.token_server, ["registry:catalog:*"], creds(server))
    header = decode_jwt(answer["token"])[0]
    assert header["alg"] == "RS256" and header["kid"].count(":") == 11
    assert fetch(f"{server.url}/v2/_catalog", headers=bearer(answer["token"]))[0] == 200


# ---------------------------------------------------------------------------------------------- TLS

def test_tls_registry(tls_registry: RegistryServer) -> None:
    assert tls_registry.url.startswith("https://127.0.0.1:") and tls_registry.ca_file
    context = ssl.create_default_context(cafile=str(tls_registry.ca_file))
    assert fetch(f"{tls_registry.url}/v2/", context=context)[0] == 200
    with pytest.raises(urllib.error.URLError):
        fetch(f"{tls_registry.url}/v2/", context=ssl.create_default_context())
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", tls_registry.port), timeout=5) as sock, \
            context.wrap_socket(sock, server_hostname="127.0.0.1") as tls_sock:
        assert tls_sock.selected_alpn_protocol() == "h2"


def test_mtls_registry(mtls_registry: RegistryServer) -> None:
    assert mtls_registry.client_cert and mtls_registry.client_key and mtls_registry.ca_file
    without = ssl.create_default_context(cafile=str(mtls_registry.ca_file))
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        fetch(f"{mtls_registry.url}/v2/", context=without)
    with_cert = ssl.create_default_context(cafile=str(mtls_registry.ca_file))
    with_cert.load_cert_chain(str(mtls_registry.client_cert), str(mtls_registry.client_key))
    assert fetch(f"{mtls_registry.url}/v2/", context=with_cert)[0] == 200


@pytest.mark.registry
def test_tls_bearer_registry(tls_bearer_registry: RegistryServer, repo_name: str) -> None:
    ts = tls_bearer_registry.token_server
    assert ts is not None and ts.realm.startswith("https://127.0.0.1:")
    context = tls_bearer_registry.ssl_context()
    status, headers, _ = fetch(f"{tls_bearer_registry.url}/v2/", context=context)
    assert status == 401 and f'realm="{ts.realm}"' in headers["WWW-Authenticate"]
    query = urllib.parse.urlencode({"service": ts.service, "scope": f"repository:{repo_name}:pull"})
    status, _h, body = fetch(f"{ts.realm}?{query}", headers=basic(ts.username, ts.password), context=context)
    assert status == 200
    assert fetch(f"{tls_bearer_registry.url}/v2/", headers=bearer(json.loads(body)["token"]),
                 context=context)[0] == 200


@pytest.mark.registry
def test_registry_stop_leaves_nothing_running() -> None:
    require_registry()
    server = RegistryServer(auth="bearer")
    with server:
        pid = server._process.pid
        directory = server.directory
    assert not server.running and not directory.exists()
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


@pytest.mark.registry
def test_registry_standalone_command() -> None:
    require_registry()
    child = subprocess.Popen([sys.executable, "-m", "tests.servers.registry", "--auth", "bearer"], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first.startswith("registry:     http://127.0.0.1:")
        url = first.split()[1]
        assert fetch(f"{url}/v2/")[0] == 401
    finally:
        child.send_signal(signal.SIGINT)
        child.wait(timeout=10)
        if child.stdout:
            child.stdout.close()
    assert child.returncode == 0


# ---------------------------------------------------------------------------------------------- fault server

def conn(server: FaultServer, timeout: float = 5) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)


def test_fault_bytes_keep_alive_and_records(fault_server: FaultServer) -> None:
    c = conn(fault_server)
    c.request("GET", "/bytes?n=100000")
    response = c.getresponse()
    assert response.getheader("Content-Length") == "100000" and response.read() == pattern(100000)
    c.request("GET", "/bytes?n=70000&chunked=1&chunk=1000&digest=1")
    response = c.getresponse()
    body = response.read()
    assert response.getheader("Transfer-Encoding") == "chunked" and body == pattern(70000)
    assert response.getheader("Docker-Content-Digest") == "sha256:" + hashlib.sha256(body).hexdigest()
    c.request("HEAD", "/bytes?n=5")
    response = c.getresponse()
    assert response.getheader("Content-Length") == "5" and response.read() == b""
    c.close()
    assert fault_server.connections == 1
    assert [r.target for r in fault_server.requests] == [
        "/bytes?n=100000", "/bytes?n=70000&chunked=1&chunk=1000&digest=1", "/bytes?n=5"]
    assert fault_server.requests[0].header("host") == f"127.0.0.1:{fault_server.port}"
    fault_server.reset()
    assert fault_server.requests == [] and fault_server.connections == 0


def test_fault_stall_and_delay(fault_server: FaultServer) -> None:
    c = conn(fault_server, timeout=0.3)
    c.request("GET", "/stall?after=10&seconds=5")
    response = c.getresponse()
    assert response.status == 200 and response.read(10) == pattern(10)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        response.read(1)
    assert time.monotonic() - started < 2
    c.close()
    c = conn(fault_server)
    c.request("GET", "/stall?after=3&seconds=0.1&length=6&finish=1")
    assert c.getresponse().read() == pattern(6)
    c.close()
    c = conn(fault_server, timeout=0.2)
    c.request("GET", "/delay?seconds=2")
    with pytest.raises(TimeoutError):
        c.getresponse()
    c.close()


@pytest.mark.parametrize("when", ["before", "headers", "mid"])
def test_fault_reset(fault_server: FaultServer, when: str) -> None:
    c = conn(fault_server)
    c.request("GET", f"/reset?when={when}&after=100")
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected, http.client.IncompleteRead)):
        response = c.getresponse()
        assert response.status == 200
        response.read()
    c.close()


def test_fault_truncate_and_slow(fault_server: FaultServer) -> None:
    c = conn(fault_server)
    c.request("GET", "/truncate?length=1000&send=300")
    response = c.getresponse()
    with pytest.raises(http.client.IncompleteRead) as info:
        response.read()
    assert len(info.value.partial) == 300
    c.close()
    c = conn(fault_server)
    started = time.monotonic()
    c.request("GET", "/slow?n=300&rate=1000")
    assert c.getresponse().read() == pattern(300)
    assert 0.15 < time.monotonic() - started < 2
    c.close()


def test_fault_status_redirect_headers_cookie(fault_server: FaultServer) -> None:
    status, headers, body = fetch(fault_server.url_for("/status/503?retry_after=2&body=busy&header=X-A:%20b"))
    assert (status, headers["Retry-After"], headers["X-A"], body) == (503, "2", "b", b"busy")
    status, headers, body = fetch(fault_server.url_for("/status/404?error=MANIFEST_UNKNOWN&message=nope"))
    assert status == 404 and json.loads(body)["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    c = conn(fault_server)
    c.request("GET", "/redirect?to=/echo&code=307")
    response = c.getresponse()
    response.read()
    assert response.status == 307 and response.getheader("Location") == "/echo"
    c.request("GET", "/headers?n=50&size=100")
    response = c.getresponse()
    response.read()
    assert response.getheader("X-Fault-49") == "h" * 100
    c.request("GET", "/cookie?name=sid&value=42", headers={"Cookie": "a=1"})
    response = c.getresponse()
    assert (response.getheader("Set-Cookie") or "").startswith("sid=42;") and response.read() == b"a=1"
    c.close()
    assert fault_server.connections == 3  # two urllib requests, then one keep-alive connection


def test_fault_informational_heads(fault_server: FaultServer) -> None:
    with socket.create_connection(("127.0.0.1", fault_server.port), timeout=5) as sock:
        sock.sendall(b"GET /info?codes=100,103 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    heads = [line for line in data.split(b"\r\n") if line.startswith(b"HTTP/1.1")]
    assert heads == [b"HTTP/1.1 100 Continue", b"HTTP/1.1 103 Early Hints", b"HTTP/1.1 200 OK"]
    assert data.endswith(b"\r\n\r\nok")


def test_fault_echo_and_drain(fault_server: FaultServer) -> None:
    c = conn(fault_server)
    c.request("POST", "/echo?x=1&x=2", body=iter([b"hello ", b"world"]), encode_chunked=True,
              headers={"X-Test": "yes", "Transfer-Encoding": "chunked"})
    echoed = json.loads(c.getresponse().read())
    assert echoed["method"] == "POST" and echoed["query"] == {"x": ["1", "2"]}
    assert ["X-Test", "yes"] in echoed["headers"]
    assert echoed["body_length"] == 11 and echoed["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
    big = os.urandom(5 << 20)
    c.request("PUT", "/drain", body=big)
    drained = json.loads(c.getresponse().read())
    assert drained == {"length": len(big), "sha256": hashlib.sha256(big).hexdigest()}
    c.close()
    assert fault_server.requests[-1].body_length == len(big)
    assert fault_server.requests[0].body == b"hello world"


def test_fault_expect_continue_and_early_answer(fault_server: FaultServer) -> None:
    with socket.create_connection(("127.0.0.1", fault_server.port), timeout=5) as sock:
        sock.sendall(b"PUT /drain HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        assert b'"length": 3' in sock.recv(1000)
    with socket.create_connection(("127.0.0.1", fault_server.port), timeout=5) as sock:
        sock.sendall(b"PUT /status/401?early=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 401 Unauthorized\r\n")


def test_fault_script_and_connection_counts(fault_server: FaultServer) -> None:
    fault_server.script([503, 503, None], path="/bytes")
    statuses = [fetch(fault_server.url_for("/bytes?n=3"))[0] for _ in range(4)]
    assert statuses == [503, 503, 200, 200]
    fault_server.reset()
    barrier = threading.Barrier(3, timeout=5)

    def hold() -> None:
        c = conn(fault_server)
        c.request("GET", "/bytes?n=1")
        c.getresponse().read()
        barrier.wait()
        c.close()

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for thread in threads:
        thread.start()
    barrier.wait()
    assert fault_server.connections == 2 and fault_server.peak_connections == 2
    for thread in threads:
        thread.join(5)
    c = conn(fault_server)
    c.request("GET", "/close")
    response = c.getresponse()
    assert response.read() == b"ok" and response.getheader("Connection") == "close"
    c.close()


def test_fault_server_stops_promptly_while_stalling() -> None:
    server = FaultServer().start()
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    c.request("GET", "/stall?after=1&seconds=30")
    c.getresponse().read(1)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1
    c.close()


# ---------------------------------------------------------------------------------------------- nginx

def test_nginx_server(nginx_server: NginxServer) -> None:
    c = http.client.HTTPConnection("127.0.0.1", nginx_server.port, timeout=5)
    for _ in range(3):
        c.request("GET", "/small")
        assert len(c.getresponse().read()) == 512
    c.request("GET", "/v2/")
    response = c.getresponse()
    assert response.read() == b"{}" and response.getheader("Docker-Distribution-API-Version") == "registry/2.0"
    c.close()


def test_nginx_tls_http2_big(nginx_factory: Any) -> None:
    server = nginx_factory(big_mib=2, http2=True)
    context = ssl.create_default_context(cafile=str(server.ca_file))
    status, _headers, body = fetch(server.big_url, context=context)
    assert status == 200 and len(body) == server.big_size == 2 << 20
    assert body[: 1 << 20] == body[1 << 20:]
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock, \
            context.wrap_socket(sock, server_hostname="127.0.0.1") as tls_sock:
        assert tls_sock.selected_alpn_protocol() == "h2"


# ---------------------------------------------------------------------------------------------- production world

@pytest.mark.registry  # an external server (moto_server), left out with the registries by -m 'not registry'
def test_s3_server_buckets() -> None:
    from tests.servers.fixtures import require_moto
    from tests.servers.s3 import S3Server

    require_moto()
    with S3Server() as s3:
        bucket = s3.create_bucket()
        assert fetch(f"{s3.url}/{bucket}/k", "PUT", {"Content-Type": "application/octet-stream"}, b"v")[0] == 200
        assert s3.objects(bucket) == ["k"]
        assert fetch(f"{s3.url}/{bucket}/k")[0] == 403  # private: only signed or presigned requests read
    assert not s3.running


def _presigned(server: RegistryServer, method: str, path: str) -> str:
    status, headers, _ = raw_answer(server, method, path)
    assert status == 307, (method, path, status)
    return str(headers["Location"])


def raw_answer(server: RegistryServer, method: str, path: str) -> tuple[int, Any, bytes]:
    response = raw.request(server, method, path)
    return response.status, response.headers, response.body


def test_s3_registry_redirects_blob_get_and_head(s3_registry: RegistryServer, storage: Any, repo_name: str) -> None:
    data = os.urandom(3000)
    digest = raw.push_blob(s3_registry, repo_name, data)
    for method in ("GET", "HEAD"):
        location = _presigned(s3_registry, method, f"/v2/{repo_name}/blobs/{digest}")
        assert location.startswith(storage.endpoint + "/") and "X-Amz-Signature=" in location
        status, _h, body = fetch(location, method)
        assert status == 200 and body == (data if method == "GET" else b"")
    assert any(key.endswith("/data") for key in storage.s3.objects(s3_registry.bucket))
    # The storage that refuses HEAD on presigned URLs: GET still works, HEAD does not.
    storage.refuse_presigned_head()
    assert fetch(_presigned(s3_registry, "HEAD", f"/v2/{repo_name}/blobs/{digest}"), "HEAD")[0] == 403
    assert fetch(_presigned(s3_registry, "GET", f"/v2/{repo_name}/blobs/{digest}"))[2] == data
    # What clients sent to storage went over the recording link.
    assert b"X-Amz-Signature=" in storage.link.sent


def test_s3_tls_registry_http2_and_token_service_elsewhere(s3_tls_registry: RegistryServer, storage: Any,
                                                           repo_name: str) -> None:
    ts = s3_tls_registry.token_server
    assert ts is not None and ts.realm.startswith("https://127.0.0.1:")
    assert urllib.parse.urlsplit(ts.realm).port != s3_tls_registry.port
    context = s3_tls_registry.ssl_context()
    assert context is not None
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", s3_tls_registry.port), timeout=5) as sock, \
            context.wrap_socket(sock, server_hostname="127.0.0.1") as tls_sock:
        assert tls_sock.selected_alpn_protocol() == "h2"
    digest = raw.push_blob(s3_tls_registry, repo_name, b"tls")
    assert _presigned(s3_tls_registry, "GET", f"/v2/{repo_name}/blobs/{digest}").startswith(storage.endpoint)


def test_pull_through_registry(pull_through_registry: RegistryServer, s3_registry: RegistryServer,
                               repo_name: str) -> None:
    image = raw.push_image(s3_registry, repo_name, "v1", layers=[os.urandom(500)])
    got = raw.get_manifest(pull_through_registry, repo_name, "v1")
    assert got.status == 200 and got.body == image.manifest
    assert raw.get_blob(pull_through_registry, repo_name, image.layer_digests[0]) == image.layers[0]
    response = raw.request(pull_through_registry, "POST", f"/v2/{repo_name}/blobs/uploads/")
    assert response.status == 405 and b"UNSUPPORTED" in response.body


def test_shaper_delay_rate_concurrency_and_recording(registry: RegistryServer, shaper_factory: Any,
                                                    repo_name: str) -> None:
    from tests.servers.shaper import LinkShaper

    digest = raw.push_blob(registry, repo_name, os.urandom(300_000))
    shaper: LinkShaper = shaper_factory(registry, delay=0.25, record=True)

    def timed_get(path: str, out: list[float]) -> None:
        start = time.monotonic()
        status, _h, body = fetch(f"{shaper.url}{path}")
        assert status == 200 and body
        out.append(time.monotonic() - start)

    one: list[float] = []
    timed_get("/v2/", one)
    assert 0.5 <= one[0] < 2.0  # one round trip: 250 ms each way (connect is local)
    # Four at once take one round trip, not four (2 s): chunks are not serialised.
    many: list[float] = []
    threads = [threading.Thread(target=timed_get, args=("/v2/", many)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(many) == 4 and min(many) >= 0.5 and max(many) < 1.4
    assert shaper.sent.count(b"GET /v2/ HTTP/1.1") == 5
    # A bandwidth cap of 600 kB/s: 300 kB take half a second more than the round trip.
    shaper.delay, shaper.rate = 0.0, 600_000
    capped: list[float] = []
    timed_get(f"/v2/{repo_name}/blobs/{digest}", capped)
    assert 0.45 <= capped[0] < 3
