"""Targets: where a run reads and writes. A registry repository (``host/repo``), or a local OCI image layout
(``oci:DIR``) or archive (``oci-archive:FILE.tar``), spelled so that every reference of a run stays a plain
string (units are strings; they are parsed again where used).

A layout holds many repositories. ``oci:DIR:TAG`` / ``oci:DIR@DIGEST`` is the layout's own, unnamed
repository, as skopeo and containers/image write it (the tag in ``org.opencontainers.image.ref.name``);
``oci:DIR:HOST/PATH[:TAG|@DIGEST]`` is the repository ``HOST/PATH`` in it (the full name in
``io.containerd.image.name``, as containerd's exporter writes it). ``DIR`` holds neither ``:`` nor ``@``
(containers/image splits at the first ``:`` too).

The code above the Session does not know which kind it talks to: a local repository is a
:class:`LocalRepository` (a :class:`~ocitransport.name.Repository`), its registry a :class:`LocalRegistry`,
and the Session hands its operations to the layout (mirror/layout.py, mirror/archive.py).
"""

from __future__ import annotations

import os
from typing import Any

from ..messages import Request, Response
from ..name import BadName, Digest, Registry, Repository, Tag, is_digest, is_tag, shown
from ..name import parse_reference as parse_registry_reference
from ..roundtrip import RoundTripper
from .errors import MirrorError

#: The transports of local targets, as skopeo spells them.
OCI = "oci"
OCI_ARCHIVE = "oci-archive"
TRANSPORTS = (OCI, OCI_ARCHIVE)

__all__ = ["OCI", "OCI_ARCHIVE", "TRANSPORTS", "LocalRegistry", "LocalRepository", "NoNetwork", "has_identifier",
           "is_local", "local_refused", "local_repository", "parse_reference", "parse_repository"]


class NoNetwork(RoundTripper):
    """What ``Session.pull`` / ``push`` answer for a local target: the Session's operations never send a
    request for one, and this makes sure of it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def round_trip(self, request: Request) -> Response:
        raise MirrorError(f"{self.name}: a local target takes no HTTP request ({request.method})")

    async def round_trip_async(self, request: Request) -> Response:
        return self.round_trip(request)


def is_local(text: str) -> bool:
    """Whether ``text`` names a local target (``oci:...`` or ``oci-archive:...``)."""
    return isinstance(text, str) and text.partition(":")[0] in TRANSPORTS and ":" in text


class LocalRegistry(Registry):
    """An OCI layout or archive standing where a registry would: ``name`` is ``oci:/abs/dir`` or
    ``oci-archive:/abs/file.tar``. Blobs are shared by every repository in it."""

    __slots__ = ("_kind", "_location")

    _kind: str
    _location: str

    def __init__(self, kind: str, location: str) -> None:
        if kind not in TRANSPORTS:
            raise BadName(f"invalid transport {shown(kind)}: expected one of {', '.join(TRANSPORTS)}")
        if not location or ":" in location or "@" in location or "\x00" in location:
            raise BadName(f"invalid {kind} path {shown(location)}: give a path without ':' or '@'")
        location = os.path.abspath(location)
        name = f"{kind}:{location}"
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_host", name)
        object.__setattr__(self, "_port", None)
        object.__setattr__(self, "_insecure", False)
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_location", location)

    @property
    def kind(self) -> str:
        """``oci`` or ``oci-archive``."""
        return self._kind

    @property
    def location(self) -> str:
        """The layout directory or the archive file (absolute)."""
        return self._location

    @property
    def allows_http_fallback(self) -> bool:
        return False

    @property
    def scheme(self) -> str:
        return "file"

    def repo(self, *path: str) -> Repository:
        return LocalRepository(self, "/".join(path))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LocalRegistry):
            return NotImplemented
        return self._name == other._name

    def __hash__(self) -> int:
        return hash((LocalRegistry, self._name))

    def __reduce__(self) -> tuple[Any, ...]:
        return (LocalRegistry, (self._kind, self._location))

    def __repr__(self) -> str:
        return f"LocalRegistry({self._name!r})"


class LocalRepository(Repository):
    """A repository in a local layout: ``path`` is ``""`` for the layout's unnamed repository (skopeo's
    ``oci:DIR:TAG``), else a full repository name (``HOST/PATH``)."""

    __slots__ = ()

    def __init__(self, registry: LocalRegistry, path: str = "") -> None:
        if path:
            path = Repository(path).name  # validated and normalised (docker.io/x -> index.docker.io/library/x)
        object.__setattr__(self, "_registry", registry)
        object.__setattr__(self, "_path", path)

    @property
    def registry(self) -> LocalRegistry:
        registry = self._registry
        assert isinstance(registry, LocalRegistry)
        return registry

    @property
    def name(self) -> str:
        return f"{self._registry.name}:{self._path}" if self._path else self._registry.name

    def scope(self, action: str) -> str:
        return f"local:{self.name}:{action}"

    def tag(self, tag: str) -> Tag:
        return _tag(self, tag)

    def digest(self, digest: str) -> Digest:
        return _digest(self, digest)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LocalRepository):
            return NotImplemented
        return self.name == other.name

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, LocalRepository):
            return NotImplemented
        return self.name < other.name

    def __hash__(self) -> int:
        return hash((LocalRepository, self.name))

    def __reduce__(self) -> tuple[Any, ...]:
        return (LocalRepository, (self._registry, self._path))

    def __repr__(self) -> str:
        return f"LocalRepository({self.name!r})"


def _tag(repo: LocalRepository, tag: str) -> Tag:
    if not is_tag(tag):
        raise BadName(f"invalid tag {shown(tag)} for {repo.name}")
    ref = object.__new__(Tag)
    object.__setattr__(ref, "_repository", repo)
    object.__setattr__(ref, "_tag", tag)
    object.__setattr__(ref, "_original", f"{repo.name}:{tag}")
    return ref


def _digest(repo: LocalRepository, digest: str) -> Digest:
    if not is_digest(digest):
        raise BadName(f"invalid digest {shown(digest)} for {repo.name}")
    ref = object.__new__(Digest)
    object.__setattr__(ref, "_repository", repo)
    object.__setattr__(ref, "_digest", digest)
    object.__setattr__(ref, "_tag", None)
    object.__setattr__(ref, "_original", f"{repo.name}@{digest}")
    return ref


def _split(text: str) -> tuple[LocalRegistry, str]:
    """``oci:DIR[:IMAGE|@DIGEST]`` -> (the layout, ``IMAGE`` / ``@DIGEST`` / ``""``)."""
    kind, _, rest = text.partition(":")
    colon, at = rest.find(":"), rest.find("@")
    if at >= 0 and (colon < 0 or at < colon):
        return LocalRegistry(kind, rest[:at]), rest[at:]
    if colon >= 0:
        return LocalRegistry(kind, rest[:colon]), rest[colon + 1:]
    return LocalRegistry(kind, rest), ""


def local_repository(text: str) -> LocalRepository:
    """``oci:DIR`` or ``oci:DIR:HOST/PATH`` as a repository (a tag or digest in it is refused)."""
    layout, image = _split(text)
    if not image:
        return LocalRepository(layout)
    if image.startswith("@") or "/" not in image:
        raise BadName(f"invalid repository {shown(text)}: a repository cannot name a tag or digest")
    return LocalRepository(layout, Repository(image).name)


def _local_reference(text: str) -> Tag | Digest:
    layout, image = _split(text)
    if not image:
        return _tag(LocalRepository(layout), "latest")
    if image.startswith("@"):
        return _digest(LocalRepository(layout), image[1:])
    if "/" not in image:
        return _tag(LocalRepository(layout), image)
    inner = parse_registry_reference(image)
    repo = LocalRepository(layout, inner.repository.name)
    return _digest(repo, inner.identifier) if isinstance(inner, Digest) else _tag(repo, inner.identifier)


def parse_reference(text: str, *, insecure: bool = False) -> Tag | Digest:
    """:func:`ocitransport.name.parse_reference`, and local references (``oci:DIR:TAG``...)."""
    if is_local(text):
        return _local_reference(text)
    return parse_registry_reference(text, insecure=insecure)


def parse_repository(text: str, *, insecure: bool = False) -> Repository:
    """``Repository(text)``, and local repositories (``oci:DIR``, ``oci:DIR:HOST/PATH``)."""
    if is_local(text):
        return local_repository(text)
    return Repository(text, insecure=insecure)


def has_identifier(reference: str) -> bool:
    """Whether ``reference`` names a tag or digest (``repo:tag``, ``repo@digest``, ``oci:DIR:TAG``), not just
    a repository."""
    if is_local(reference):
        _, image = _split(reference)
        if not image:
            return False
        if image.startswith("@") or "/" not in image:
            return True
        return has_identifier(image)
    return "@" in reference or ":" in reference.rsplit("/", 1)[-1]


def local_refused(target: str) -> str:
    """The line refusing a local target on a distributed executor (its workers have no such directory)."""
    return (f"{target} is a local OCI layout or archive: it is read and written by this process, not by "
            "dask workers (drop --dask)")
