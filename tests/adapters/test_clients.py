"""Real registry clients, unchanged, on our adapters in registry mode against a Bearer-token registry:
oras-py (requests), python-dxf (requests, over TLS) and an ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import httpx
import pytest
import requests

from ocitransport.adapters.httpx import AsyncHTTPXTransport, HTTPXTransport
from ocitransport.adapters.requests import RequestsAdapter, installed
from ocitransport.authn import Basic
from tests.servers import raw

MANIFEST_ACCEPT = "application/vnd.oci.image.manifest.v1+json"


def _mount(session: requests.Session, adapter: RequestsAdapter) -> None:
    session.mount("http://", adapter)
    session.mount("https://", adapter)


def test_oras_pull_and_push(bearer_registry, repo_name: str, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    oras_client = pytest.importorskip("oras.client")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    layers = [os.urandom(3000), os.urandom(5000)]
    image = raw.push_image(bearer_registry, repo_name, "v1", layers=layers)

    client = oras_client.OrasClient(hostname=bearer_registry.host, insecure=True)
    adapter = RequestsAdapter(auth=Basic(bearer_registry.username, bearer_registry.password))
    _mount(client.session, adapter)
    try:
        manifest = client.get_manifest(f"{bearer_registry.host}/{repo_name}:v1")
        assert [layer["digest"] for layer in manifest["layers"]] == image.layer_digests
        for digest, data in image.blobs.items():
            out = tmp_path / digest.replace(":", "_")
            client.download_blob(f"{bearer_registry.host}/{repo_name}:v1", digest, str(out))
            assert out.read_bytes() == data

        artifact = tmp_path / "artifact.txt"
        artifact.write_bytes(b"pushed by oras through ocitransport\n")
        monkeypatch.chdir(tmp_path)
        target = f"{bearer_registry.host}/{repo_name}-pushed:v2"
        response = client.push(target=target, files=["artifact.txt"])
        assert response.status_code == 201
        pushed = json.loads(raw.get_manifest(bearer_registry, f"{repo_name}-pushed", "v2").body)
        blob = raw.get_blob(bearer_registry, f"{repo_name}-pushed", pushed["layers"][0]["digest"])
        assert blob == artifact.read_bytes()

        out_dir = tmp_path / "pulled"
        files = client.pull(target=target, outdir=str(out_dir))
        assert Path(files[0]).read_bytes() == artifact.read_bytes()
    finally:
        adapter.close()
    # One ping and tokens from our shared cache: oras never ran its own token flow.
    assert bearer_registry.token_server.issued >= 1
    assert all(r.username == bearer_registry.username for r in bearer_registry.token_server.requests_snapshot())


def test_python_dxf_over_tls(tls_bearer_registry, repo_name: str, tmp_path: Path) -> None:
    dxf_module = pytest.importorskip("dxf")
    reg = tls_bearer_registry
    image = raw.push_image(reg, repo_name, "v1", layers=[os.urandom(4000)])
    adapter = RequestsAdapter(auth=Basic(reg.username, reg.password))
    with installed(adapter):
        dxf = dxf_module.DXF(reg.host, repo_name, tlsverify=str(reg.ca_file))
        assert dxf.list_aliases() == ["v1"]
        for digest, data in image.blobs.items():
            assert b"".join(dxf.pull_blob(digest)) == data
        data = os.urandom(100_000)
        digest = dxf.push_blob(data=iter([data[:50_000], data[50_000:]]),
                               digest="sha256:" + hashlib.sha256(data).hexdigest())
        assert raw.get_blob(reg, repo_name, digest) == data
        dxf.set_alias("v2", digest)
        assert dxf.get_alias("v2") == [digest]
    adapter.close()
    assert raw.list_tags(reg, repo_name) == ["v1", "v2"]


def test_httpx_async_pulls(bearer_registry, repo_name: str) -> None:
    images = [raw.push_image(bearer_registry, f"{repo_name}-{i}", "v1", layers=[os.urandom(2000)])
              for i in range(3)]

    async def pull(client: httpx.AsyncClient, image: raw.PushedImage) -> None:
        base = f"{bearer_registry.url}/v2/{image.repo}"
        r = await client.get(f"{base}/manifests/v1", headers={"Accept": MANIFEST_ACCEPT})
        r.raise_for_status()
        manifest = r.json()
        for desc in [manifest["config"], *manifest["layers"]]:
            r = await client.get(f"{base}/blobs/{desc['digest']}", follow_redirects=True)
            assert r.status_code == 200
            assert r.content == image.blobs[desc["digest"]]

    async def main() -> None:
        transport = AsyncHTTPXTransport(auth=Basic(bearer_registry.username, bearer_registry.password))
        async with httpx.AsyncClient(transport=transport) as client:
            await asyncio.gather(*(pull(client, image) for image in images))

    asyncio.run(asyncio.wait_for(main(), 60))


def test_httpx_sync_push_and_pull(bearer_registry, repo_name: str) -> None:
    data = os.urandom(50_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    transport = HTTPXTransport(auth=Basic(bearer_registry.username, bearer_registry.password))
    with httpx.Client(transport=transport, base_url=f"{bearer_registry.url}/v2/{repo_name}") as client:
        r = client.post("/blobs/uploads/")
        assert r.status_code == 202
        location = r.headers["location"]
        sep = "&" if "?" in location else "?"
        r = client.put(f"{location}{sep}digest={digest}", content=iter([data[:1000], data[1000:]]),
                       headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        assert client.get(f"/blobs/{digest}", follow_redirects=True).content == data
    assert raw.get_blob(bearer_registry, repo_name, digest) == data
