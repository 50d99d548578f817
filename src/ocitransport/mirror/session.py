"""A mirroring session: one Client, authenticated transports per (registry, scopes), and the registry
operations the planner and executor need (manifests, tags, blob HEAD/GET/upload), on the async face.

Why async: a blob streams from the source GET straight into the destination upload. The engine pumps
an *async* request body with back-pressure (it pauses the upload when the source is slower), while a
sync iterator body is read inside libcurl's callback on the driving thread and cannot wait for another
transfer of the same engine. So the executor runs on one event loop; every transfer still goes through
the one CurlMulti of the Client.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

from .. import transport
from .._urls import authority, is_blocked_address
from ..authn import Anonymous, Authenticator, DefaultKeychain
from ..exceptions import BodyTooLarge, OCITransportError, RedirectError
from ..messages import Request, Response
from ..name import Registry, Repository
from ..redirects import Redirects
from ..roundtrip import RoundTripper
from .manifests import (
    MANIFEST_ACCEPT,
    MAX_MANIFEST_PUSH,
    MAX_MANIFEST_READ,
    Manifest,
    ManifestError,
    parse_manifest,
)

if TYPE_CHECKING:
    from ..authn import Keychain
    from ..client import Client

#: Page size for tag listing (ECR rejects more than 1000).
TAGS_PAGE_SIZE = 1000
#: Safety bound on tag-list pages (10 million tags).
MAX_TAG_PAGES = 10_000
_LINK_NEXT = re.compile(r'<([^>]*)>\s*;\s*(?:[^,]*;\s*)?rel="?next"?', re.IGNORECASE)


class MirrorError(OCITransportError):
    """A mirroring step failed for a reason that is not a registry answer (digest mismatch, SSRF guard,
    missing Location, a platform that is not in an index...)."""


class DigestMismatch(MirrorError):
    """The bytes that came from the source do not hash to the digest the manifest names."""


def _guard_redirect(from_url: str, to_url: str) -> None:
    """Upstream's pull redirect rule: another host that is a private/link-local IP literal is refused."""
    old, new = urlsplit(from_url), urlsplit(to_url)
    if (new.hostname or "") != (old.hostname or "") and is_blocked_address(new.hostname or ""):
        raise RedirectError(f'SSRF protection: redirect from "{old.netloc}" to private/link-local host '
                            f'"{new.netloc}" denied')


def resolve_location(response: Response, request_url: str) -> str:
    """The upload ``Location`` resolved against the request URL, refused when it moves to another host
    that is a private/link-local IP literal (upstream's SSRF rule)."""
    location = response.headers.get("Location")
    if not location:
        raise MirrorError(f"{response.request.method if response.request else 'POST'} "
                          f"{_public(request_url)}: missing Location header")
    url = urljoin(response.url or request_url, location.strip())
    target = urlsplit(url)
    if target.scheme not in ("http", "https"):
        raise MirrorError(f"upload Location has unsupported scheme {target.scheme!r}")
    if authority(url) != authority(request_url) and is_blocked_address(target.hostname or ""):
        raise MirrorError(f'SSRF protection: Location header redirects to private/link-local host '
                          f'"{target.netloc}"')
    return url


def _public(url: str) -> str:
    from .._redaction import redact_url

    return redact_url(url)


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` appended to its query (values percent-encoded)."""
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


class Session:
    """Transports and registry operations shared by every unit of a run (one Client underneath).

    Transports are built lazily, once per ``(registry, scopes)``, concurrently-safe; credentials come
    from ``keychain`` once per registry. ``retries`` counts the re-sends the retry layer did.
    """

    def __init__(self, client: Client, keychain: Keychain | None = None, *, retries: int = 3) -> None:
        self.client = client
        self.keychain = keychain if keychain is not None else DefaultKeychain()
        backoff = transport.Backoff(duration=0.5, factor=2.0, jitter=0.1, steps=max(retries, 0) + 1)
        self.inner: RoundTripper = transport.new_retry(client, backoff=backoff)
        self.max_retries = max(retries, 0)
        self.retries = 0
        self._auth: dict[str, Authenticator] = {}
        self._transports: dict[tuple[str, tuple[str, ...]], asyncio.Future[RoundTripper]] = {}

    # -- transports -------------------------------------------------------------------------------

    def auth_for(self, registry: Registry) -> Authenticator:
        auth = self._auth.get(registry.name)
        if auth is None:
            auth = self.keychain.resolve(registry) if self.keychain is not None else Anonymous
            self._auth[registry.name] = auth
        return auth

    async def transport_for(self, registry: Registry, scopes: Sequence[str]) -> RoundTripper:
        """The authenticated round-tripper for ``registry`` with ``scopes`` (built once, shared)."""
        key = (registry.name, tuple(scopes))
        fut = self._transports.get(key)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._transports[key] = fut
            try:
                auth = self.auth_for(registry)
                rt = await transport.new_async(registry, auth, self.inner, list(scopes))
            except BaseException as exc:
                del self._transports[key]
                fut.set_exception(exc)
                fut.exception()  # consumed: waiters get it through await
                raise
            fut.set_result(rt)
            return rt
        return await asyncio.shield(fut)

    async def pull(self, repo: Repository) -> RoundTripper:
        return await self.transport_for(repo.registry, (repo.scope(transport.PULL_SCOPE),))

    async def push(self, repo: Repository, mount_from: Repository | None = None) -> RoundTripper:
        scopes = [repo.scope(transport.PUSH_SCOPE)]
        if mount_from is not None and mount_from != repo:
            scopes.append(mount_from.scope(transport.PULL_SCOPE))
        return await self.transport_for(repo.registry, scopes)

    async def send(self, rt: RoundTripper, method: str, url: str, *, headers: dict[str, str] | None = None,
                   body: Any = None, stream: bool = False) -> Response:
        response = await rt.round_trip_async(Request(method, url, headers, body, stream=stream))
        self.retries += int(response.extensions.get("retries", 0) or 0)
        return response

    # -- URLs -------------------------------------------------------------------------------------

    @staticmethod
    def url(repo: Repository, kind: str, ref: str = "") -> str:
        base = f"{repo.registry.scheme}://{repo.registry.name}/v2/{repo.path}/{kind}/"
        return base + ref

    # -- manifests --------------------------------------------------------------------------------

    async def head_manifest(self, rt: RoundTripper, repo: Repository, ref: str) -> tuple[str, str] | None:
        """``(digest, media_type)`` of ``repo``'s manifest ``ref``, or ``None`` when it does not exist.

        Falls back to a GET when the registry's HEAD carries no ``Docker-Content-Digest``."""
        url = self.url(repo, "manifests", ref)
        response = await self.send(rt, "HEAD", url, headers={"Accept": MANIFEST_ACCEPT})
        if response.status == 404:
            return None
        if response.status != 200:
            # HEAD answers carry no error body: ask again with GET for the registry's diagnostics.
            detail = await self.send(rt, "GET", url, headers={"Accept": MANIFEST_ACCEPT})
            if detail.status == 404:
                return None
            transport.check_error(detail, 200)
            transport.check_error(response, 200)
        digest = response.headers.get("Docker-Content-Digest")
        ctype = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        if digest:
            return digest, ctype
        manifest = await self.get_manifest(rt, repo, ref)
        return manifest.digest, manifest.media_type

    async def get_manifest(self, rt: RoundTripper, repo: Repository, ref: str) -> Manifest:
        """Fetch and parse a manifest (at most 100 MiB read), verifying its digest when ``ref`` is one
        and the registry's ``Docker-Content-Digest`` otherwise."""
        url = self.url(repo, "manifests", ref)
        response = await self.send(rt, "GET", url, headers={"Accept": MANIFEST_ACCEPT}, stream=True)
        if response.status != 200:
            await response.aread()
            transport.check_error(response, 200)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_MANIFEST_READ:
                    raise BodyTooLarge(MAX_MANIFEST_READ, f"manifest {repo.name}:{ref}")
                chunks.append(chunk)
        finally:
            response.close()
        raw = b"".join(chunks)
        where = f"{repo.name}{'@' if ':' in ref else ':'}{ref}"
        manifest = parse_manifest(raw, response.headers.get("Content-Type"), where=where)
        expected = ref if ref.startswith("sha256:") else response.headers.get("Docker-Content-Digest")
        if expected and expected.startswith("sha256:") and expected != manifest.digest:
            raise DigestMismatch(f"{where}: manifest digest is {manifest.digest}, expected {expected}")
        return manifest

    async def put_manifest(self, rt: RoundTripper, repo: Repository, ref: str, manifest: Manifest) -> None:
        """PUT ``manifest``'s exact bytes as ``repo``'s ``ref`` (a tag or its digest)."""
        if len(manifest.raw) > MAX_MANIFEST_PUSH:
            raise ManifestError(f"{repo.name}:{ref}: manifest is {len(manifest.raw)} bytes; registries "
                                f"accept at most {MAX_MANIFEST_PUSH}")
        url = self.url(repo, "manifests", ref)
        response = await self.send(rt, "PUT", url, headers={"Content-Type": manifest.media_type},
                                   body=manifest.raw)
        transport.check_error(response, 200, 201, 202)

    # -- tags -------------------------------------------------------------------------------------

    async def list_tags(self, rt: RoundTripper, repo: Repository) -> list[str]:
        """Every tag of ``repo``, following ``Link: <...>; rel="next"`` pages of ``n=1000``."""
        url = with_query(self.url(repo, "tags", "list"), n=str(TAGS_PAGE_SIZE))
        tags: list[str] = []
        seen_urls: set[str] = set()
        for _ in range(MAX_TAG_PAGES):
            seen_urls.add(url)
            response = await self.send(rt, "GET", url)
            transport.check_error(response, 200)
            try:
                page = response.json()
            except ValueError as exc:
                raise MirrorError(f"GET {_public(url)}: tag list is not JSON ({exc})") from None
            tags.extend(t for t in (page.get("tags") or []) if isinstance(t, str))
            link = response.headers.get("Link")
            match = _LINK_NEXT.search(link) if link else None
            if not match:
                break
            url = urljoin(url, match.group(1))
            if url in seen_urls:
                break
        else:
            raise MirrorError(f"{repo.name}: more than {MAX_TAG_PAGES} pages of tags")
        return list(dict.fromkeys(tags))

    # -- blobs ------------------------------------------------------------------------------------

    async def blob_exists(self, rt: RoundTripper, repo: Repository, digest: str) -> bool:
        response = await self.send(rt, "HEAD", self.url(repo, "blobs", digest))
        if response.status == 404:
            return False
        transport.check_error(response, 200)
        return True

    async def open_blob(self, rt: RoundTripper, repo: Repository, digest: str) -> Response:
        """A streaming GET of a blob, following redirects to storage (without the registry's
        credentials, and never to a private IP literal on another host)."""
        via = Redirects(rt, check=_guard_redirect)
        request = Request("GET", self.url(repo, "blobs", digest), stream=True)
        response = await via.round_trip_async(request)
        self.retries += int(response.extensions.get("retries", 0) or 0)
        if response.status != 200:
            await response.aread()
            transport.check_error(response, 200)
        return response

    async def start_upload(self, rt: RoundTripper, repo: Repository, *, digest: str = "",
                           mount_from: Repository | None = None) -> str | None:
        """``POST .../blobs/uploads/``: ``None`` when the blob was mounted (201), else the upload URL.

        With ``mount_from``, ``?mount=<digest>&from=<repo>`` is asked first; any answer but 201 or 202
        (or a transport error) retries once without the mount, as upstream does."""
        url = self.url(repo, "blobs", "uploads/")
        if mount_from is not None and digest:
            mount_url = with_query(url, mount=digest, **{"from": mount_from.path})
            try:
                response = await self.send(rt, "POST", mount_url, headers={"Content-Type": "application/json"},
                                           body=b"")
            except OCITransportError:
                response = None
            if response is not None:
                if response.status == 201:
                    return None
                if response.status == 202:
                    return resolve_location(response, mount_url)
        response = await self.send(rt, "POST", url, headers={"Content-Type": "application/json"}, body=b"")
        transport.check_error(response, 202)
        return resolve_location(response, url)

    async def finish_upload(self, rt: RoundTripper, location: str, digest: str, size: int,
                            body: AsyncIterator[bytes]) -> None:
        """Monolithic upload: ``PUT <location>&digest=<digest>`` with the streamed body."""
        url = with_query(location, digest=digest)
        response = await self.send(rt, "PUT", url, headers={
            "Content-Type": "application/octet-stream", "Content-Length": str(size)}, body=body)
        transport.check_error(response, 201)
        got = response.headers.get("Docker-Content-Digest")
        if got and got != digest:
            raise DigestMismatch(f"the registry stored {got} for {digest}")
