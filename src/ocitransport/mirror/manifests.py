"""Manifest media types, parsing, platform matching and index filtering (sans-I/O).

Manifests are copied byte for byte: the parsed JSON is only read to find what a manifest references
(blobs, children), never re-serialised, except for a platform-filtered index, which is a new manifest
by necessity.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from ..exceptions import OCITransportError
from ..name import is_digest, is_media_type, shown

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})

#: Layers whose bytes may not be redistributed: skipped unless asked for (registries accept a manifest
#: that references them without the blob).
NONDISTRIBUTABLE_TYPES = frozenset({
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})

#: What manifest requests accept: every type we copy, plus schema 1 so that it is recognised (and
#: refused with a clear error) rather than converted or hidden by the registry.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST,
                             DOCKER_SCHEMA1_SIGNED, DOCKER_SCHEMA1])

#: What registries accept on PUT (distribution, Docker Hub, ECR, GAR all stop at 4 MiB).
MAX_MANIFEST_PUSH = 4 << 20
#: The most a manifest GET reads (``BodyTooLarge`` beyond it, never a truncated manifest): twice what
#: registries accept on PUT, so a manifest a little over 4 MiB (from a registry with a larger limit) is
#: still read and then refused with its size by the push, while a hostile or broken registry sending an
#: endless body costs at most 8 MiB of memory.
MAX_MANIFEST_READ = 2 * MAX_MANIFEST_PUSH


def valid_digest(digest: object) -> TypeGuard[str]:
    """Whether ``digest`` is a well-formed OCI digest string (``sha256`` and ``sha512`` as lower hex):
    :func:`ocitransport.name.is_digest`, so that a digest can never carry path segments into a URL."""
    return is_digest(digest)


class ManifestError(OCITransportError):
    """A manifest that cannot be mirrored: schema 1, an unknown media type, bad JSON, a wrong digest."""


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    """What a manifest points at: ``media_type``, ``digest``, ``size`` and, for index entries, ``platform``."""

    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None

    @property
    def nondistributable(self) -> bool:
        return self.media_type in NONDISTRIBUTABLE_TYPES

    @property
    def platform_str(self) -> str:
        """``os/arch[/variant]`` or ``""`` when the entry has no platform."""
        return format_platform(self.platform)


@dataclass(frozen=True)
class Manifest:
    """A manifest as fetched: its exact bytes, media type and digest, and what it references."""

    media_type: str
    digest: str
    raw: bytes = field(repr=False)
    data: dict[str, Any] = field(repr=False, compare=False)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def children(self) -> list[Descriptor]:
        """The manifests an index lists (empty for an image)."""
        if not self.is_index:
            return []
        return [_descriptor(d, "manifests[]") for d in _array(self.data, "manifests")]

    @property
    def subject(self) -> Descriptor | None:
        """The manifest this one refers to (OCI 1.1 ``subject``: a signature's image), or ``None``."""
        value = self.data.get("subject")
        return _descriptor(value, "subject") if value is not None else None

    @property
    def artifact_type(self) -> str:
        """What a referrer is, as the referrers API lists it: ``artifactType``, else the config's media
        type (OCI 1.1), else ``""`` (an index without ``artifactType``)."""
        value = self.data.get("artifactType")
        if isinstance(value, str) and value:
            return value
        config = self.data.get("config")
        media_type = config.get("mediaType") if isinstance(config, dict) else None
        return media_type if isinstance(media_type, str) else ""

    def referrer_entry(self) -> dict[str, Any]:
        """This manifest as an entry of a referrers list (the referrers API answer, or the fallback tag's
        index): media type, digest, size, ``artifactType`` and the manifest's ``annotations``."""
        entry: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.raw)}
        if self.artifact_type:
            entry["artifactType"] = self.artifact_type
        annotations = self.data.get("annotations")
        if isinstance(annotations, dict) and annotations:
            entry["annotations"] = annotations
        return entry

    def blobs(self) -> list[Descriptor]:
        """The blobs an image references: its config first, then its layers (empty for an index)."""
        if self.is_index:
            return []
        out: list[Descriptor] = []
        config = self.data.get("config")
        if config is not None:
            out.append(_descriptor(config, "config"))
        out.extend(_descriptor(d, "layers[]") for d in _array(self.data, "layers"))
        return out


def _array(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ManifestError(f"manifest {key} is not an array")
    return value


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise ManifestError(f"manifest {where} is not an object")
    digest, media_type, size = value.get("digest"), value.get("mediaType", ""), value.get("size")
    if not valid_digest(digest):
        raise ManifestError(f"manifest {where} has no valid digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"manifest {where} {digest} has no valid size")
    if media_type != "" and not is_media_type(media_type):
        raise ManifestError(f"manifest {where} {digest} has an invalid media type {shown(media_type)}")
    platform = value.get("platform")
    return Descriptor(str(media_type), digest, size, platform if isinstance(platform, dict) else None)


def _sniff(data: dict[str, Any]) -> str:
    if data.get("schemaVersion") == 1:
        return DOCKER_SCHEMA1
    if "manifests" in data:
        return OCI_INDEX
    if "config" in data or "layers" in data:
        return OCI_MANIFEST
    return ""


def parse_manifest(raw: bytes, content_type: str | None, *, where: str = "manifest") -> Manifest:
    """Parse fetched manifest bytes. The media type is the body's ``mediaType``, else the response's
    ``Content-Type``, else sniffed from the fields. Schema 1 and unknown types raise ``ManifestError``."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ManifestError(f"{where}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise ManifestError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: not a JSON object")
    media_type = data.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        ctype = (content_type or "").split(";")[0].strip()
        media_type = ctype if ctype and ctype not in ("application/json", "application/octet-stream",
                                                      "text/plain") else _sniff(data)
    if media_type in SCHEMA1_TYPES or data.get("schemaVersion") == 1:
        raise ManifestError(f"{where}: Docker schema 1 manifests are deprecated and not supported "
                            "(push the image again with a current client to get schema 2)")
    if media_type not in INDEX_TYPES and media_type not in IMAGE_TYPES:
        text = media_type if len(media_type) <= 200 else media_type[:200] + "..."
        raise ManifestError(f"{where}: unsupported manifest media type {text or '(none)'!r}")
    return Manifest(media_type, sha256_digest(raw), raw, data)


def parse_platform(text: str) -> tuple[str, str, str]:
    """``"linux/arm64/v8"`` -> ``("linux", "arm64", "v8")``; variant may be empty. Raises ValueError."""
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform {text!r} is not os/arch[/variant]")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


def format_platform(platform: dict[str, Any] | None) -> str:
    if not platform:
        return ""
    text = f"{platform.get('os', '')}/{platform.get('architecture', '')}"
    variant = platform.get("variant")
    return f"{text}/{variant}" if variant else text


def platform_matches(platform: dict[str, Any] | None, wanted: list[tuple[str, str, str]]) -> bool:
    """Whether an index entry's ``platform`` is one of ``wanted`` (a wanted entry without a variant
    matches every variant of its os/arch)."""
    if not platform:
        return False
    os_, arch, variant = platform.get("os"), platform.get("architecture"), platform.get("variant") or ""
    return any(os_ == w_os and arch == w_arch and (not w_var or w_var == variant)
               for w_os, w_arch, w_var in wanted)


def filter_index(index: Manifest, keep: list[Descriptor]) -> Manifest:
    """A new index (same media type and annotations) listing only ``keep`` in their original order."""
    wanted = {d.digest for d in keep}
    data = dict(index.data)
    data["manifests"] = [m for m in _array(index.data, "manifests")
                         if isinstance(m, dict) and m.get("digest") in wanted]
    raw = json.dumps(data, indent=2).encode()
    return Manifest(index.media_type, sha256_digest(raw), raw, data)
