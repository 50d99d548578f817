"""Set up and inspect registry content with plain ``http.client``: independent of ocitransport.

Tests of the library push with these helpers and read back with them, so a test never confirms the
library with the library. Auth is handled for every :class:`RegistryServer` mode: Basic credentials, or a
token minted in-process by the registry's own :class:`TokenServer` (so the token server's counters and
request log only show what the code under test did), TLS with the registry's CA, mTLS with its client
certificate.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from tests.servers.registry import RegistryServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])

_REPO_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:blobs|manifests|tags)/")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RawRegistryError(AssertionError):
    """The registry answered a set-up request unexpectedly (a broken fixture, not a library bug)."""


def _authorization(registry: RegistryServer, path: str, username: str | None) -> str | None:
    if registry.auth == "basic":
        user = username or registry.username
        assert user is not None
        secret = f"{user}:{registry.users[user]}".encode()
        return "Basic " + base64.b64encode(secret).decode()
    if registry.auth == "bearer":
        assert registry.token_server is not None
        match = _REPO_PATH.match(path)
        if match:
            scopes = [f"repository:{match.group('name')}:pull,push,delete"]
        elif path.startswith("/v2/_catalog"):
            scopes = ["registry:catalog:*"]
        else:
            scopes = []
        return "Bearer " + registry.token_server.issue_token(username or registry.username, scopes)
    return None


def request(registry: RegistryServer, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None, *, username: str | None = None,
            authenticate: bool = True, timeout: float = 30.0) -> RawResponse:
    """One request to ``registry`` (``path`` with query, or an absolute URL on the same registry)."""
    parsed = urllib.parse.urlsplit(path)
    target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    all_headers = {"Content-Length": str(len(body))} if body or method in ("PUT", "POST", "PATCH") else {}
    all_headers.update(headers or {})
    if authenticate:
        auth = _authorization(registry, parsed.path, username)
        if auth:
            all_headers["Authorization"] = auth
    connection: http.client.HTTPConnection
    if registry.tls:
        connection = http.client.HTTPSConnection("127.0.0.1", registry.port, timeout=timeout,
                                                 context=registry.ssl_context())
    else:
        connection = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=timeout)
    try:
        connection.request(method, target, body=body or None, headers=all_headers)
        response = connection.getresponse()
        data = response.read()
        return RawResponse(response.status, response.headers, data)
    finally:
        connection.close()


def _expect(response: RawResponse, *statuses: int, what: str) -> RawResponse:
    if response.status not in statuses:
        raise RawRegistryError(f"{what}: {response.status} {response.body[:500]!r}")
    return response


def push_blob(registry: RegistryServer, repo: str, data: bytes) -> str:
    """Upload ``data`` as a blob of ``repo`` (POST then PUT ``?digest=``); its digest."""
    digest = sha256_digest(data)
    started = _expect(request(registry, "POST", f"/v2/{repo}/blobs/uploads/"), 202, what=f"start upload {repo}")
    location = started.headers["Location"]
    separator = "&" if "?" in location else "?"
    put_path = f"{location}{separator}digest={urllib.parse.quote(digest)}"
    _expect(request(registry, "PUT", put_path, data, {"Content-Type": "application/octet-stream"}),
            201, what=f"finish upload {repo}@{digest}")
    return digest


def push_manifest(registry: RegistryServer, repo: str, reference: str, manifest: bytes,
                  media_type: str) -> str:
    """PUT ``manifest`` as ``repo:reference``; its digest."""
    response = _expect(request(registry, "PUT", f"/v2/{repo}/manifests/{reference}", manifest,
                               {"Content-Type": media_type}), 201, what=f"put manifest {repo}:{reference}")
    digest = sha256_digest(manifest)
    assert response.headers.get("Docker-Content-Digest") in (None, digest)
    return digest


@dataclass(frozen=True)
class PushedImage:
    """What :func:`push_image` put into the registry."""

    registry_host: str
    repo: str
    tag: str
    digest: str
    manifest: bytes
    media_type: str
    config_digest: str
    config: bytes
    layer_digests: list[str]
    layers: list[bytes] = field(repr=False)

    @property
    def reference(self) -> str:
        """``HOST/REPO:TAG``."""
        return f"{self.registry_host}/{self.repo}:{self.tag}"

    @property
    def digest_reference(self) -> str:
        """``HOST/REPO@DIGEST``."""
        return f"{self.registry_host}/{self.repo}@{self.digest}"

    @property
    def blobs(self) -> dict[str, bytes]:
        """Every blob of the image (config and layers) by digest."""
        return {self.config_digest: self.config, **dict(zip(self.layer_digests, self.layers))}


def push_image(registry: RegistryServer, repo: str, tag: str = "latest", layers: list[bytes] | None = None,
               media_type: str = OCI_MANIFEST, config: bytes | None = None) -> PushedImage:
    """Push an image: its layers (default: one random 1 KiB layer), a config and a manifest.

    ``media_type`` is :data:`OCI_MANIFEST` or :data:`DOCKER_MANIFEST` (schema 2); config and layer media
    types follow it. Returns a :class:`PushedImage` with every digest.
    """
    if media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise ValueError(f"push_image makes image manifests, not {media_type}")
    oci = media_type == OCI_MANIFEST
    layers = [os.urandom(1024)] if layers is None else list(layers)
    layer_digests = [push_blob(registry, repo, layer) for layer in layers]
    if config is None:
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": layer_digests}},
                            separators=(",", ":")).encode()
    config_digest = push_blob(registry, repo, config)
    manifest_value: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": media_type,
        "config": {"mediaType": OCI_CONFIG if oci else DOCKER_CONFIG, "digest": config_digest,
                   "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER if oci else DOCKER_LAYER, "digest": d, "size": len(b)}
                   for d, b in zip(layer_digests, layers)],
    }
    manifest = json.dumps(manifest_value, indent=2).encode()
    digest = push_manifest(registry, repo, tag, manifest, media_type)
    return PushedImage(registry.host, repo, tag, digest, manifest, media_type, config_digest, config,
                       layer_digests, layers)


def push_index(registry: RegistryServer, repo: str, tag: str, images: list[PushedImage],
               platforms: list[dict[str, str]] | None = None, media_type: str = OCI_INDEX) -> str:
    """Push an index (or docker manifest list) of images already pushed to ``repo``; its digest."""
    platforms = platforms or [{"architecture": f"arch{i}", "os": "linux"} for i in range(len(images))]
    index = {"schemaVersion": 2, "mediaType": media_type, "manifests": [
        {"mediaType": image.media_type, "digest": image.digest, "size": len(image.manifest), "platform": p}
        for image, p in zip(images, platforms)]}
    return push_manifest(registry, repo, tag, json.dumps(index, indent=2).encode(), media_type)


def get_manifest(registry: RegistryServer, repo: str, reference: str,
                 accept: str = MANIFEST_ACCEPT) -> RawResponse:
    """GET a manifest (any status; check ``.status``)."""
    return request(registry, "GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept})


def get_blob(registry: RegistryServer, repo: str, digest: str) -> bytes | None:
    """A blob's bytes, or ``None`` when the registry does not have it."""
    response = request(registry, "GET", f"/v2/{repo}/blobs/{digest}")
    if response.status == 404:
        return None
    location = response.headers.get("Location")
    if response.status in (302, 307) and location:
        # A registry on object storage (tests/servers/s3.py) redirects to a presigned URL: fetched
        # without the registry's credentials, as a client must.
        target = urllib.parse.urlsplit(urllib.parse.urljoin(registry.url + "/", location))
        assert target.scheme == "http" and target.hostname, location
        connection = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
        try:
            connection.request("GET", target.path + ("?" + target.query if target.query else ""))
            answer = connection.getresponse()
            body = answer.read()
        finally:
            connection.close()
        assert answer.status == 200, f"get blob {repo}@{digest} from storage: {answer.status} {body[:300]!r}"
        return body
    _expect(response, 200, what=f"get blob {repo}@{digest}")
    return response.body


def blob_exists(registry: RegistryServer, repo: str, digest: str) -> bool:
    """Whether the registry has the blob: 200, or a redirect to storage (a registry on S3)."""
    response = request(registry, "HEAD", f"/v2/{repo}/blobs/{digest}")
    return response.status == 200 or (response.status in (302, 307) and bool(response.headers.get("Location")))


def list_tags(registry: RegistryServer, repo: str) -> list[str]:
    response = request(registry, "GET", f"/v2/{repo}/tags/list")
    if response.status == 404:
        return []
    return list(_expect(response, 200, what=f"list tags {repo}").json().get("tags") or [])
