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
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

from .. import transport
from .._links import next_link
from .._numbers import header_number, parse_number
from .._urls import MAX_LOCATION, AddressGuard, authority, describe, normalize_host, origin
from ..authn import Anonymous, Authenticator, DefaultKeychain
from ..exceptions import AddressRefused, BodyTooLarge, OCITransportError
from ..messages import Body, Request, Response
from ..name import Registry, Repository, is_digest, is_media_type, is_tag, shown
from ..redirects import Redirects
from ..roundtrip import Read, RoundTripper, _read_async
from ..transport.errors import make_error
from .concurrency import Observe
from .errors import DigestMismatch as DigestMismatch  # re-exported: its old home
from .errors import MirrorError as MirrorError  # re-exported: its old home
from .errors import SizeMismatch as SizeMismatch  # re-exported: its old home
from .manifests import (
    MANIFEST_ACCEPT,
    MAX_MANIFEST_PUSH,
    MAX_MANIFEST_READ,
    Manifest,
    ManifestError,
    parse_manifest,
)
from .tags import MAX_TAG_LIST_BODY, TagListError, parse_tag_list
from .targets import OCI, LocalRepository, NoNetwork, is_local

if TYPE_CHECKING:
    from ..authn import Keychain
    from ..client import Client
    from .layout import Layout

log = logging.getLogger("ocitransport.mirror")

#: Page size for tag listing (ECR rejects more than 1000).
TAGS_PAGE_SIZE = 1000
#: Safety bound on tag-list pages (10 million tags).
MAX_TAG_PAGES = 10_000
#: Safety bound on referrers-list pages.
MAX_REFERRER_PAGES = 1000


@dataclass(frozen=True)
class PullQuota:
    """A registry's pull quota as its last manifest answer told it (Docker Hub's ``RateLimit-Limit`` /
    ``RateLimit-Remaining: 76;w=21600``): pulls ``remaining`` of ``limit`` (0: not said) per
    ``window_seconds`` (0: not said)."""

    remaining: int
    limit: int = 0
    window_seconds: int = 0


def _is_count(text: str) -> bool:
    # ASCII digits only ("²".isdigit() is true, int("²") is not), and a sane length: the one parser.
    return parse_number(text) is not None


def _quota_number(value: str | None) -> tuple[int, int] | None:
    """``"76;w=21600"`` -> ``(76, 21600)``; ``"76"`` -> ``(76, 0)``; anything else -> ``None``."""
    if not value:
        return None
    first, *params = value.split(";")
    first = first.strip()
    if not _is_count(first):
        return None
    window = 0
    for param in params:
        name, _, number = param.strip().partition("=")
        number = number.strip().strip('"')
        if name.strip().lower() == "w" and _is_count(number):
            window = int(number)
    return int(first), window


def parse_pull_quota(headers: Any) -> PullQuota | None:
    """The quota a manifest answer's ``RateLimit-*`` headers state (``None`` when they state none)."""
    remaining = _quota_number(headers.get("RateLimit-Remaining"))
    if remaining is None:
        return None
    limit = _quota_number(headers.get("RateLimit-Limit"))
    return PullQuota(remaining[0], limit[0] if limit else 0, remaining[1] or (limit[1] if limit else 0))


def resolve_location(response: Response, request_url: str, guard: AddressGuard | None = None) -> str:
    """The upload ``Location`` resolved against the request URL; refused when longer than
    ``MAX_LOCATION`` or when it moves to another host that is, in any spelling, an address ``guard``
    refuses (by default: loopback, private, link-local... - upstream's SSRF rule)."""
    method = response.request.method if response.request else "POST"
    location = response.headers.get("Location")
    if not location:
        raise MirrorError(f"{method} {_public(request_url)}: missing Location header")
    if len(location) > MAX_LOCATION:
        raise MirrorError(f"{method} {_public(request_url)}: Location header is {len(location)} bytes; at "
                          f"most {MAX_LOCATION} are followed")
    url = urljoin(response.url or request_url, location.strip())
    target = urlsplit(url)
    if target.scheme not in ("http", "https"):
        raise MirrorError(f"upload Location has unsupported scheme {target.scheme!r}")
    if guard is None:
        guard = AddressGuard(authority(request_url), what="upload Location")
    guard.learn(response.extensions)
    try:
        guard.check_url(url)
    except AddressRefused as exc:
        raise MirrorError(f'SSRF protection: Location header redirects to private/link-local host '
                          f'"{authority(url)}" ({exc.address}, {describe(exc.kind)}); refused') from None
    return url


def _public(url: str) -> str:
    from .._redaction import redact_url

    return redact_url(url)


async def _check_blob_answer(response: Response, registry_url: str) -> None:
    """Raise ``transport.Error`` for a failed blob answer. When it came from storage (after a redirect)
    the error names the registry's URL and the storage's (redacted), and does not quote the body: S3's
    error documents repeat the presigned request (``<SignatureProvided>``, ``<StringToSign>``, the
    access key id), so only the storage's error code is kept."""
    body = await _read_async(Read(response, transport.MAX_ERROR_BODY, "error body"))
    final_url = response.url or registry_url
    if authority(final_url) != authority(registry_url):
        code = re.search(rb"<Code>([A-Za-z0-9.]{1,64})</Code>", body)
        detail = f"from storage {_public(final_url)}: {code.group(1).decode() if code else 'no error code'}"
        method = response.request.method if response.request is not None else "GET"
        raise transport.Error(response.status, request=Request(method, registry_url), body=detail.encode())
    raise make_error(response, body)


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` appended to its query (values percent-encoded)."""
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


#: The run's backoff (:func:`run_backoff`): the first wait, the growth factor, the random part added
#: (up to this share of each wait) and the longest single wait.
RETRY_DELAY = 0.5
RETRY_FACTOR = 2.0
RETRY_JITTER = 0.1
MAX_BACKOFF = 8.0


def run_backoff(retries: int) -> transport.Backoff:
    """The one backoff of a run with ``retries`` (``RunOptions.retries``): the retry layer makes at most
    ``retries + 1`` attempts with it, and every outer retry loop of the mirror waits ``delay(n)`` of it
    after its ``n``-th failure (each keeping its own attempt count)."""
    return transport.Backoff(duration=RETRY_DELAY, factor=RETRY_FACTOR, jitter=RETRY_JITTER,
                             steps=max(retries, 0) + 1, cap=MAX_BACKOFF)


class Session:
    """Transports and registry operations shared by every unit of a run (one Client underneath).

    Transports are built lazily, once per ``(registry, scopes)``, concurrently-safe; credentials come
    from ``keychain`` once per registry. ``retries`` counts the re-sends the retry layer did.
    """

    def __init__(self, client: Client, keychain: Keychain | None = None, *, retries: int = 3,
                 limits: transport.LimitBackend | None = None,
                 allow_private_storage: Iterable[str] = ()) -> None:
        self.client = client
        #: Registries whose blob redirects and upload Locations may lead to private (RFC 1918 / ULA)
        #: addresses: on-prem storage such as MinIO on 10.x. A registry that is itself on a loopback or
        #: private address gets this without asking; link-local, unspecified and multicast never.
        self.allow_private_storage: frozenset[str] = frozenset(_registry_name(r) for r in allow_private_storage)
        # Hosts that server-handed URLs (upload Locations, Link pages) point to, with their guard.
        self._handed: dict[str, AddressGuard] = {}
        self.keychain = keychain if keychain is not None else DefaultKeychain()
        #: The run's one backoff: the retry layer's waits and every outer loop's (planning steps, manifest
        #: and tag list re-reads, manifest rechecks, per-image retries, upload and download resumes).
        self.backoff = backoff = run_backoff(retries)
        #: Per-registry politeness (adaptive concurrency, shared Retry-After pauses) of every request of
        #: the run, retries included: the limit layer sits under the retry layer.
        self.limits: transport.LimitBackend = limits if limits is not None else transport.LocalLimits()
        #: Connection counts and latency samples of every request (mirror/concurrency.py).
        self.observe = Observe(client)
        # Retries draw from the retry_budget scope a request is sent in (a planning step, one image's
        # copy): a request fails at most ``retries + 1`` times in all, whatever repeats it.
        self.inner: RoundTripper = transport.new_retry(transport.new_limit(self.observe, backend=self.limits),
                                                       backoff=backoff)
        self.max_retries = max(retries, 0)
        self.retries = 0
        #: Entries of tag lists that are not tags by the reference grammar (skipped, never requested).
        self.invalid_tags = 0
        #: Manifests already read elsewhere, by digest (see :meth:`get_manifest`).
        self.known_manifests: dict[str, Manifest] = {}
        #: Registry name -> the lowest pull quota its manifest answers stated in this session (Docker
        #: Hub's ``RateLimit-*`` headers), for the report.
        self.pull_quota: dict[str, PullQuota] = {}
        #: Destinations this session's own planning just read and found not at their target digest
        #: (destination -> target). An executor on this Session copies them without a second HEAD: the
        #: answer is moments old, and copying is idempotent anyway (one request saved per image).
        self.stale: dict[str, str] = {}
        self._auth: dict[str, Authenticator] = {}
        #: Local targets (OCI layouts and archives) by name: the registry operations below hand a
        #: LocalRepository's work to its layout (mirror/layout.py, mirror/archive.py).
        self._local: dict[str, Layout] = {}
        self._transports: dict[tuple[str, tuple[str, ...]], asyncio.Future[RoundTripper]] = {}

    # -- local targets ----------------------------------------------------------------------------

    def local(self, repo: LocalRepository) -> Layout:
        """The layout (or archive) holding ``repo``: one object per layout in a session."""
        registry = repo.registry
        target = self._local.get(registry.name)
        if target is None:
            from .archive import ArchiveLayout
            from .layout import Layout

            target = (Layout(registry.location, registry.name) if registry.kind == OCI
                      else ArchiveLayout(registry.location, registry.name))
            self._local[registry.name] = target
        return target

    def _local_upload(self, url: str) -> Layout | None:
        """The layout an upload URL of a local target belongs to (``None``: a registry's upload)."""
        if "#upload-" not in url or not is_local(url):
            return None
        target = self._local.get(url.rsplit("#upload-", 1)[0])
        if target is None:
            raise MirrorError(f"{url.rsplit('#', 1)[0]}: no such upload")
        return target

    def supports_ranges(self, repo: Repository) -> bool:
        """Whether blobs of ``repo`` are worth reading as parallel ranged GETs (registries: yes; a local
        layout is read from disk in one stream)."""
        return not isinstance(repo, LocalRepository)

    async def close_targets(self, *, commit: bool = True) -> list[tuple[str, str]]:
        """End the session's local targets: temporary files of unfinished uploads go, and an archive
        written to is packed (``commit``) into its file. Answers ``(target, message)`` for each that
        could not be (for the report)."""
        targets, self._local = list(self._local.values()), {}
        failed: list[tuple[str, str]] = []
        for target in targets:
            try:
                await target.close(commit=commit)
            except (OCITransportError, OSError) as exc:
                failed.append((target.name, str(exc) if isinstance(exc, OCITransportError) else
                               f"{target.name}: {exc.strerror or exc}"))
        return failed

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
        if isinstance(repo, LocalRepository):
            return NoNetwork(repo.name)
        return await self.transport_for(repo.registry, (repo.scope(transport.PULL_SCOPE),))

    async def push(self, repo: Repository, mount_from: Repository | None = None) -> RoundTripper:
        if isinstance(repo, LocalRepository):
            return NoNetwork(repo.name)
        scopes = [repo.scope(transport.PUSH_SCOPE)]
        if mount_from is not None and mount_from != repo:
            scopes.append(mount_from.scope(transport.PULL_SCOPE))
        return await self.transport_for(repo.registry, scopes)

    async def send(self, rt: RoundTripper, method: str, url: str, *, headers: dict[str, str] | None = None,
                   body: Any = None, stream: bool = False, extensions: dict[str, Any] | None = None) -> Response:
        response = await rt.round_trip_async(Request(method, url, headers, body, stream=stream,
                                                     extensions=extensions))
        self.retries += int(response.extensions.get("retries", 0) or 0)
        return response

    # -- SSRF guards ------------------------------------------------------------------------------

    def address_guard(self, registry: Registry | str, *, storage: bool, what: str) -> AddressGuard:
        """The SSRF rule for URLs ``registry`` hands us. ``storage``: blob redirects and upload
        Locations, where private addresses are allowed for ``allow_private_storage`` registries and
        registries that are on a loopback or private address themselves."""
        name = registry.name if isinstance(registry, Registry) else registry
        allowed = (True if name in self.allow_private_storage else None) if storage else False
        return AddressGuard(name, private_storage=allowed, what=what)

    def _hand(self, url: str, guard: AddressGuard) -> dict[str, Any] | None:
        """Extensions for a request to ``url``, a URL the registry handed us: the guard goes with it to
        the engine (which checks the address connected to) unless ``url`` is on the registry's host."""
        host = origin(url)[1]
        if guard.is_registry(host):
            return None
        self._handed[normalize_host(host)] = guard
        return {"address_guard": guard}

    def _handed_guard(self, url: str) -> dict[str, Any] | None:
        if not self._handed:
            return None
        guard = self._handed.get(normalize_host(origin(url)[1]))
        return None if guard is None else {"address_guard": guard}

    # -- URLs -------------------------------------------------------------------------------------

    @staticmethod
    def url(repo: Repository, kind: str, ref: str = "") -> str:
        """The API URL of ``repo``'s ``kind`` (``manifests``, ``blobs``, ...) ``ref``.

        A manifest or blob ``ref`` must be a tag or digest by the reference grammar: refs come from
        servers too (headers, manifests, tag and referrers lists), and one such as
        ``sha256:<hex>/../../evil`` must never become a request outside the repository."""
        if kind in ("manifests", "blobs", "referrers") and (kind, ref) != ("blobs", "uploads/") and not (
                is_digest(ref) or (kind == "manifests" and is_tag(ref))):
            what = "digest" if kind != "manifests" or ":" in ref else "tag or digest"
            raise MirrorError(f"{repo.name}: refused to request {kind} {shown(ref)}: not a valid {what}")
        base = f"{repo.registry.scheme}://{repo.registry.name}/v2/{repo.path}/{kind}/"
        return base + ref

    # -- manifests --------------------------------------------------------------------------------

    def _note_quota(self, repo: Repository, response: Response) -> None:
        quota = parse_pull_quota(response.headers)
        if quota is not None:
            name = repo.registry.name
            seen = self.pull_quota.get(name)
            if seen is None or quota.remaining < seen.remaining:
                self.pull_quota[name] = quota

    async def head_manifest(self, rt: RoundTripper, repo: Repository, ref: str) -> tuple[str, str] | None:
        """``(digest, media_type)`` of ``repo``'s manifest ``ref``, or ``None`` when it does not exist.

        Falls back to a GET when the registry's HEAD carries no ``Docker-Content-Digest``."""
        if isinstance(repo, LocalRepository):
            return await self.local(repo).head_manifest(repo, ref)
        url = self.url(repo, "manifests", ref)
        response = await self.send(rt, "HEAD", url, headers={"Accept": MANIFEST_ACCEPT})
        self._note_quota(repo, response)
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
        if digest and not is_digest(digest):
            raise MirrorError(f"{repo.name}: HEAD manifest {shown(ref)} answered an invalid "
                              f"Docker-Content-Digest {shown(digest)}")
        if ctype and not is_media_type(ctype):
            raise MirrorError(f"{repo.name}: HEAD manifest {shown(ref)} answered an invalid "
                              f"Content-Type {shown(ctype)}")
        if digest:
            return digest, ctype
        manifest = await self.get_manifest(rt, repo, ref)
        return manifest.digest, manifest.media_type

    async def get_manifest(self, rt: RoundTripper, repo: Repository, ref: str) -> Manifest:
        """Fetch and parse a manifest (at most ``MAX_MANIFEST_READ`` bytes read, else ``BodyTooLarge``),
        verifying its digest when ``ref`` is one and the registry's ``Docker-Content-Digest`` otherwise.

        A digest found in :attr:`known_manifests` is answered from there without a request (manifests
        are content-addressed; the dask executor ships the ones it read while planning, so a worker does
        not pull them a second time, which Docker Hub would count against the pull quota)."""
        known = self.known_manifests.get(ref) if ref.startswith("sha256:") else None
        if known is not None:
            return known
        if isinstance(repo, LocalRepository):
            return await self.local(repo).get_manifest(repo, ref)
        url = self.url(repo, "manifests", ref)
        response = await self.send(rt, "GET", url, headers={"Accept": MANIFEST_ACCEPT}, stream=True)
        self._note_quota(repo, response)
        if response.status != 200:
            await _read_async(Read(response, transport.MAX_ERROR_BODY, "error body"))
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
        if expected and not is_digest(expected):
            raise MirrorError(f"{where}: the registry answered an invalid Docker-Content-Digest {shown(expected)}")
        if expected and expected.startswith("sha256:") and expected != manifest.digest:
            raise DigestMismatch(f"{where}: manifest digest is {manifest.digest}, expected {expected}")
        return manifest

    async def put_manifest(self, rt: RoundTripper, repo: Repository, ref: str, manifest: Manifest, *,
                           listed: bool = False) -> None:
        """PUT ``manifest``'s exact bytes as ``repo``'s ``ref`` (a tag or its digest). ``listed``: the image
        a copy names rather than a child of an index (a registry needs no difference; a layout lists it in
        ``index.json`` even when it is put by digest)."""
        if isinstance(repo, LocalRepository):
            return await self.local(repo).put_manifest(repo, ref, manifest, listed=listed)
        if len(manifest.raw) > MAX_MANIFEST_PUSH:
            raise ManifestError(f"{repo.name}:{ref}: manifest is {len(manifest.raw)} bytes; registries "
                                f"accept at most {MAX_MANIFEST_PUSH}")
        url = self.url(repo, "manifests", ref)
        response = await self.send(rt, "PUT", url, headers={"Content-Type": manifest.media_type},
                                   body=manifest.raw)
        transport.check_error(response, 200, 201, 202)

    # -- referrers --------------------------------------------------------------------------------

    async def list_referrers(self, rt: RoundTripper, repo: Repository, digest: str) -> list[dict[str, Any]] | None:
        """The referrers of manifest ``digest`` by the OCI 1.1 API (``GET /v2/<name>/referrers/<digest>``,
        following ``Link`` pages): the index entries (dicts with ``mediaType``, ``digest``, ``size``,
        ``artifactType``, ``annotations``), or ``None`` when the registry has no referrers API (an answer
        of 400, 404, 405, 406 or 501, or one that is not an image index; distribution 2.8 is such a
        registry). Other errors raise."""
        import json

        from .manifests import MAX_MANIFEST_PUSH, OCI_INDEX

        if isinstance(repo, LocalRepository):
            return await self.local(repo).list_referrers(repo, digest)
        url = self.url(repo, "referrers", digest)
        entries: list[dict[str, Any]] = []
        seen_urls: set[str] = set()
        guard = self.address_guard(repo.registry, storage=False, what=f"referrers page of {repo.name}")
        extensions: dict[str, Any] | None = None
        for page in range(MAX_REFERRER_PAGES):
            seen_urls.add(url)
            response = await self.send(rt, "GET", url, headers={"Accept": OCI_INDEX}, stream=True,
                                       extensions=extensions)
            if response.status != 200:
                await _read_async(Read(response, transport.MAX_ERROR_BODY, "error body"))
                if response.status in (400, 404, 405, 406, 501) and page == 0:
                    return None
                transport.check_error(response, 200)
            # An index is pushed at most 4 MiB; a page is one.
            body = await _read_async(Read(response, MAX_MANIFEST_PUSH, f"referrers of {repo.name}@{digest}"))
            ctype = (response.headers.get("Content-Type") or "").split(";")[0].strip()
            try:
                value = json.loads(body)
            except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
                value = None
            manifests = value.get("manifests") if isinstance(value, dict) else None
            if not isinstance(manifests, list) or ctype not in (OCI_INDEX, "application/json", ""):
                if page == 0:
                    return None  # a proxy's page, a redirect to a login form...: no referrers API here
                raise MirrorError(f"GET {_public(url)}: referrers page is not an image index")
            entries.extend(m for m in manifests if isinstance(m, dict))
            next_url = next_link(response.headers.get_all("Link"), response.url or url)
            if next_url is None or next_url in seen_urls:
                return entries
            try:
                guard.check_url(next_url)
            except AddressRefused as exc:
                raise MirrorError(f'SSRF protection: referrers of {repo.name} link to private/link-local host '
                                  f'"{authority(next_url)}" ({exc.address}, {describe(exc.kind)}); refused') from None
            extensions = self._hand(next_url, guard)
            url = next_url
        raise MirrorError(f"{repo.name}@{digest}: more than {MAX_REFERRER_PAGES} pages of referrers")

    # -- tags -------------------------------------------------------------------------------------

    async def list_tags(self, rt: RoundTripper, repo: Repository) -> list[str]:
        """Every tag of ``repo``, following ``Link: <...>; rel="next"`` pages of ``n=1000``.

        Each page is read up to ``MAX_TAG_LIST_BODY`` bytes (an error body up to 64 KiB); more raises
        ``BodyTooLarge``. Across pages at most ``limits.MAX_TAGS`` distinct tags and
        ``limits.MAX_TAG_LIST_BYTES`` bytes are read, else ``LimitExceeded`` (listing stops). Entries
        that are not tags by the reference grammar are skipped and counted in :attr:`invalid_tags`."""
        from . import limits

        if isinstance(repo, LocalRepository):
            local_tags = await self.local(repo).list_tags(repo)
            limits.check_tags(repo.name, len(local_tags), 0)
            return local_tags
        url = with_query(self.url(repo, "tags", "list"), n=str(TAGS_PAGE_SIZE))
        tags: dict[str, None] = {}  # distinct, in the registry's order
        seen_urls: set[str] = set()
        guard = self.address_guard(repo.registry, storage=False, what=f"tag list page of {repo.name}")
        extensions: dict[str, Any] | None = None
        total_bytes = invalid = 0
        where = f"tag list of {repo.name}"
        for _ in range(MAX_TAG_PAGES):
            seen_urls.add(url)
            response = await self.send(rt, "GET", url, stream=True, extensions=extensions)
            if response.status != 200:
                await _read_async(Read(response, transport.MAX_ERROR_BODY, "error body"))
                transport.check_error(response, 200)
            # A page reads at most what is left of the repository's byte budget (plus one byte, to
            # tell "exactly at the limit" from "over it"): memory stays bounded across any number of pages.
            budget = limits.current().max_tag_list_bytes - total_bytes + 1
            try:
                body = await _read_async(Read(response, min(MAX_TAG_LIST_BODY, budget), where))
            except BodyTooLarge:
                if budget <= MAX_TAG_LIST_BODY:  # the repository's budget ran out, not the page's
                    limits.check_tags(repo.name, len(tags), total_bytes + budget)
                raise
            total_bytes += len(body)
            limits.check_tags(repo.name, len(tags), total_bytes)
            try:
                page = parse_tag_list(body)
            except TagListError as exc:
                raise MirrorError(f"GET {_public(url)}: {exc}") from None
            for tag in page:
                if is_tag(tag):
                    tags[tag] = None
                else:
                    invalid += 1
            limits.check_tags(repo.name, len(tags), total_bytes)
            next_url = next_link(response.headers.get_all("Link"), response.url or url)
            if next_url is None or next_url in seen_urls:
                break
            try:
                guard.check_url(next_url)
            except AddressRefused as exc:
                raise MirrorError(f'SSRF protection: tag list of {repo.name} links to private/link-local host '
                                  f'"{authority(next_url)}" ({exc.address}, {describe(exc.kind)}); refused') from None
            extensions = self._hand(next_url, guard)
            url = next_url
        else:
            raise MirrorError(f"{repo.name}: more than {MAX_TAG_PAGES} pages of tags")
        if invalid:
            self.invalid_tags += invalid
            log.warning("%s: skipped %d invalid tag%s of the tag list", repo.name, invalid,
                        "" if invalid == 1 else "s")
        return list(tags)

    # -- blobs ------------------------------------------------------------------------------------

    async def _follow(self, rt: RoundTripper, repo: Repository, request: Request) -> Response:
        """``request`` through ``rt``, following redirects to storage: the registry's credentials stay
        on its own host (the auth layers add them only there, and ``Redirects`` drops them on a new
        origin), and a hop to a refused address (the SSRF rule of ``address_guard``) is not made."""
        guard = self.address_guard(repo.registry, storage=True, what="blob redirect")
        response = await Redirects(rt, check=guard).round_trip_async(request)
        self.retries += int(response.extensions.get("retries", 0) or 0)
        return response

    async def blob_exists(self, rt: RoundTripper, repo: Repository, digest: str) -> bool:
        """Whether ``repo`` holds blob ``digest``.

        A ``HEAD`` that follows redirects, as registries on object storage answer blob HEADs with a
        307 to a presigned URL (distribution's s3 driver, Docker Hub, ECR, GAR, Quay). 200 means
        present, a 404 from the registry itself absent. Any other answer is not trusted for a blob
        HEAD: presigned URLs are signed for one method, and GHCR, Pulp or GitLab's virtual registries
        redirect a HEAD to a GET-signed URL that answers 403 to it; ECR Public answers 401 to blob
        HEADs. Then a ``GET`` of ``Range: bytes=0-0`` (one byte at most) decides: 200/206 present (416
        too, S3's answer for an empty object), 404 absent, anything else raises ``transport.Error``."""
        if isinstance(repo, LocalRepository):
            return await self.local(repo).blob_exists(digest)
        url = self.url(repo, "blobs", digest)
        response = await self._follow(rt, repo, Request("HEAD", url))
        response.close()
        if response.status == 200:
            return True
        if response.status == 404 and (response.url or url) == url:
            return False
        confirm = await self._follow(rt, repo, Request("GET", url, {"Range": "bytes=0-0"}, stream=True))
        try:
            if confirm.status in (200, 206, 416):
                return True
            if confirm.status == 404:
                return False
            await _check_blob_answer(confirm, url)
        finally:
            confirm.close()
        return True  # pragma: no cover - _check_blob_answer raised

    async def open_blob(self, rt: RoundTripper, repo: Repository, digest: str, *, offset: int = 0) -> Response:
        """A streaming GET of a blob, following redirects to storage (without the registry's
        credentials, and never to a private IP literal on another host).

        With ``offset``, ``Range: bytes=OFFSET-`` is asked; the answer is 206 when the source honoured it
        or 200 with the whole blob when it did not (the caller skips the prefix)."""
        if isinstance(repo, LocalRepository):
            return await self.local(repo).open_blob(digest, offset=offset)
        headers = {"Range": f"bytes={offset}-"} if offset else None
        url = self.url(repo, "blobs", digest)
        response = await self._follow(rt, repo, Request("GET", url, headers, stream=True))
        if response.status != 200 and not (offset and response.status == 206):
            await _check_blob_answer(response, url)
        return response

    async def begin_upload(self, rt: RoundTripper, repo: Repository, *, digest: str = "",
                           mount_from: Repository | None = None) -> Upload | None:
        """``POST .../blobs/uploads/``: ``None`` when the blob was mounted (201), else the new upload.

        With ``mount_from``, ``?mount=<digest>&from=<repo>`` is asked first; any answer but 201 or 202
        (or a transport error) retries once without the mount, as upstream does."""
        if isinstance(repo, LocalRepository):  # a layout's repositories share its blobs: "mounted" if there
            mounted = isinstance(mount_from, LocalRepository) and mount_from.registry == repo.registry
            local_url = await self.local(repo).begin_upload(digest=digest, mounted=mounted)
            return None if local_url is None else Upload(local_url)
        url = self.url(repo, "blobs", "uploads/")
        guard = self.address_guard(repo.registry, storage=True, what="upload Location")
        ask_ip = {"primary_ip": True}  # the registry's address, for the guard's own-address rule
        if mount_from is not None and digest:
            mount_url = with_query(url, mount=digest, **{"from": mount_from.path})
            try:
                response = await self.send(rt, "POST", mount_url, headers={"Content-Type": "application/json"},
                                           body=b"", extensions=ask_ip)
            except OCITransportError:
                response = None
            if response is not None:
                if response.status == 201:
                    return None
                if response.status == 202:
                    return self._upload(resolve_location(response, mount_url, guard), guard, response)
        response = await self.send(rt, "POST", url, headers={"Content-Type": "application/json"}, body=b"",
                                   extensions=ask_ip)
        transport.check_error(response, 202)
        return self._upload(resolve_location(response, url, guard), guard, response)

    def _upload(self, url: str, guard: AddressGuard, response: Response) -> Upload:
        self._hand(url, guard)
        return Upload(url, chunk_min=_chunk_min(response), guard=guard)

    async def start_upload(self, rt: RoundTripper, repo: Repository, *, digest: str = "",
                           mount_from: Repository | None = None) -> str | None:
        """:meth:`begin_upload`, answering only the upload URL (``None`` when mounted)."""
        upload = await self.begin_upload(rt, repo, digest=digest, mount_from=mount_from)
        return None if upload is None else upload.url

    async def upload_chunk(self, rt: RoundTripper, upload: Upload, length: int, body: Body) -> None:
        """``PATCH <upload.url>`` with ``length`` bytes starting at ``upload.offset``; on 202 the upload
        follows the answer's ``Location`` and ``Range`` (the registry's word on what it holds)."""
        local = self._local_upload(upload.url)
        if local is not None:
            return await local.upload_chunk(upload, length, body)
        start = upload.offset
        response = await self.send(rt, "PATCH", upload.url, headers={
            "Content-Type": "application/octet-stream", "Content-Length": str(length),
            "Content-Range": f"{start}-{start + length - 1}"}, body=body, extensions=self._handed_guard(upload.url))
        transport.check_error(response, 202)
        held = _range_end(response.headers.get("Range"))
        upload.offset = start + length if held is None else held
        upload.url = self._relocate(response, upload)

    async def upload_status(self, rt: RoundTripper, upload: Upload) -> bool:
        """``GET <upload.url>``: how much the registry holds (``upload.offset``, from ``Range``) and where to
        go on (``upload.url``). ``False`` when the upload session is gone (404)."""
        local = self._local_upload(upload.url)
        if local is not None:
            return await local.upload_status(upload)
        response = await self.send(rt, "GET", upload.url, extensions=self._handed_guard(upload.url))
        if response.status == 404:
            return False
        transport.check_error(response, 204)
        upload.offset = _range_end(response.headers.get("Range")) or 0
        if response.headers.get("Location"):
            upload.url = self._relocate(response, upload)
        return True

    def _relocate(self, response: Response, upload: Upload) -> str:
        """The next upload URL from ``response``'s ``Location``, under the upload's guard."""
        if upload.guard is None:
            return resolve_location(response, upload.url)
        url = resolve_location(response, upload.url, upload.guard)
        self._hand(url, upload.guard)
        return url

    async def cancel_upload(self, rt: RoundTripper, upload: Upload) -> None:
        """``DELETE <upload.url>``, best effort (registries also expire abandoned uploads)."""
        if is_local(upload.url):
            local = self._local.get(upload.url.rsplit("#upload-", 1)[0])
            if local is not None:
                await local.cancel_upload(upload)
            return
        try:
            response = await self.send(rt, "DELETE", upload.url, extensions=self._handed_guard(upload.url))
            response.close()
        except OCITransportError:
            pass

    async def finish_upload(self, rt: RoundTripper, location: str, digest: str, size: int, body: Body) -> None:
        """``PUT <location>&digest=<digest>`` with the last ``size`` bytes (all of them for a monolithic
        upload, none after PATCHes)."""
        local = self._local_upload(location)
        if local is not None:
            return await local.finish_upload(location, digest, size, body)
        url = with_query(location, digest=digest)
        response = await self.send(rt, "PUT", url, headers={
            "Content-Type": "application/octet-stream", "Content-Length": str(size)}, body=body,
            extensions=self._handed_guard(location))
        transport.check_error(response, 201)
        got = response.headers.get("Docker-Content-Digest")
        if got and got != digest:
            raise DigestMismatch(f"the registry stored {got} for {digest}")


@dataclass
class Upload:
    """An upload session at the destination registry.

    ``url`` is where the next request goes (the latest ``Location``, each one SSRF-checked),
    ``offset`` how many bytes the registry has acknowledged, ``chunk_min`` its
    ``OCI-Chunk-Min-Length`` (0 when it states none)."""

    url: str
    offset: int = 0
    chunk_min: int = 0
    #: The SSRF rule of the registry that began the upload (``None``: the default rule).
    guard: AddressGuard | None = None

    def __repr__(self) -> str:
        return f"Upload({_public(self.url)!r}, offset={self.offset})"


def _registry_name(name: str) -> str:
    """``"docker.io"`` -> ``"index.docker.io"``: a registry as ``Registry.name`` spells it."""
    try:
        return Registry(name).name
    except Exception:  # noqa: BLE001 - an odd spelling is kept as given (it then matches nothing)
        return name


def _chunk_min(response: Response) -> int:
    # A bad value (not ASCII digits, or absurdly long) is ignored: chunks keep our own size.
    return header_number(response.headers.get("OCI-Chunk-Min-Length")) or 0


def _range_end(value: str | None) -> int | None:
    """Bytes held according to an upload's ``Range: 0-<last>`` (``None`` when absent or unreadable).

    ``0-0`` is read as an empty upload: distribution answers it for 0 bytes as well as for 1 (resuming
    from 0 is right for the first and only costs a new upload for the second); ``0--1`` is empty too."""
    if not value:
        return None
    value = value.strip()
    if value.lower().startswith("bytes="):
        value = value[6:]
    first, sep, last = value.partition("-")
    if not sep or first.strip() != "0":
        return None
    last = last.strip()
    if last in ("-1", "0"):
        return 0
    held = parse_number(last)
    return None if held is None else held + 1
