"""The sync file: its model, loader and validation (what ``ocitransport sync FILE`` reads; mirror/sync.py runs it).

The file is skopeo sync's YAML, plus what skopeo takes on its command line. Top-level keys are
source registries; a handful of other top-level keys (below) hold the run's options::

    destination: mirror.example.com/mirror   # registry or registry/prefix (--dest overrides it)
    scoped: false        # true: keep the source registry and full path under the destination
    jobs: auto           # images in parallel: a number, or auto (latency-aware, the default)
    retries: 3           # retries per request and per blob
    keep-going: false    # true: after a failure, go on with the other images
    defaults:            # apply to every source registry that does not set them itself
      include: ['^v?[0-9]']        # tags must match one of these regexes (re.search)...
      exclude: ['-rc', '-beta']    # ...and none of these
      platforms: [linux/amd64, linux/arm64]   # copy only these platforms of an index
      referrers: true              # also copy signatures / SBOMs attached to the images
      tls-verify: true

    registry.example.com:
      images:
        busybox: []                 # every tag
        redis: ["7.2", "sha256:..."]  # these tags and digests
      images-by-tag-regex:
        nginx: ^1\\.25\\.[0-9]+-alpine$
      images-by-semver:
        alpine: ">= 3.18, < 4"      # Masterminds / skopeo constraint syntax (see .semver)
      credentials: {username: robot, password: s3cret}   # used for this registry only
      tls-verify: true              # false: plain HTTP allowed, certificates not checked
      cert-dir: /etc/certs/registry.example.com         # *.crt CAs, *.cert + *.key client pair
      allow-private-storage: false  # true: blob storage on private addresses (MinIO on 10.x) is fine
      include: [...]                # per-registry filters and options override `defaults`
      exclude: [...]
      platforms: [...]
      referrers: true

Each repository lands at ``DESTINATION/<last path component>`` as skopeo does (``quay.io/coreos/etcd``
goes to ``DESTINATION/etcd``); with ``scoped: true`` at ``DESTINATION/<registry>/<full path>`` (a
port's colon becomes ``_``: ``localhost:5000/a`` lands at ``DESTINATION/localhost_5000/a``). Tags
keep their name, digests are copied by digest. A repository named in several sections gets the union
of what they select; ``include`` / ``exclude`` then filter every tag (not digests). Two sources that
would land on the same destination reference are reported instead of overwriting each other.

Credentials in the file are wrapped as :class:`ocitransport.authn.Basic` for that registry only (other
registries use the given keychain, by default the docker config); they are never part of a repr, a
log line or an error message. ``tls-verify`` / ``cert-dir`` apply to requests to that registry.

:func:`sync` plans on the calling side (tag lists, semver and regex selection, HEADs of both sides),
then hands the :class:`Plan` to an executor: by default the local one (one Client, one event loop);
any object with the :class:`PlanExecutor` method runs it elsewhere (``mirror.distributed``). Problems in
the file raise :class:`SyncConfigError` with ``FILE:LINE:`` context and one clear line.
"""


from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..authn import Authenticator, Basic, DefaultKeychain, Keychain, Target
from ..name import Registry, Repository
from .concurrency import AUTO, Jobs
from .errors import MirrorError
from .manifests import parse_platform
from .options import RegistryTLS
from .semver import Constraint, SemverError, parse_constraint
from .targets import is_local, local_repository

__all__ = [
    "ImageSelection", "SourceRegistry", "SyncConfig", "SyncConfigError", "SyncKeychain", "load_config", "tls_of",
]


_TOP_KEYS = ("destination", "scoped", "jobs", "retries", "keep-going", "defaults")
_DEFAULT_KEYS = ("include", "exclude", "platforms", "referrers", "tls-verify")
_REGISTRY_KEYS = ("images", "images-by-tag-regex", "images-by-semver", "credentials", "tls-verify",
                  "cert-dir", "include", "exclude", "platforms", "referrers", "allow-private-storage")
_CREDENTIAL_KEYS = ("username", "password")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


class SyncConfigError(MirrorError):
    """A sync file (or dict) that cannot be used: one line, with ``FILE:LINE:`` when known."""


# ------------------------------------------------------------------------------------------- model

@dataclass(frozen=True)
class ImageSelection:
    """What to take from one source repository (``repository`` is its path in the registry).

    The tags copied are the union of ``tags`` (explicit tags), every tag when ``all_tags``, the tags
    matching any ``tag_regex`` (``re.search``) and the version tags satisfying any ``semver``
    constraint. ``digests`` are copied by digest.
    """

    repository: str
    tags: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()
    all_tags: bool = False
    tag_regex: tuple[str, ...] = ()
    semver: tuple[str, ...] = ()

    @property
    def needs_tag_list(self) -> bool:
        return self.all_tags or bool(self.tag_regex) or bool(self.semver)

    def merged(self, other: ImageSelection) -> ImageSelection:
        return replace(self, tags=_union(self.tags, other.tags), digests=_union(self.digests, other.digests),
                       all_tags=self.all_tags or other.all_tags,
                       tag_regex=_union(self.tag_regex, other.tag_regex),
                       semver=_union(self.semver, other.semver))

    def select(self, listed: Sequence[str]) -> list[str]:
        """The tags to copy, given the repository's tag list (explicit tags first, then listed order)."""
        if self.all_tags:
            chosen = list(listed)
        else:
            patterns = [re.compile(p) for p in self.tag_regex]
            constraints: list[Constraint] = [parse_constraint(c) for c in self.semver]
            chosen = [t for t in listed if any(p.search(t) for p in patterns)
                      or any(c.allows(t) for c in constraints)]
        return list(dict.fromkeys([*self.tags, *chosen]))


@dataclass(frozen=True)
class SourceRegistry:
    """One source registry of a sync file and its options (``credentials`` never shows in a repr)."""

    registry: str
    images: tuple[ImageSelection, ...] = ()
    tls_verify: bool = True
    cert_dir: str | None = None
    #: ``allow-private-storage: true``: this registry's blob redirects and upload Locations may lead to
    #: private (RFC 1918 / ULA) addresses (see ``Session``).
    allow_private_storage: bool = False
    credentials: Basic | None = field(default=None, repr=False, compare=False)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    referrers: bool = True

    @property
    def insecure(self) -> bool:
        """Plain HTTP allowed (``tls-verify: false``)."""
        return not self.tls_verify

    def filter(self, tags: Sequence[str]) -> list[str]:
        """``tags`` that match an ``include`` regex (when there are any) and no ``exclude`` regex."""
        inc = [re.compile(p) for p in self.include]
        exc = [re.compile(p) for p in self.exclude]
        return [t for t in tags if (not inc or any(r.search(t) for r in inc))
                and not any(r.search(t) for r in exc)]


@dataclass(frozen=True)
class SyncConfig:
    """A parsed sync file: the source registries and the run's options (see the module docstring)."""

    registries: tuple[SourceRegistry, ...] = ()
    destination: str = ""
    scoped: bool = False
    jobs: Jobs = AUTO
    retries: int = 3
    keep_going: bool = False
    #: Where the configuration came from (a file path, or ``<dict>``), for messages.
    source: str = "<dict>"

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SyncConfig:
        """Read and validate a sync YAML file."""
        return load_config(path)

    @classmethod
    def from_yaml(cls, text: str, source: str = "<yaml>") -> SyncConfig:
        """Parse and validate sync YAML ``text`` (``source`` names it in messages)."""
        data, lines = _parse_yaml(text, source)
        return _Validator(source, lines).config(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> SyncConfig:
        """Validate a sync configuration given as plain data (the YAML file's structure)."""
        return _Validator(source, {}).config(data)

    def keychain(self, fallback: Keychain | None = None) -> Keychain | None:
        """A keychain giving the file's credentials to their registries and asking ``fallback``
        (default: the docker config) for every other; ``fallback`` itself when the file has none."""
        credentials = {s.registry: s.credentials for s in self.registries if s.credentials is not None}
        return SyncKeychain(credentials, fallback) if credentials else fallback

    def with_destination(self, destination: str) -> SyncConfig:
        """This configuration with another destination (what ``--dest`` does)."""
        _check_destination(destination, self.source)
        return replace(self, destination=destination.rstrip("/"))

    def destination_repository(self, source: Repository, path: str) -> str:
        """Where the source repository (``path`` as written in the file) lands."""
        if not self.destination:
            raise SyncConfigError(f"{self.source}: no destination: add 'destination:' or pass --dest")
        if is_local(self.destination):  # one layout holds every repository under its full name
            return f"{self.destination}:{source.name}"
        # A port's colon cannot be in a repository path: "host:5000" becomes "host_5000".
        scope = source.registry.name.lower().replace(":", "_")
        suffix = f"{scope}/{path}" if self.scoped else path.rsplit("/", 1)[-1]
        return f"{self.destination}/{suffix}"


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*a, *b]))


def load_config(path: str | os.PathLike[str]) -> SyncConfig:
    """Read and validate the sync file at ``path``; raises :class:`SyncConfigError`."""
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SyncConfigError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SyncConfigError(f"{name}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return SyncConfig.from_yaml(text, name)


# ------------------------------------------------------------------------------------------- YAML

Path_ = tuple[str, ...]


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[Path_, int]]:
    """The document as plain data, plus the line of every mapping key / item (by its key path)."""
    try:
        import yaml  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise SyncConfigError(f"{source}: reading a sync file needs PyYAML: "
                              "pip install 'ocitransport[yaml]'") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise SyncConfigError(f"{where}: invalid YAML: {' '.join(str(problem).split())}") from None
    if node is None:
        raise SyncConfigError(f"{source}: the file is empty")
    lines: dict[Path_, int] = {}
    constructor = yaml.constructor.SafeConstructor()

    def plain(n: Any, path: Path_) -> Any:
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise SyncConfigError(f"{source}:{key_node.start_mark.line + 1}: a key must be a plain value")
                key = constructor.construct_object(key_node)
                key_text = str(key)
                if key_text in out:
                    raise SyncConfigError(f"{source}:{key_node.start_mark.line + 1}: duplicate key {key_text!r}")
                lines[path + (key_text,)] = key_node.start_mark.line + 1  # noqa: RUF005 - a subscript: * needs 3.11
                out[key_text] = plain(value_node, (*path, key_text))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [plain(item, (*path, str(i))) for i, item in enumerate(n.value)]
        try:
            return constructor.construct_object(n)
        except yaml.YAMLError as exc:
            raise SyncConfigError(f"{source}:{n.start_mark.line + 1}: invalid value: "
                                  f"{getattr(exc, 'problem', exc)}") from None

    return plain(node, ()), lines


# ------------------------------------------------------------------------------------------- validation

class _Validator:
    """Turns plain data into a :class:`SyncConfig`; every error names the file, line and key."""

    def __init__(self, source: str, lines: dict[Path_, int]) -> None:
        self.source = source
        self.lines = lines

    def error(self, path: Path_, message: str) -> SyncConfigError:
        # The nearest known line: the key itself, else its closest parent.
        for i in range(len(path), -1, -1):
            line = self.lines.get(path[:i])
            if line is not None:
                return SyncConfigError(f"{self.source}:{line}: {message}")
        return SyncConfigError(f"{self.source}: {message}")

    def _keys(self, value: Any, path: Path_, allowed: Sequence[str], what: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, f"{what} must be a mapping, not {_type(value)}")
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (expected: {', '.join(allowed)})"
                raise self.error((*path, str(key)), f"{what}: unknown key {str(key)!r}{hint}")
        return dict(value)

    def _bool(self, value: Any, path: Path_) -> bool:
        if not isinstance(value, bool):
            raise self.error(path, f"{'.'.join(path)} must be true or false, not {_type(value)}")
        return value

    def _int(self, value: Any, path: Path_, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(path, f"{'.'.join(path)} must be a whole number >= {minimum}")
        return value

    def _strings(self, value: Any, path: Path_) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise self.error(path, f"{'.'.join(path)} must be a list of strings")
        return tuple(items)

    def _regexes(self, value: Any, path: Path_) -> tuple[str, ...]:
        patterns = self._strings(value, path)
        for i, pattern in enumerate(patterns):
            self._regex(pattern, (*path, str(i)))
        return patterns

    def _regex(self, pattern: str, path: Path_) -> None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise self.error(path, f"bad regular expression {pattern!r}: {exc}") from None

    def _platforms(self, value: Any, path: Path_) -> tuple[str, ...]:
        platforms = self._strings(value, path)
        for i, p in enumerate(platforms):
            try:
                parse_platform(p)
            except ValueError as exc:
                raise self.error((*path, str(i)), str(exc)) from None
        return platforms

    def config(self, data: Any) -> SyncConfig:
        if not isinstance(data, Mapping):
            raise self.error((), f"a sync file is a mapping of registries, not {_type(data)}")
        options: dict[str, Any] = {}
        defaults: dict[str, Any] = {}
        registries: list[tuple[str, Any]] = []
        for key, value in data.items():
            key = str(key)
            path = (key,)
            if key == "destination":
                if not isinstance(value, str):
                    raise self.error(path, "destination must be a string (registry or registry/prefix)")
                try:
                    _check_destination(value, self.source)
                except SyncConfigError as exc:
                    raise self.error(path, str(exc).split(": ", 1)[-1]) from None
                options["destination"] = value.rstrip("/")
            elif key == "scoped":
                options["scoped"] = self._bool(value, path)
            elif key == "keep-going":
                options["keep_going"] = self._bool(value, path)
            elif key == "jobs":
                options["jobs"] = AUTO if value == AUTO else self._int(value, path, 1)
            elif key == "retries":
                options["retries"] = self._int(value, path, 0)
            elif key == "defaults":
                defaults = self._keys(value, path, _DEFAULT_KEYS, "defaults")
            elif _looks_like_registry(key):
                registries.append((key, value))  # validated below, once the defaults are known
            else:
                close = difflib.get_close_matches(key, _TOP_KEYS, n=1)
                hint = (f"did you mean {close[0]!r}?" if close else
                        "a source registry has a '.' or ':' in its name, or is 'localhost'")
                raise self.error(path, f"unknown key {key!r} ({hint})")
        base = self._defaults(defaults)
        parsed = tuple(self._registry(name, value, base) for name, value in registries)
        if not parsed:
            raise self.error((), "no source registries in the file")
        return SyncConfig(registries=parsed, source=self.source, **options)

    def _defaults(self, defaults: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        path = ("defaults",)
        for key, value in defaults.items():
            out.update(self._option(key, value, (*path, key)))
        return out

    def _option(self, key: str, value: Any, path: Path_) -> dict[str, Any]:
        """A filter / option shared by ``defaults`` and a registry, as SourceRegistry fields."""
        if key in ("include", "exclude"):
            return {key: self._regexes(value, path)}
        if key == "platforms":
            return {"platforms": self._platforms(value, path)}
        if key == "referrers":
            return {"referrers": self._bool(value, path)}
        if key == "tls-verify":
            return {"tls_verify": self._bool(value, path)}
        raise AssertionError(key)  # pragma: no cover - keys were checked

    def _registry(self, name: str, value: Any, base: dict[str, Any]) -> SourceRegistry:
        path = (name,)
        try:
            registry = Registry(name)
        except ValueError as exc:
            raise self.error(path, f"invalid registry name {name!r}: {exc}") from None
        body = self._keys({} if value is None else value, path, _REGISTRY_KEYS, name)
        fields: dict[str, Any] = dict(base)
        selections: dict[str, ImageSelection] = {}

        def add(selection: ImageSelection) -> None:
            known = selections.get(selection.repository)
            selections[selection.repository] = known.merged(selection) if known is not None else selection

        for key, item in body.items():
            where = (name, key)
            if key == "images":
                for repo, refs in self._mapping(item, where).items():
                    add(self._explicit(registry, repo, refs, (*where, repo)))
            elif key == "images-by-tag-regex":
                for repo, pattern in self._mapping(item, where).items():
                    self._repository(registry, repo, (*where, repo))
                    if not isinstance(pattern, str):
                        raise self.error((*where, repo), f"{name}: {key}.{repo} must be a regular expression")
                    self._regex(pattern, (*where, repo))
                    add(ImageSelection(repo, tag_regex=(pattern,)))
            elif key == "images-by-semver":
                for repo, constraint in self._mapping(item, where).items():
                    self._repository(registry, repo, (*where, repo))
                    if not isinstance(constraint, str):
                        raise self.error((*where, repo), f"{name}: {key}.{repo} must be a quoted constraint "
                                                         "such as \">= 1.2.0, < 2\"")
                    try:
                        parse_constraint(constraint)
                    except SemverError as exc:
                        raise self.error((*where, repo), f"{name}: bad semver constraint: {exc}") from None
                    add(ImageSelection(repo, semver=(constraint,)))
            elif key == "credentials":
                fields["credentials"] = self._credentials(item, where)
            elif key == "cert-dir":
                if not isinstance(item, str) or not os.path.isdir(item):
                    raise self.error(where, f"{name}: cert-dir must be an existing directory")
                fields["cert_dir"] = item
            elif key == "allow-private-storage":
                fields["allow_private_storage"] = self._bool(item, where)
            else:
                fields.update(self._option(key, item, where))
        if not selections:
            raise self.error(path, f"{name}: no images to sync (add images, images-by-tag-regex or "
                                   "images-by-semver)")
        return SourceRegistry(registry=name, images=tuple(selections.values()), **fields)

    def _mapping(self, value: Any, path: Path_) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, f"{'.'.join(path)} must be a mapping of repositories, not {_type(value)}")
        return dict(value)

    def _repository(self, registry: Registry, repo: str, path: Path_) -> Repository:
        try:
            return Repository(f"{registry.name}/{repo}")
        except ValueError as exc:
            raise self.error(path, f"invalid repository {repo!r} in {registry.name}: {exc}") from None

    def _explicit(self, registry: Registry, repo: str, refs: Any, path: Path_) -> ImageSelection:
        self._repository(registry, repo, path)
        if refs is None or refs == []:
            return ImageSelection(repo, all_tags=True)
        if not isinstance(refs, list):
            raise self.error(path, f"{registry.name}: images.{repo} must be a list of tags and digests "
                                   "([] for every tag)")
        tags: list[str] = []
        digests: list[str] = []
        for i, ref in enumerate(refs):
            if not isinstance(ref, str):
                raise self.error((*path, str(i)), f"{registry.name}: images.{repo}: tag {ref!r} is not a "
                                                  "string (quote tags that look like numbers)")
            if _DIGEST.match(ref):
                digests.append(ref)
            elif _TAG.match(ref):
                tags.append(ref)
            else:
                raise self.error((*path, str(i)), f"{registry.name}: images.{repo}: {ref!r} is neither a tag "
                                                  "nor a digest")
        return ImageSelection(repo, tags=tuple(tags), digests=tuple(digests))

    def _credentials(self, value: Any, path: Path_) -> Basic:
        body = self._keys(value, path, _CREDENTIAL_KEYS, "credentials")
        for key in _CREDENTIAL_KEYS:
            if not isinstance(body.get(key), str) or not body[key]:
                raise self.error((*path, key) if key in body else path,
                                 f"{path[0]}: credentials.{key} must be a non-empty string")
        return Basic(body["username"], body["password"])


def _type(value: Any) -> str:
    return {type(None): "nothing", list: "a list", dict: "a mapping", str: "a string",
            bool: "true/false"}.get(type(value), type(value).__name__)


def _looks_like_registry(key: str) -> bool:
    return "." in key or ":" in key or key == "localhost"


def _check_destination(destination: str, source: str) -> None:
    text = destination.rstrip("/")
    if is_local(text):
        try:
            repo = local_repository(text)
        except ValueError as exc:
            raise SyncConfigError(f"{source}: invalid destination {destination!r}: {exc}") from None
        if repo.path:
            raise SyncConfigError(f"{source}: invalid destination {destination!r}: a sync writes into a whole "
                                  "layout (oci:DIR or oci-archive:FILE), each repository under its own name")
        return
    try:
        if "/" in text:
            Repository(text)
        else:
            Registry(text)
    except ValueError as exc:
        raise SyncConfigError(f"{source}: invalid destination {destination!r}: {exc}") from None
    if not text or ("/" not in text and not _looks_like_registry(text)):
        raise SyncConfigError(f"{source}: invalid destination {destination!r}: expected a registry "
                              "(host[:port]) or registry/prefix")


# ------------------------------------------------------------------------------------------- credentials

class SyncKeychain:
    """The file's credentials, each for its own registry; every other registry asks ``fallback``."""

    def __init__(self, credentials: Mapping[str, Basic], fallback: Keychain | None = None) -> None:
        self._credentials = {Registry(name).name: auth for name, auth in credentials.items()}
        self.fallback = fallback if fallback is not None else DefaultKeychain()

    def resolve(self, target: Target) -> Authenticator:
        if isinstance(target, str):
            name = Registry(target).name
        elif isinstance(target, Registry):
            name = target.name
        else:
            name = target.registry.name  # Repository, Tag, Digest
        found = self._credentials.get(name)
        return found if found is not None else self.fallback.resolve(target)

    def __repr__(self) -> str:
        return f"SyncKeychain(registries={sorted(self._credentials)!r}, fallback={self.fallback!r})"


def file_keychain(path: str, fallback: Keychain | None = None) -> Keychain | None:
    """The keychain of the sync file at ``path`` (its credentials, then ``fallback``): how a dask worker
    gets the file's credentials without them travelling in a task (``RunOptions.sync_file``); ``fallback``
    when ``path`` is empty. Raises :class:`SyncConfigError` when the file cannot be read there."""
    if not path:
        return fallback
    try:
        return SyncConfig.load(path).keychain(fallback)
    except SyncConfigError as exc:
        raise SyncConfigError(f"cannot read the credentials of the sync file on this host "
                              f"(it must exist at the same path on every dask worker): {exc}") from None


# ------------------------------------------------------------------------------------------- TLS

def tls_of(config: SyncConfig) -> tuple[RegistryTLS, ...]:
    """The per-registry TLS settings of ``config``'s sources (``tls-verify`` / ``cert-dir``; paths only)."""
    return tuple(RegistryTLS.from_cert_dir(s.registry, s.cert_dir, verify=s.tls_verify)
                 for s in config.registries if not s.tls_verify or s.cert_dir)
