"""Image names: registries, repositories, tags and digests, parsed and validated as the docker CLI does.

The rules are those of docker/distribution's ``reference`` grammar and go-containerregistry's
``pkg/name``:

- ``""``, ``docker.io`` and ``index.docker.io`` all mean Docker Hub, named ``index.docker.io``
  (:data:`DEFAULT_REGISTRY`); its API is really served from ``registry-1.docker.io``
  (:attr:`Registry.api_host`).
- In ``a/b/c`` the first component is a registry only when it contains ``.`` or ``:`` or is
  ``localhost``; otherwise the whole string is a Docker Hub repository, and a one-part Docker Hub
  name gets ``library/`` (``ubuntu`` -> ``index.docker.io/library/ubuntu``).
- Repository path components are lower-case ``[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*``; a name is
  at most 255 characters. Tags are ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``, ``latest`` by default.
  Digests are ``algorithm:encoded``: ``sha256`` (64 hex) and ``sha512`` (128 hex) are checked
  exactly, other algorithms by the OCI image-spec grammar.
- ``name@digest`` and ``name:tag@digest`` are digest references; the tag is kept for information only.

Every value is immutable, hashable, ordered, picklable, and compares by its normalised form.
Invalid input raises :class:`BadName` with the reason and the offending input in the message.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from typing import Any

from . import _scopes
from .exceptions import OCITransportError

__all__ = [
    "DEFAULT_REGISTRY",
    "DEFAULT_TAG",
    "DOCKER_HUB_API_HOST",
    "BadName",
    "Digest",
    "Reference",
    "Registry",
    "Repository",
    "Tag",
    "is_digest",
    "is_media_type",
    "is_repository_path",
    "is_tag",
    "parse_reference",
    "shown",
]

#: The registry a name without one refers to (Docker Hub), as go-containerregistry spells it.
DEFAULT_REGISTRY = "index.docker.io"
#: The tag a reference without a tag or digest refers to.
DEFAULT_TAG = "latest"
#: The host Docker Hub really serves the registry API from.
DOCKER_HUB_API_HOST = "registry-1.docker.io"

# Names that mean Docker Hub when given as the registry (exact, as docker normalises them).
_DOCKER_HUB_ALIASES = frozenset({"", "docker.io", "index.docker.io"})
_DEFAULT_NAMESPACE = "library"
_NAME_TOTAL_LENGTH_MAX = 255  # docker/distribution reference.NameTotalLengthMax

# docker/distribution grammar (ASCII only: Go's \w is ASCII, Python's is not). Upstream's separator
# ``[-]*`` may be empty, which RE2 matches in linear time but Python's backtracking engine in exponential
# time (26 characters took 15 s); ``-+`` matches the same names, since an empty separator between two
# alphanumeric runs is just a longer run.
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", re.ASCII)
_DOMAIN_NAME = re.compile(
    r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*",
    re.ASCII,
)
_BRACKETED_HOST = re.compile(r"\[([^\]]*)\](?::(.*))?", re.ASCII | re.DOTALL)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
# OCI image-spec descriptor grammar for algorithms we do not know.
_DIGEST_ALGORITHM = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*", re.ASCII)
_DIGEST_ENCODED = re.compile(r"[a-zA-Z0-9=_-]+", re.ASCII)
_KNOWN_DIGESTS = {"sha256": 64, "sha512": 128}
_LOWER_HEX = re.compile(r"[a-f0-9]+", re.ASCII)

# Private IPv4 ranges that the docker CLI and crane reach over plain HTTP (RFC 1918) plus loopback.
_PLAIN_HTTP_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
_MAX_QUOTED = 300  # keep error messages readable when someone passes a megabyte of text
# RFC 6838 section 4.2 restricted-name (type and subtype), at most 127 characters each.
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}", re.ASCII)


class BadName(OCITransportError, ValueError):
    """A registry, repository, tag, digest or reference string is not valid.

    The message says why and quotes the offending input.
    """


def _quote(text: str) -> str:
    # JSON quoting escapes control characters, so a hostile name cannot forge log lines.
    if len(text) > _MAX_QUOTED:
        text = text[:_MAX_QUOTED] + "..."
    return json.dumps(text, ensure_ascii=False)


def _bad(kind: str, text: str, reason: str) -> BadName:
    return BadName(f"invalid {kind} {_quote(text)}: {reason}")


def _require_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    return value


def _split_port(text: str, hostport: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (IPv6 in brackets); validate both; return (host, port)."""
    m = _BRACKETED_HOST.fullmatch(hostport)
    if m:
        literal, port_text = m.group(1), m.group(2)
        if "%" in literal:  # zone ids mean nothing to another host; docker's grammar has none
            raise _bad("registry", text, f"{_quote('[' + literal + ']')} is not a valid IPv6 address")
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise _bad(
                "registry", text, f"{_quote('[' + literal + ']')} is not a valid IPv6 address"
            ) from None
        host = f"[{literal}]"
    else:
        if hostport.startswith("["):
            raise _bad("registry", text, "unterminated '[' in IPv6 address")
        if hostport.count(":") > 1:
            raise _bad("registry", text, "an IPv6 address must be enclosed in brackets, as in [::1]:5000")
        host, sep, port_text_ = hostport.partition(":")
        port_text = port_text_ if sep else None
        if not host:
            raise _bad("registry", text, "missing host name")
        if not _DOMAIN_NAME.fullmatch(host):
            raise _bad(
                "registry",
                text,
                "host must be a domain name (letters, digits, '-' and '.'), an IPv4 address "
                "or a bracketed IPv6 address",
            )
    if port_text is None:
        return host, None
    if not port_text.isascii() or not port_text.isdigit():
        raise _bad("registry", text, "port must be a number")
    port = int(port_text)
    if not 0 < port < 65536:
        raise _bad("registry", text, "port must be between 1 and 65535")
    return host, port


@functools.lru_cache(maxsize=1024)
def _plain_http_host(host: str) -> bool:
    """True for loopback, ``localhost`` names and RFC 1918 addresses (``host`` without port).

    Cached: every request URL a mirror builds asks it, and parsing the IP literal showed up at 13 %
    of client CPU in the mirror benchmark's profile; a run only ever sees a handful of hosts."""
    lowered = host.lower()
    if lowered == "localhost" or lowered.endswith(".localhost"):
        return True
    literal = lowered[1:-1] if lowered.startswith("[") else lowered
    try:
        ip = ipaddress.ip_address(literal)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is None:
            return ip.is_loopback
        ip = ip.ipv4_mapped
    return any(ip in net for net in _PLAIN_HTTP_NETWORKS)


def _rebuild(cls: type, text: str, insecure: bool) -> Any:
    # Pickle support: re-parse from the text, so an unpickled value is validated like a new one.
    return cls(text, insecure=insecure)


class _Frozen:
    """Immutability for the slotted value types below."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")


@functools.total_ordering
class Registry(_Frozen):
    """A registry host, ``host[:port]``: ``Registry("ghcr.io")``, ``Registry("[::1]:5000")``.

    ``Registry("")``, ``Registry("docker.io")`` and ``Registry("index.docker.io")`` are Docker Hub,
    named ``index.docker.io``. ``insecure=True`` allows plain HTTP to any host.
    """

    __slots__ = ("_host", "_insecure", "_name", "_port")

    _name: str
    _host: str
    _port: int | None
    _insecure: bool

    def __init__(self, name: str = "", *, insecure: bool = False) -> None:
        _require_str(name, "registry name")
        if name in _DOCKER_HUB_ALIASES:
            name = DEFAULT_REGISTRY
        if "://" in name:
            raise _bad("registry", name, "a registry is host[:port], without a scheme")
        if "/" in name:
            raise _bad("registry", name, "a registry is host[:port], without a path")
        host, port = _split_port(name, name)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_host", host)
        object.__setattr__(self, "_port", port)
        object.__setattr__(self, "_insecure", bool(insecure))

    @property
    def name(self) -> str:
        """The registry as written, Docker Hub normalised: ``index.docker.io``, ``localhost:5000``."""
        return self._name

    def registry_str(self) -> str:
        """The registry component (go-containerregistry's ``RegistryStr()``); same as :attr:`name`."""
        return self._name

    @property
    def host(self) -> str:
        """The host without the port; IPv6 literals keep their brackets (``[::1]``)."""
        return self._host

    @property
    def port(self) -> int | None:
        """The port given in the name, or ``None``."""
        return self._port

    @property
    def insecure(self) -> bool:
        """True when the caller asked for plain HTTP to be allowed for this registry."""
        return self._insecure

    @property
    def is_docker_hub(self) -> bool:
        """True for Docker Hub (``index.docker.io``)."""
        return self._name == DEFAULT_REGISTRY

    @property
    def api_host(self) -> str:
        """The ``host[:port]`` the registry API is served from (``registry-1.docker.io`` for Docker Hub)."""
        return DOCKER_HUB_API_HOST if self._name == DEFAULT_REGISTRY else self._name

    @property
    def allows_http_fallback(self) -> bool:
        """True when plain HTTP may be tried if HTTPS fails.

        That is when ``insecure`` was given, or the host is ``localhost``, ``*.localhost``, a loopback
        address (127.0.0.0/8, ``::1``) or an RFC 1918 address, with or without a port. This is broader
        than go-containerregistry, which only accepts ``localhost`` with a port (docs/deviations.md).
        """
        return self._insecure or _plain_http_host(self._host)

    @property
    def scheme(self) -> str:
        """``"http"`` when :attr:`allows_http_fallback`, else ``"https"`` (as ggcr's ``Scheme()``)."""
        return "http" if self.allows_http_fallback else "https"

    def scope(self, action: str = "") -> str:
        """The token scope for registry-wide access: always ``registry:catalog:*`` (``action`` is ignored)."""
        return _scopes.registry_scope()

    def repo(self, *path: str) -> Repository:
        """The repository ``path`` (components joined with ``/``) in this registry."""
        return Repository(f"{self._name}/{'/'.join(path)}", insecure=self._insecure)

    def _key(self) -> tuple[str, bool]:
        return (self._name, self._insecure)

    def __str__(self) -> str:
        return self._name

    def __repr__(self) -> str:
        extra = ", insecure=True" if self._insecure else ""
        return f"Registry({self._name!r}{extra})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not Registry:
            return NotImplemented
        return self._key() == other._key()

    def __lt__(self, other: object) -> bool:
        if type(other) is not Registry:
            return NotImplemented
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash((Registry, self._key()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (Registry, self._name, self._insecure))


def _check_path(text: str, path: str) -> None:
    if not path:
        raise _bad("repository", text, "a repository name must be specified")
    if ":" in path or "@" in path:
        raise _bad(
            "repository",
            text,
            "a repository name cannot contain a tag or digest; use Tag, Digest or parse_reference",
        )
    for component in path.split("/"):
        if not component:
            raise _bad(
                "repository", text, "path components must not be empty (no leading, trailing or double '/')"
            )
        if _PATH_COMPONENT.fullmatch(component):
            continue
        if _PATH_COMPONENT.fullmatch(component.lower()):
            raise _bad("repository", text, "repository name must be lowercase")
        raise _bad(
            "repository",
            text,
            f"path component {_quote(component)} must be lower-case letters and digits, separated by "
            "'.', '_', '__' or dashes, starting and ending with a letter or digit",
        )


def _split_repository(text: str) -> tuple[str, str]:
    """Split ``[registry/]path`` into (registry as written, path as written), docker's way."""
    first, sep, rest = text.partition("/")
    # docker/distribution: the first component is a domain iff it has '.' or ':' or is localhost.
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "", text


@functools.total_ordering
class Repository(_Frozen):
    """A repository: ``Repository("ubuntu")`` is ``index.docker.io/library/ubuntu``.

    ``registry`` is the :class:`Registry`; :meth:`repository_str` the path (``library/ubuntu``).
    """

    __slots__ = ("_path", "_registry")

    _registry: Registry
    _path: str

    def __init__(self, name: str, *, insecure: bool = False) -> None:
        _require_str(name, "repository name")
        if not name:
            raise BadName('invalid repository "": a repository name must be specified')
        if len(name) > _NAME_TOTAL_LENGTH_MAX:
            raise _bad(
                "repository",
                name,
                f"repository name must not be more than {_NAME_TOTAL_LENGTH_MAX} characters",
            )
        if "://" in name:
            raise _bad("repository", name, "a repository name cannot include a URL scheme")
        registry_text, path = _split_repository(name)
        try:
            registry = Registry(registry_text, insecure=insecure)
        except BadName as exc:
            raise _bad("repository", name, str(exc)) from None
        _check_path(name, path)
        if registry.is_docker_hub and "/" not in path:
            path = f"{_DEFAULT_NAMESPACE}/{path}"
            if len(path) > _NAME_TOTAL_LENGTH_MAX:
                raise _bad(
                    "repository",
                    name,
                    f"repository name must not be more than {_NAME_TOTAL_LENGTH_MAX} characters",
                )
        object.__setattr__(self, "_registry", registry)
        object.__setattr__(self, "_path", path)

    @property
    def registry(self) -> Registry:
        """The registry this repository lives in."""
        return self._registry

    def registry_str(self) -> str:
        """The registry name, ``index.docker.io`` for Docker Hub."""
        return self._registry.name

    def repository_str(self) -> str:
        """The repository path in the registry, ``library/``-prefixed on Docker Hub: ``library/ubuntu``."""
        return self._path

    @property
    def path(self) -> str:
        """Same as :meth:`repository_str`."""
        return self._path

    @property
    def name(self) -> str:
        """The full name: ``index.docker.io/library/ubuntu``."""
        return f"{self._registry.name}/{self._path}"

    def scope(self, action: str) -> str:
        """The token scope for ``action`` (``"pull"``, ``"push,pull"``...): ``repository:library/ubuntu:pull``."""
        return _scopes.repository_scope(self._path, action)

    def tag(self, tag: str) -> Tag:
        """The tag ``tag`` of this repository (validated)."""
        _check_tag(self.name, _require_str(tag, "tag"))
        return Tag(f"{self.name}:{tag}", insecure=self._registry.insecure)

    def digest(self, digest: str) -> Digest:
        """The manifest ``digest`` of this repository (validated)."""
        return Digest(f"{self.name}@{_require_str(digest, 'digest')}", insecure=self._registry.insecure)

    def _key(self) -> tuple[str, bool, str]:
        return (*self._registry._key(), self._path)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        extra = ", insecure=True" if self._registry.insecure else ""
        return f"Repository({self.name!r}{extra})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not Repository:
            return NotImplemented
        return self._key() == other._key()

    def __lt__(self, other: object) -> bool:
        if type(other) is not Repository:
            return NotImplemented
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash((Repository, self._key()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (Repository, self.name, self._registry.insecure))


def _check_tag(text: str, tag: str) -> None:
    if not tag:
        raise _bad("reference", text, "tag must not be empty")
    if len(tag) > 128:
        raise _bad("reference", text, "tag must be at most 128 characters")
    if _TAG.fullmatch(tag):
        return
    if tag[0] in ".-":
        raise _bad("reference", text, f"tag {_quote(tag)} must start with a letter, digit or '_'")
    raise _bad("reference", text, f"tag {_quote(tag)} may contain only letters, digits, '_', '.' and '-'")


def _check_digest(text: str, digest: str) -> None:
    algorithm, sep, encoded = digest.partition(":")
    if not sep or not algorithm or not encoded:
        raise _bad("reference", text, f"digest {_quote(digest)} must be formatted as algorithm:encoded")
    expected = _KNOWN_DIGESTS.get(algorithm)
    if expected is not None:
        if len(encoded) != expected or not _LOWER_HEX.fullmatch(encoded):
            raise _bad("reference", text, f"{algorithm} digest must be {expected} lower-case hex characters")
        return
    if not _DIGEST_ALGORITHM.fullmatch(algorithm):
        raise _bad("reference", text, f"digest algorithm {_quote(algorithm)} is not valid")
    if not _DIGEST_ENCODED.fullmatch(encoded):
        raise _bad("reference", text, f"encoded part of digest {_quote(digest)} is not valid")


# -- validation of strings that come from a server (headers, manifests, tag lists) -----------------
# Predicates, not parsers: a registry's answer is checked against the reference grammar before any of
# it goes into a URL, a file name or a log line, and the caller says what failed in its own words.


def is_tag(value: object) -> bool:
    """Whether ``value`` is a tag by the reference grammar (``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``)."""
    return isinstance(value, str) and _TAG.fullmatch(value) is not None


def is_digest(value: object) -> bool:
    """Whether ``value`` is an OCI descriptor digest (``algorithm:encoded``; ``sha256`` exactly 64 and
    ``sha512`` exactly 128 lower-case hex characters, other algorithms by the image-spec grammar, at
    most 1024 characters in all)."""
    if not isinstance(value, str) or len(value) > 1024:
        return False
    algorithm, sep, encoded = value.partition(":")
    if not sep or not algorithm or not encoded:
        return False
    expected = _KNOWN_DIGESTS.get(algorithm)
    if expected is not None:
        return len(encoded) == expected and _LOWER_HEX.fullmatch(encoded) is not None
    return _DIGEST_ALGORITHM.fullmatch(algorithm) is not None and _DIGEST_ENCODED.fullmatch(encoded) is not None


def is_repository_path(value: object) -> bool:
    """Whether ``value`` is a repository path (``a/b/c``: lower-case components, at most 255 characters)."""
    if not isinstance(value, str) or not value or len(value) > _NAME_TOTAL_LENGTH_MAX:
        return False
    return all(_PATH_COMPONENT.fullmatch(c) for c in value.split("/"))


def is_media_type(value: object) -> bool:
    """Whether ``value`` is a media type ``type/subtype`` by RFC 6838 section 4.2 (no parameters)."""
    return isinstance(value, str) and _MEDIA_TYPE.fullmatch(value) is not None


def shown(value: object) -> str:
    """A server string safe to put in one log or error line: quoted, control characters escaped, cut
    at 300 characters."""
    return _quote(value if isinstance(value, str) else repr(value))


def _split_tag(base: str) -> tuple[str, str | None]:
    """``name[:tag]`` -> (name, tag or None); a ``:`` before the last ``/`` is a port, not a tag."""
    colon = base.rfind(":")
    if colon > base.rfind("/"):
        return base[:colon], base[colon + 1 :]
    return base, None


class _ReferenceBase(_Frozen):
    """What :class:`Tag` and :class:`Digest` share (go-containerregistry's ``Reference``)."""

    __slots__ = ("_original", "_repository")

    _repository: Repository
    _original: str

    @property
    def repository(self) -> Repository:
        """The repository this reference points into."""
        return self._repository

    @property
    def context(self) -> Repository:
        """Same as :attr:`repository` (go-containerregistry's ``Context()``)."""
        return self._repository

    @property
    def registry(self) -> Registry:
        """The registry of the repository."""
        return self._repository.registry

    def registry_str(self) -> str:
        """The registry name, ``index.docker.io`` for Docker Hub."""
        return self._repository.registry_str()

    def repository_str(self) -> str:
        """The repository path, ``library/``-prefixed on Docker Hub."""
        return self._repository.repository_str()

    def scope(self, action: str) -> str:
        """The token scope for ``action`` on the repository."""
        return self._repository.scope(action)

    @property
    def identifier(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def name(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def __str__(self) -> str:
        """The original input string, as go-containerregistry's ``String()``; see :attr:`name`."""
        return self._original

    def __repr__(self) -> str:
        extra = ", insecure=True" if self._repository.registry.insecure else ""
        return f"{type(self).__name__}({self.name!r}{extra})"

    def _key(self) -> tuple[Any, ...]:
        return (*self._repository._key(), self.identifier)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __lt__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return bool(self._key() < other._key())

    def __le__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return bool(self._key() <= other._key())

    def __gt__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return bool(self._key() > other._key())

    def __ge__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return bool(self._key() >= other._key())

    def __hash__(self) -> int:
        return hash((type(self), self._key()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._original, self._repository.registry.insecure))


def _repository_of(ref: str, base: str, insecure: bool) -> Repository:
    try:
        return Repository(base, insecure=insecure)
    except BadName as exc:
        if base == ref:
            raise
        raise _bad("reference", ref, str(exc)) from None


class Tag(_ReferenceBase):
    """A tag reference: ``Tag("ubuntu")`` is ``index.docker.io/library/ubuntu:latest``.

    ``str()`` is the original input (as go-containerregistry); :attr:`name` the full reference.
    """

    __slots__ = ("_tag",)

    _tag: str

    def __init__(self, ref: str, *, insecure: bool = False) -> None:
        _require_str(ref, "reference")
        if not ref:
            raise BadName('invalid reference "": a repository name must be specified')
        if "@" in ref:
            raise _bad("tag", ref, "a tag reference cannot contain a digest; use Digest or parse_reference")
        base, tag = _split_tag(ref)
        if tag is not None:
            _check_tag(ref, tag)
        object.__setattr__(self, "_repository", _repository_of(ref, base, insecure))
        object.__setattr__(self, "_tag", DEFAULT_TAG if tag is None else tag)
        object.__setattr__(self, "_original", ref)

    @property
    def tag(self) -> str:
        """The tag, ``latest`` when none was given."""
        return self._tag

    def tag_str(self) -> str:
        """Same as :attr:`tag` (go-containerregistry's ``TagStr()``)."""
        return self._tag

    @property
    def identifier(self) -> str:
        """The tag (what goes after ``/manifests/`` in a URL)."""
        return self._tag

    @property
    def name(self) -> str:
        """The full reference: ``index.docker.io/library/ubuntu:latest``."""
        return f"{self._repository.name}:{self._tag}"


class Digest(_ReferenceBase):
    """A digest reference: ``Digest("ubuntu@sha256:...")``, or ``Digest("ubuntu:22.04@sha256:...")``.

    A tag given with the digest is kept in :attr:`tag` for information only; the digest decides.
    """

    __slots__ = ("_digest", "_tag")

    _digest: str
    _tag: str | None

    def __init__(self, ref: str, *, insecure: bool = False) -> None:
        _require_str(ref, "reference")
        base, sep, digest = ref.partition("@")
        if not sep:
            raise _bad(
                "digest reference", ref, "a digest reference must contain '@' (repository@algorithm:hex)"
            )
        if "@" in digest:
            raise _bad("digest reference", ref, "a digest reference must contain exactly one '@'")
        if not base:
            raise _bad("digest reference", ref, "a repository name must be specified")
        _check_digest(ref, digest)
        base, tag = _split_tag(base)
        if tag is not None:
            _check_tag(ref, tag)
        object.__setattr__(self, "_repository", _repository_of(ref, base, insecure))
        object.__setattr__(self, "_digest", digest)
        object.__setattr__(self, "_tag", tag)
        object.__setattr__(self, "_original", ref)

    @property
    def digest(self) -> str:
        """The digest, ``algorithm:encoded``."""
        return self._digest

    def digest_str(self) -> str:
        """Same as :attr:`digest` (go-containerregistry's ``DigestStr()``)."""
        return self._digest

    @property
    def tag(self) -> str | None:
        """The tag written before the digest (``name:tag@digest``), or ``None``; informational only."""
        return self._tag

    @property
    def identifier(self) -> str:
        """The digest (what goes after ``/manifests/`` in a URL)."""
        return self._digest

    @property
    def name(self) -> str:
        """The full reference without the informational tag: ``index.docker.io/library/ubuntu@sha256:...``."""
        return f"{self._repository.name}@{self._digest}"


Reference = Tag | Digest


def parse_reference(s: str, *, insecure: bool = False) -> Tag | Digest:
    """Parse an image reference: a :class:`Digest` when it contains ``@``, else a :class:`Tag`."""
    _require_str(s, "reference")
    if "@" in s:
        return Digest(s, insecure=insecure)
    return Tag(s, insecure=insecure)
