"""Registry operations for inspection and small changes (what ``ocitransport ls`` / ``catalog`` /
``digest`` / ``manifest`` / ``config`` / ``inspect`` / ``blob`` / ``tag`` / ``delete`` run), usable from
Python::

    with Client() as client:
        reg = Registry(client)
        reg.list_tags("ghcr.io/org/app")
        body, media_type, digest = reg.manifest("ghcr.io/org/app:v1")

Errors: registry answers raise ``transport.Error``; bad references ``name.BadName``; a blob or manifest
whose bytes do not match its digest :class:`InspectError`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import IO, Any
from urllib.parse import quote

from ._files import atomic_file
from .authn import DefaultKeychain, Keychain
from .exceptions import OCITransportError
from .messages import Request, Response
from .name import Digest, Repository, Tag, parse_reference
from .name import Registry as _RegistryName

__all__ = ["ACCEPT", "MAX_MANIFEST", "InspectError", "Registry", "registry_of"]

#: Manifest media types asked for (OCI and Docker, images and indexes).
ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json",
])
#: The largest manifest or config read into memory (4 MiB, distribution's manifest limit).
MAX_MANIFEST = 4 << 20
_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json")
_CHUNK = 1 << 20


class InspectError(OCITransportError):
    """A registry answer that cannot be used (digest mismatch, no such platform, not JSON)."""


def registry_of(target: str, *, catalog: bool = False) -> str:
    """The registry host of a reference, repository or (``catalog``) registry name."""
    if catalog:
        return _RegistryName(target).name
    repo = target.split("@", 1)[0]
    if ":" in repo.rsplit("/", 1)[-1]:
        repo = repo.rsplit(":", 1)[0]
    return Repository(repo).registry.name


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """Inspection and small changes on ``client`` (a ``Client`` or any round-tripper), credentials from
    ``keychain`` (default: the docker config files and helpers)."""

    def __init__(self, client: Any, keychain: Keychain | None = None, *, insecure: bool = False,
                 retries: int = 3) -> None:
        self.client = client
        self.keychain: Keychain = keychain if keychain is not None else DefaultKeychain()
        self.insecure = insecure
        self.retries = retries
        self._transports: dict[tuple[str, str], Any] = {}

    # -- plumbing ----------------------------------------------------------------------------------

    def _rt(self, registry: _RegistryName, scope: str) -> Any:
        from . import transport

        key = (registry.name, scope)
        if key not in self._transports:
            self._transports[key] = transport.new(registry, self.keychain.resolve(registry), self.client,
                                                  scopes=[scope])
        return self._transports[key]

    def _send(self, repo: Repository, method: str, path: str, *, push: bool = False,
              headers: dict[str, str] | None = None, body: bytes | None = None, stream: bool = False,
              ok: Sequence[int] = (200,)) -> Response:
        from .transport.errors import check_error

        scope = f"repository:{repo.repository_str()}:{'pull,push' if push else 'pull'}"
        if path == "DELETE":
            scope = f"repository:{repo.repository_str()}:delete"
        rt = self._rt(repo.registry, scope)
        url = f"https://{repo.registry.name}/v2/{repo.repository_str()}/{path}"
        response: Response = rt.round_trip(Request(method, url, headers, body, stream=stream))
        check_error(response, *ok)
        return response

    def _repo(self, text: str) -> Repository:
        return Repository(text, insecure=self.insecure)

    def _ref(self, text: str) -> Tag | Digest:
        return parse_reference(text, insecure=self.insecure)

    # -- reads -------------------------------------------------------------------------------------

    def list_tags(self, repository: str) -> list[str]:
        """Every tag of ``repository`` (following ``Link`` pages)."""
        from .mirror.limits import MAX_TAGS

        repo = self._repo(repository)
        tags: list[str] = []
        path = "tags/list?n=1000"
        while path:
            response = self._send(repo, "GET", path)
            data = _json(response.content, f"{repo.name}: tag list")
            page = data.get("tags") or []
            if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
                raise InspectError(f"{repo.name}: the tag list is not a list of strings")
            tags += page
            if len(tags) > MAX_TAGS:
                raise InspectError(f"{repo.name}: more than {MAX_TAGS} tags")
            path = _next_page(response, f"/v2/{repo.repository_str()}/")
        return tags

    def catalog(self, registry: str) -> list[str]:
        """Every repository ``registry`` lists in ``/v2/_catalog``."""
        from .transport.errors import check_error

        reg = _RegistryName(registry, insecure=self.insecure)
        rt = self._rt(reg, "registry:catalog:*")
        names: list[str] = []
        path: str | None = "_catalog?n=1000"
        while path:
            response = rt.round_trip(Request("GET", f"https://{reg.name}/v2/{path}", None, None))
            check_error(response, 200)
            data = _json(response.content, f"{reg.name}: catalog")
            page = data.get("repositories") or []
            if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
                raise InspectError(f"{reg.name}: the catalog is not a list of strings")
            names += page
            path = _next_page(response, "/v2/")
        return names

    def manifest(self, reference: str, *, platform: str | None = None) -> tuple[bytes, str, str]:
        """``(raw bytes, media type, digest)`` of ``reference``'s manifest; with ``platform``, of that
        platform's manifest in an index. The bytes are checked against a digest reference."""
        ref = self._ref(reference)
        body, media_type, digest = self._manifest(ref.repository, ref.identifier)
        if isinstance(ref, Digest) and digest != ref.identifier:
            raise InspectError(f"{ref.name}: the manifest's digest is {digest}")
        if platform and media_type in _INDEX_TYPES:
            child = _pick_platform(_json(body, f"{ref.name}: index"), platform, ref.name)
            body, media_type, digest = self._manifest(ref.repository, child)
            if digest != child:
                raise InspectError(f"{ref.name}: the {platform} manifest's digest is {digest}, not {child}")
        return body, media_type, digest

    def _manifest(self, repo: Repository, identifier: str) -> tuple[bytes, str, str]:
        response = self._send(repo, "GET", f"manifests/{quote(identifier, safe=':')}", headers={"Accept": ACCEPT})
        body = response.content
        if len(body) > MAX_MANIFEST:
            raise InspectError(f"{repo.name}:{identifier}: the manifest is larger than {MAX_MANIFEST} bytes")
        media_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        if not media_type or media_type in ("application/json", "application/octet-stream"):
            media_type = str(_json(body, f"{repo.name}:{identifier}").get("mediaType") or media_type)
        return body, media_type, _sha256(body)

    def digest(self, reference: str) -> str:
        """The digest of ``reference``'s manifest (computed from its bytes, as skopeo does)."""
        return self.manifest(reference)[2]

    def config(self, reference: str, *, platform: str | None = None) -> bytes:
        """The config blob of ``reference`` (of ``platform`` in an index; the first image otherwise)."""
        ref = self._ref(reference)
        body, media_type, _ = self.manifest(reference, platform=platform)
        if media_type in _INDEX_TYPES:
            child = _pick_platform(_json(body, f"{ref.name}: index"), platform or _host_platform(), ref.name)
            body, media_type, _ = self._manifest(ref.repository, child)
        manifest = _json(body, f"{ref.name}: manifest")
        config = manifest.get("config") or {}
        digest = config.get("digest") if isinstance(config, dict) else None
        if not isinstance(digest, str):
            raise InspectError(f"{ref.name}: the manifest names no config blob")
        data = self._blob_bytes(ref.repository, digest)
        return data

    def _blob_bytes(self, repo: Repository, digest: str) -> bytes:
        response = self._send(repo, "GET", f"blobs/{digest}")
        data = response.content
        if len(data) > MAX_MANIFEST:
            raise InspectError(f"{repo.name}@{digest}: larger than {MAX_MANIFEST} bytes")
        if _sha256(data) != digest:
            raise InspectError(f"{repo.name}@{digest}: the blob's bytes have digest {_sha256(data)}")
        return data

    def inspect(self, reference: str, *, platform: str | None = None, tags: bool = True) -> dict[str, Any]:
        """skopeo inspect's summary: Name, Digest, RepoTags, Created, DockerVersion, Labels, Architecture,
        Os, Variant, Layers, LayersData, Env."""
        ref = self._ref(reference)
        body, media_type, digest = self.manifest(reference)
        manifest_body = body
        if media_type in _INDEX_TYPES:
            child = _pick_platform(_json(body, f"{ref.name}: index"), platform or _host_platform(), ref.name)
            manifest_body, media_type, _ = self._manifest(ref.repository, child)
        manifest = _json(manifest_body, f"{ref.name}: manifest")
        config = _json(self.config(f"{ref.repository.name}@{digest}", platform=platform), f"{ref.name}: config")
        inner = config.get("config") or {}
        layers = [x for x in manifest.get("layers") or [] if isinstance(x, dict)]
        return {
            "Name": ref.repository.name,
            "Digest": digest,
            "RepoTags": self.list_tags(ref.repository.name) if tags else [],
            "Created": config.get("created", ""),
            "DockerVersion": config.get("docker_version", ""),
            "Labels": inner.get("Labels") or {},
            "Architecture": config.get("architecture", ""),
            "Os": config.get("os", ""),
            "Variant": config.get("variant", ""),
            "Layers": [x.get("digest") for x in layers],
            "LayersData": [{"MIMEType": x.get("mediaType"), "Digest": x.get("digest"), "Size": x.get("size"),
                            "Annotations": x.get("annotations")} for x in layers],
            "Env": inner.get("Env") or [],
        }

    def blob_to(self, reference: str, out: IO[bytes]) -> str:
        """Stream the blob ``REPO@DIGEST`` into ``out``, verifying its digest at the end (a mismatch
        raises after the bytes were written: use :meth:`blob_to_file` for an all-or-nothing file)."""
        ref = self._ref(reference)
        if not isinstance(ref, Digest):
            raise InspectError(f"{reference}: a blob is named by REPO@DIGEST")
        if not ref.identifier.startswith("sha256:"):
            raise InspectError(f"{reference}: only sha256 blobs can be verified")
        response = self._send(ref.repository, "GET", f"blobs/{ref.identifier}", stream=True)
        digest = hashlib.sha256()
        try:
            for chunk in response.iter_bytes():
                digest.update(chunk)
                out.write(chunk)
        finally:
            response.close()
        out.flush()
        got = "sha256:" + digest.hexdigest()
        if got != ref.identifier:
            raise InspectError(f"{ref.name}: the blob's bytes have digest {got}")
        return got

    def blob_to_file(self, reference: str, path: str) -> str:
        """:meth:`blob_to` into ``path`` atomically (a temporary file renamed once the digest matched)."""
        with atomic_file(path, binary=True, prefix=".blob-") as out:
            return self.blob_to(reference, out)

    # -- changes -----------------------------------------------------------------------------------

    def tag(self, reference: str, new_tag: str) -> str:
        """Put ``reference``'s manifest under ``new_tag`` in the same repository (no blob traffic)."""
        ref = self._ref(reference)
        Tag(f"{ref.repository.name}:{new_tag}", insecure=self.insecure)  # validates the tag
        body, media_type, digest = self.manifest(reference)
        self._send(ref.repository, "PUT", f"manifests/{new_tag}", push=True, headers={"Content-Type": media_type},
                   body=body, ok=(201, 200))
        return digest

    def delete(self, reference: str) -> str:
        """Delete ``reference``'s manifest (a tag is resolved to its digest first, as skopeo delete)."""
        ref = self._ref(reference)
        digest = ref.identifier if isinstance(ref, Digest) else self.digest(reference)
        from .transport.errors import check_error

        rt = self._rt(ref.repository.registry, f"repository:{ref.repository.repository_str()}:delete")
        url = f"https://{ref.repository.registry.name}/v2/{ref.repository.repository_str()}/manifests/{digest}"
        check_error(rt.round_trip(Request("DELETE", url, None, None)), 202, 200)
        return digest


def _json(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise InspectError(f"{what}: not JSON") from None
    if not isinstance(data, dict):
        raise InspectError(f"{what}: not a JSON object")
    return data


def _next_page(response: Response, prefix: str) -> str:
    """The next page's path below ``prefix`` from the ``Link`` header (same host only), or ``""``."""
    from urllib.parse import urlsplit

    from ._links import next_link

    link = next_link(response.headers.get("Link"), response.request.url if response.request else "")
    if not link:
        return ""
    parts = urlsplit(link)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return path[len(prefix):] if path.startswith(prefix) else ""


def _host_platform() -> str:
    """This machine's platform in OCI terms (what skopeo picks from an index without --platform)."""
    import platform

    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm/v7",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "i686": "386", "i386": "386"}
    return f"linux/{arch.get(machine, machine)}"


def _pick_platform(index: dict[str, Any], platform: str, name: str) -> str:
    from .mirror.manifests import parse_platform

    want = parse_platform(platform)
    for child in index.get("manifests") or []:
        if not isinstance(child, dict):
            continue
        p = child.get("platform") or {}
        if not isinstance(p, dict):
            continue
        got = (p.get("os"), p.get("architecture"), p.get("variant") or None)
        if _matches(want, got) and isinstance(child.get("digest"), str):
            return str(child["digest"])
    raise InspectError(f"{name}: the index has no {platform} manifest")


def _matches(want: tuple[str, str, str], got: tuple[Any, Any, Any]) -> bool:
    return got[0] == want[0] and got[1] == want[1] and (not want[2] or got[2] == want[2])
