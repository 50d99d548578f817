"""An OCI image layout (image-spec ``image-layout.md``) as a target: the operations the Session has for a
registry (manifests, tags, referrers, blob HEAD / GET / upload) on ``oci-layout``, ``index.json`` and
``blobs/<alg>/<hex>``.

Writes are atomic: a blob goes to a temporary file in the layout, is fsynced and its digest checked, and
only then gets its final name; ``index.json`` is rewritten (temporary file, rename) under an exclusive
``flock`` of the layout directory, after the manifest it names is in place. A run that was killed leaves
at most temporary files (``.ocitransport-*.tmp``, never read) and blobs nothing names yet: the next run skips
the blobs that are complete and goes on.

Everything read from ``index.json`` is untrusted: digests must be ``sha256`` / ``sha512`` digests by the
grammar before they become file names, names must be references, and no symbolic link is followed
inside the layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..exceptions import BodyTooLarge
from ..messages import Body, Response
from ..name import Digest, is_digest, is_media_type, is_tag, shown
from ..name import parse_reference as parse_registry_reference
from .errors import DigestMismatch, MirrorError
from .manifests import MAX_MANIFEST_READ, OCI_INDEX, Manifest, parse_manifest
from .targets import LocalRepository

log = logging.getLogger("ocitransport.mirror")

#: The annotation skopeo and the image spec put the tag in.
REF_NAME = "org.opencontainers.image.ref.name"
#: The annotation containerd puts the full image name in (``REGISTRY/REPO:TAG``): many repositories in one
#: layout.
IMAGE_NAME = "io.containerd.image.name"
#: ``index.json`` is read up to this many bytes (about 100 000 entries).
MAX_INDEX_BYTES = 64 << 20
#: ``oci-layout`` is read up to this many bytes.
MAX_LAYOUT_FILE = 64 << 10
#: Bytes per read of a blob served from a layout.
READ_SIZE = 1 << 20
#: Digest algorithms a layout stores blobs under (the grammar allows more; no file name is made of others).
ALGORITHMS = ("sha256", "sha512")
LAYOUT_VERSION = "1.0.0"
TEMP_PREFIX = ".ocitransport-"
#: Temporary files of a layout older than this (a killed run's) are removed by the next run that writes.
STALE_TEMP_SECONDS = 24 * 3600

__all__ = ["IMAGE_NAME", "MAX_INDEX_BYTES", "REF_NAME", "STALE_TEMP_SECONDS", "Layout", "LayoutError"]


class LayoutError(MirrorError):
    """A layout that cannot be read or written as asked (missing, not a layout, hostile content)."""


@dataclass(frozen=True)
class _Entry:
    """One ``index.json`` entry: ``digest`` is ``""`` when the entry's digest is not a valid one; ``repo``
    the repository of its ``io.containerd.image.name`` (normalised), ``tag`` that name's tag."""

    digest: str
    media_type: str
    ref_name: str
    repo: str
    tag: str
    raw: dict[str, Any]


def _entry(raw: Any) -> _Entry | None:
    if not isinstance(raw, dict):
        return None
    digest, media_type = raw.get("digest"), raw.get("mediaType", "")
    annotations = raw.get("annotations")
    annotations = annotations if isinstance(annotations, dict) else {}
    ref_name = annotations.get(REF_NAME)
    ref_name = ref_name if isinstance(ref_name, str) and is_tag(ref_name) else ""
    repo = tag = ""
    image = annotations.get(IMAGE_NAME)
    if isinstance(image, str) and image:
        try:
            ref = parse_registry_reference(image)
        except ValueError:
            repo = "\x00invalid"  # a name that is no reference belongs to no repository we can name
        else:
            repo = ref.repository.name
            tag = "" if isinstance(ref, Digest) else ref.identifier
    return _Entry(digest if isinstance(digest, str) and is_digest(digest) and
                  digest.partition(":")[0] in ALGORITHMS else "",
                  media_type if isinstance(media_type, str) and is_media_type(media_type) else "",
                  ref_name, repo, tag, raw)


class _Upload(Protocol):
    """What the layout reads and sets of the Session's ``Upload``."""

    url: str
    offset: int


class _Writer:
    """A blob on its way into the layout: a temporary file, hashed as it is written."""

    def __init__(self, path: str) -> None:
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        self.file = os.fdopen(fd, "wb")
        self.size = 0
        self.hasher = hashlib.sha256()

    def write(self, piece: bytes) -> None:
        self.file.write(piece)
        self.hasher.update(piece)
        self.size += len(piece)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class _FileStream:
    """A blob file as a streaming response body (what ``Response`` streams from)."""

    def __init__(self, file: Any, left: int) -> None:
        self.file = file
        self.left = left

    def _chunk(self, n: int = READ_SIZE) -> bytes:
        if self.file is None or self.left <= 0:
            return b""
        piece = self.file.read(min(n if n > 0 else self.left, self.left))
        self.left -= len(piece)
        if not piece:
            self.left = 0
        return bytes(piece)

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while (n < 0 or len(out) < n) and (piece := self._chunk(n - len(out) if n >= 0 else READ_SIZE)):
            out += piece
        return bytes(out)

    def __iter__(self) -> Iterator[bytes]:
        while piece := self._chunk():
            yield piece

    async def aread(self, n: int = -1) -> bytes:
        return self.read(n)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while piece := self._chunk():
            yield piece
            await asyncio.sleep(0)  # other transfers of the loop get their turn

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class Layout:
    """One OCI image layout directory (``root``), shared by every repository in it; ``name`` is how
    messages name it (``oci:/abs/dir``). Created on the first write."""

    def __init__(self, root: str, name: str) -> None:
        self.root = root
        self.name = name
        self._writers: dict[str, _Writer] = {}
        self._lock = asyncio.Lock()
        self._index: tuple[tuple[int, int, int], list[_Entry]] | None = None
        self._subjects: dict[str, str] = {}  # manifest digest -> its subject's digest ("" for none)
        self._checked: set[str] = set()  # directories found to be real directories
        self._prepared = False
        self._preparing = threading.Lock()

    # -- paths ------------------------------------------------------------------------------------

    def _real_dir(self, path: str, *, create: bool) -> bool:
        """Whether ``path`` is a directory and no symbolic link (made when ``create``)."""
        if path in self._checked:
            return True
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not create:
                return False
            os.makedirs(path, 0o755, exist_ok=True)
            st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) and path != self.root:
            raise LayoutError(f"{self.name}: {os.path.relpath(path, self.root)} is a symbolic link; refused")
        if not os.path.isdir(path):
            what = "the layout" if path == self.root else os.path.relpath(path, self.root)
            raise LayoutError(f"{self.name}: {what} is not a directory")
        self._checked.add(path)
        return True

    def _blob_path(self, digest: str, *, create: bool = False) -> str | None:
        """The file of blob ``digest`` (``None`` when its directory does not exist and ``create`` is off).
        Only ``sha256`` / ``sha512`` digests by the grammar become a file name."""
        if not is_digest(digest) or digest.partition(":")[0] not in ALGORITHMS:
            raise LayoutError(f"{self.name}: refused digest {shown(digest)}: not a sha256 or sha512 digest")
        algorithm, _, encoded = digest.partition(":")
        if not self._real_dir(self.root, create=create):
            return None
        blobs = os.path.join(self.root, "blobs")
        if not self._real_dir(blobs, create=create):
            return None
        directory = os.path.join(blobs, algorithm)
        if not self._real_dir(directory, create=create):
            return None
        return os.path.join(directory, encoded)

    def _open(self, path: str) -> Any:
        """``path`` opened for reading, when it is a regular file that is not a symbolic link (else
        ``None`` when it does not exist)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LayoutError(f"{self.name}: {os.path.relpath(path, self.root)} is a symbolic link; "
                                  "refused") from None
            raise LayoutError(f"{self.name}: cannot read {os.path.relpath(path, self.root)}: "
                              f"{exc.strerror}") from None
        file = os.fdopen(fd, "rb")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            file.close()
            raise LayoutError(f"{self.name}: {os.path.relpath(path, self.root)} is not a regular file; refused")
        return file

    def _read_small(self, path: str, limit: int) -> bytes | None:
        file = self._open(path)
        if file is None:
            return None
        with file:
            data = file.read(limit + 1)
        if len(data) > limit:
            raise BodyTooLarge(limit, f"{self.name}: {os.path.relpath(path, self.root)}")
        return bytes(data)

    def _write_file(self, path: str, data: bytes) -> None:
        """Write ``path`` whole or not at all: a temporary file in the layout, fsynced, renamed."""
        tmp = os.path.join(self.root, f"{TEMP_PREFIX}{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _sync_dir(os.path.dirname(path))

    def _prepare(self) -> None:
        """Make the layout (directory, ``oci-layout``, ``blobs/sha256``) for writing; an existing one is
        checked (``imageLayoutVersion`` must be there). Once per layout, however many threads ask."""
        if self._prepared:
            return
        with self._preparing:
            if not self._prepared:
                self._prepare_once()
                self._prepared = True

    def _prepare_once(self) -> None:
        self._real_dir(self.root, create=True)
        marker = os.path.join(self.root, "oci-layout")
        raw = self._read_small(marker, MAX_LAYOUT_FILE)
        if raw is None:
            if any(not n.startswith(".") for n in os.listdir(self.root)) and not os.path.exists(
                    os.path.join(self.root, "index.json")) and not os.path.isdir(os.path.join(self.root, "blobs")):
                raise LayoutError(f"{self.name}: the directory is not empty and is no OCI layout; not writing "
                                  "into it")
            self._write_file(marker, json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())
        else:
            self._check_marker(raw)
        self._blob_path("sha256:" + "0" * 64, create=True)
        self._remove_stale_temps()

    def _remove_stale_temps(self) -> None:
        """Remove the temporary files killed runs left (not written to for :data:`STALE_TEMP_SECONDS`: a
        run in progress keeps writing to its own)."""
        now = time.time()
        for name in os.listdir(self.root):
            if not (name.startswith(TEMP_PREFIX) and name.endswith(".tmp")):
                continue
            path = os.path.join(self.root, name)
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode) and now - st.st_mtime > STALE_TEMP_SECONDS:
                    os.unlink(path)

    def _check_marker(self, raw: bytes) -> None:
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            value = None
        if not isinstance(value, dict) or not isinstance(value.get("imageLayoutVersion"), str):
            raise LayoutError(f"{self.name}: oci-layout is not an OCI layout marker")

    # -- index.json -------------------------------------------------------------------------------

    def _index_data(self) -> dict[str, Any] | None:
        raw = self._read_small(os.path.join(self.root, "index.json"), MAX_INDEX_BYTES)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("manifests", []), list):
            raise LayoutError(f"{self.name}: index.json is not an OCI image index")
        return data

    def entries(self) -> list[_Entry]:
        """The entries of ``index.json`` (none when there is none), read again when the file changed."""
        path = os.path.join(self.root, "index.json")
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            raise LayoutError(f"{self.name}: not a directory") from None
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._index is not None and self._index[0] == key:
            return self._index[1]
        data = self._index_data() or {}
        entries = [e for e in map(_entry, data.get("manifests") or []) if e is not None]
        self._index = (key, entries)
        return entries

    def _mine(self, repo: LocalRepository) -> Callable[[_Entry], bool]:
        if repo.path:
            return lambda e: e.repo == repo.path
        return lambda e: not e.repo

    def _find(self, repo: LocalRepository, tag: str) -> _Entry | None:
        entries = self.entries()
        if repo.path:
            found = [e for e in entries if e.repo == repo.path and e.tag == tag]
        else:
            found = [e for e in entries if not e.repo and e.ref_name == tag] or [
                e for e in entries if e.ref_name == tag]
        if not found:
            return None
        if len({e.digest for e in found}) > 1:
            raise LayoutError(f"{self.name}: tag {tag} names {len(found)} different images in index.json; name "
                              f"the repository ({self.name}:REGISTRY/REPOSITORY:{tag})")
        if not found[-1].digest:
            raise LayoutError(f"{self.name}: index.json lists {tag} with an invalid digest "
                              f"{shown(found[-1].raw.get('digest'))}; refused")
        return found[-1]

    async def _update_index(self, change: Callable[[list[Any]], bool]) -> None:
        """Rewrite ``index.json`` with ``change`` applied to its entries (``change`` answers whether it
        changed anything), under the layout's lock: this process's lock, and an exclusive ``flock`` of the
        layout directory for other processes."""
        def update() -> None:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                data = self._index_data() or {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
                manifests = list(data.get("manifests") or [])
                if change(manifests):
                    data["manifests"] = manifests
                    self._write_file(os.path.join(self.root, "index.json"),
                                     json.dumps(data, indent=2).encode())
            finally:
                os.close(fd)  # releases the flock

        async with self._lock:
            await asyncio.to_thread(update)

    # -- manifests --------------------------------------------------------------------------------

    def _where(self, repo: LocalRepository, ref: str) -> str:
        return f"{repo.name}{'@' if ':' in ref else ':'}{ref}"

    async def head_manifest(self, repo: LocalRepository, ref: str) -> tuple[str, str] | None:
        """``(digest, media_type)`` of ``repo``'s ``ref``; ``None`` when the layout does not hold it (an
        entry whose manifest blob is missing counts as missing: a copy puts it back)."""
        if is_digest(ref):
            entry = next((e for e in self.entries() if e.digest == ref and e.media_type), None)
            if entry is not None and self._has(ref):
                return ref, entry.media_type
            if not self._has(ref):
                return None
            manifest = await self.get_manifest(repo, ref)
            return manifest.digest, manifest.media_type
        entry = self._find(repo, ref)
        if entry is None or not self._has(entry.digest):
            return None
        if entry.media_type:
            return entry.digest, entry.media_type
        manifest = await self.get_manifest(repo, entry.digest)
        return manifest.digest, manifest.media_type

    def _has(self, digest: str) -> bool:
        path = self._blob_path(digest)
        if path is None:
            return False
        try:
            return stat.S_ISREG(os.lstat(path).st_mode)
        except FileNotFoundError:
            return False

    async def get_manifest(self, repo: LocalRepository, ref: str) -> Manifest:
        """The manifest ``ref`` (a tag of ``repo`` or a digest), read up to ``MAX_MANIFEST_READ`` bytes and
        checked against its digest."""
        where = self._where(repo, ref)
        hint = ""
        digest = ref
        if not is_digest(ref):
            entry = self._find(repo, ref)
            if entry is None:
                raise LayoutError(f"{where}: not found in {self.name} (MANIFEST_UNKNOWN)")
            digest, hint = entry.digest, entry.media_type
        path = self._blob_path(digest)
        raw = self._read_small(path, MAX_MANIFEST_READ) if path is not None else None
        if raw is None:
            raise LayoutError(f"{where}: manifest {digest} is not in {self.name} (MANIFEST_UNKNOWN)")
        manifest = parse_manifest(raw, hint, where=where)
        got = manifest.digest if digest.startswith("sha256:") else _digest_of(digest, raw)
        if got != digest:
            raise DigestMismatch(f"{where}: the layout's manifest hashes to {got}, expected {digest}")
        return manifest

    async def put_manifest(self, repo: LocalRepository, ref: str, manifest: Manifest, *,
                           listed: bool = False) -> None:
        """Store ``manifest`` (its exact bytes, as a blob) and, for a tag, point ``repo``'s tag at it in
        ``index.json``; a referrer, or an image copied by digest (``listed``), put by digest is listed in
        ``index.json`` without a tag (that is how a layout holds referrers and untagged images)."""
        await asyncio.to_thread(self._prepare)
        if not self._has(manifest.digest):
            path = self._blob_path(manifest.digest, create=True)
            assert path is not None
            await asyncio.to_thread(self._write_file, path, manifest.raw)
        entry: dict[str, Any] = {"mediaType": manifest.media_type, "digest": manifest.digest,
                                 "size": len(manifest.raw)}
        if manifest.artifact_type and manifest.subject is not None:
            entry["artifactType"] = manifest.artifact_type
        annotations: dict[str, str] = {}
        if is_digest(ref):
            if ref != manifest.digest:
                raise DigestMismatch(f"{self._where(repo, ref)}: the manifest's digest is {manifest.digest}")
            if manifest.subject is None and not listed:
                return  # a child of an index: its parent names it
            if repo.path:
                annotations[IMAGE_NAME] = f"{repo.path}@{ref}"
        else:
            annotations[REF_NAME] = ref
            if repo.path:
                annotations[IMAGE_NAME] = f"{repo.path}:{ref}"
        if annotations:
            entry["annotations"] = annotations
        mine = self._mine(repo)

        def change(manifests: list[Any]) -> bool:
            if is_digest(ref):  # a referrer or an untagged image: listed once, tagged or not
                if any(old is not None and mine(old) and old.digest == ref for old in map(_entry, manifests)):
                    return False
                manifests.append(entry)
                return True
            kept = []
            for raw in manifests:
                old = _entry(raw)
                same = old is not None and mine(old) and (old.tag == ref if repo.path else old.ref_name == ref)
                if same and raw == entry:
                    return False  # already so
                if not same:
                    kept.append(raw)
            manifests[:] = [*kept, entry]
            return True

        await self._update_index(change)

    async def list_tags(self, repo: LocalRepository) -> list[str]:
        """The tags of ``repo`` in ``index.json``, in its order."""
        if repo.path:
            tags = [e.tag for e in self.entries() if e.repo == repo.path and e.tag]
        else:
            tags = [e.ref_name for e in self.entries() if not e.repo and e.ref_name]
        if not tags and not self._real_dir(self.root, create=False):
            raise LayoutError(f"{self.name}: no such layout")
        return list(dict.fromkeys(tags))

    async def list_referrers(self, repo: LocalRepository, digest: str) -> list[dict[str, Any]]:
        """The manifests of ``repo`` in ``index.json`` whose ``subject`` is ``digest`` (as referrers-API
        entries). A layout always answers: it needs no fallback tags."""
        mine = self._mine(repo)
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for entry in self.entries():
            if not entry.digest or entry.digest in seen or not mine(entry) or not self._has(entry.digest):
                continue
            seen.add(entry.digest)
            subject = self._subjects.get(entry.digest)
            manifest = None
            if subject is None:
                try:
                    manifest = await self.get_manifest(repo, entry.digest)
                    subject = manifest.subject.digest if manifest.subject is not None else ""
                except MirrorError as exc:
                    log.warning("%s: not reading %s for referrers: %s", self.name, entry.digest, exc)
                    subject = ""
                self._subjects[entry.digest] = subject
            if subject == digest:
                manifest = manifest or await self.get_manifest(repo, entry.digest)
                out.append(manifest.referrer_entry())
        return out

    # -- blobs ------------------------------------------------------------------------------------

    async def blob_exists(self, digest: str) -> bool:
        return self._has(digest)

    async def open_blob(self, digest: str, *, offset: int = 0) -> Response:
        """The blob as a streaming response: 200, or 206 from ``offset``."""
        path = self._blob_path(digest)
        file = self._open(path) if path is not None else None
        if file is None:
            raise LayoutError(f"{self.name}: blob {digest} is not in the layout (BLOB_UNKNOWN)")
        size = os.fstat(file.fileno()).st_size
        offset = min(max(offset, 0), size)
        headers = {"Content-Length": str(size - offset)}
        if offset:
            file.seek(offset)
            headers["Content-Range"] = f"bytes {offset}-{size - 1}/{size}"
        return Response(206 if offset else 200, headers, stream=_FileStream(file, size - offset),
                        url=f"{self.name}/blobs/{digest}")

    async def begin_upload(self, *, digest: str = "", mounted: bool = False) -> str | None:
        """A temporary file to write a blob into, as the URL the Session's ``Upload`` carries (``None`` when
        ``mounted`` and the layout holds the blob: a layout's repositories share their blobs)."""
        if mounted and digest and self._has(digest):
            return None
        await asyncio.to_thread(self._prepare)
        token = secrets.token_hex(8)
        writer = _Writer(os.path.join(self.root, f"{TEMP_PREFIX}{token}.tmp"))
        url = f"{self.name}#upload-{token}"
        self._writers[url] = writer
        return url

    def _writer(self, upload: _Upload | str) -> _Writer:
        url = upload if isinstance(upload, str) else upload.url
        writer = self._writers.get(url)
        if writer is None:
            raise LayoutError(f"{self.name}: no such upload")
        return writer

    async def _write(self, writer: _Writer, body: Body) -> None:
        if body is None:
            return
        if isinstance(body, (bytes, bytearray, memoryview)):
            writer.write(bytes(body))
            return
        if hasattr(body, "__aiter__"):
            async for piece in body:
                writer.write(piece)
            return
        raise LayoutError(f"{self.name}: unsupported upload body {type(body).__name__}")

    async def upload_chunk(self, upload: _Upload, length: int, body: Body) -> None:
        writer = self._writer(upload)
        await self._write(writer, body)
        upload.offset = writer.size

    async def upload_status(self, upload: _Upload) -> bool:
        writer = self._writers.get(upload.url)
        if writer is None:
            return False
        upload.offset = writer.size
        return True

    async def cancel_upload(self, upload: _Upload) -> None:
        writer = self._writers.pop(upload.url, None)
        if writer is not None:
            writer.discard()

    async def finish_upload(self, location: str, digest: str, size: int, body: Body) -> None:
        """Write the last bytes, fsync, check the digest, then give the blob its name."""
        writer = self._writer(location)
        await self._write(writer, body)
        path = self._blob_path(digest, create=True)
        assert path is not None

        def finish() -> str:
            writer.file.flush()
            os.fsync(writer.file.fileno())
            writer.file.close()
            if digest.startswith("sha256:"):
                return "sha256:" + writer.hasher.hexdigest()
            with open(writer.path, "rb") as file:
                return _digest_of(digest, file)

        try:
            got = await asyncio.to_thread(finish)
            if got != digest:
                raise DigestMismatch(f"{self.name}: the bytes written for {digest} hash to {got}; not stored")
            os.replace(writer.path, path)
            _sync_dir(os.path.dirname(path))
        except BaseException:
            writer.discard()
            raise
        finally:
            self._writers.pop(location, None)

    async def close(self, *, commit: bool = True) -> None:
        """Remove the temporary files of uploads left open (``commit`` matters to archives only)."""
        for writer in self._writers.values():
            writer.discard()
        self._writers.clear()


def _digest_of(digest: str, data: Any) -> str:
    algorithm = digest.partition(":")[0]
    hasher = hashlib.new(algorithm)
    if isinstance(data, bytes):
        hasher.update(data)
    else:
        while piece := data.read(READ_SIZE):
            hasher.update(piece)
    return f"{algorithm}:{hasher.hexdigest()}"


def _sync_dir(path: str) -> None:
    """fsync a directory, so a rename in it survives a crash (best effort: not every filesystem can)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
