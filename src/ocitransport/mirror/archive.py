"""An OCI archive (``oci-archive:FILE.tar``: an OCI image layout in a plain tar, as skopeo writes it) as a
target: a layout unpacked into a working directory beside the file, packed back when the run wrote to it.

The working directory is ``FILE.ocitransport-partial``: a run that is killed leaves it, and the next run
goes on from it (its complete blobs are kept). A destination archive that exists already is added to: its
images stay, a tag written again is replaced. Packing writes a temporary file in the same directory and
renames it over ``FILE`` last.

Reading a tar is hostile input: only ``oci-layout``, ``index.json`` and ``blobs/<alg>/<hex>`` regular files are
taken (``sha256`` / ``sha512`` digests by the grammar); an absolute name, a ``..``, a link, a device or a
sparse or compressed archive refuses the archive; ``oci-layout`` and ``index.json`` are bounded in size.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tarfile
import tempfile
import weakref
from typing import Any

from ..name import is_digest, shown
from .layout import ALGORITHMS, MAX_INDEX_BYTES, MAX_LAYOUT_FILE, READ_SIZE, Layout, LayoutError, _sync_dir

#: The working directory beside ``FILE`` (kept by a run that did not finish, used by the next).
PARTIAL_SUFFIX = ".ocitransport-partial"
#: Written into the working directory once the existing archive is unpacked in it whole.
UNPACKED_MARK = ".ocitransport-unpacked"

__all__ = ["PARTIAL_SUFFIX", "ArchiveLayout"]


def _cleanup(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class ArchiveLayout(Layout):
    """A :class:`Layout` whose directory is unpacked from (and packed into) the archive ``file``."""

    def __init__(self, file: str, name: str) -> None:
        self.file = file
        partial = file + PARTIAL_SUFFIX
        self._found = os.path.isdir(partial) and not os.path.islink(partial)
        root = partial
        if not self._found:
            try:
                os.mkdir(partial, 0o755)
            except OSError:  # a source on read-only media: unpacked into a temporary directory
                root = tempfile.mkdtemp(prefix="ocitransport-archive-")
        super().__init__(root, name)
        self._opened = False
        # A working directory a killed run left is packed at the end even when this run adds nothing.
        self._dirty = self._found
        # A working directory this run made is removed when the run did not write (planning, dry runs).
        self._finalizer: Any = None if self._found else weakref.finalize(self, _cleanup, root)

    # -- unpacking --------------------------------------------------------------------------------

    def _ensure(self) -> None:
        if self._opened:
            return
        if not os.path.exists(os.path.join(self.root, UNPACKED_MARK)):  # else: a killed run's, unpacked whole
            if os.path.exists(self.file):
                self._unpack()  # raises again on every use when the archive is refused
            else:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(self.root, 0o755)
            with open(os.path.join(self.root, UNPACKED_MARK), "wb"):
                pass
        self._opened = True

    def _unpack(self) -> None:
        try:
            tar = tarfile.open(self.file, "r:")  # noqa: SIM115 - closed below; "r:" refuses compression
        except (tarfile.TarError, OSError) as exc:
            raise LayoutError(f"{self.name}: not a readable tar archive ({exc})") from None
        with tar:
            members = []
            for member in tar:
                name = _member_name(member.name)
                if name is None:
                    raise LayoutError(f"{self.name}: member {shown(member.name)} leaves the archive; refused")
                if member.isdir() and not member.issparse():
                    continue
                if not member.isreg() or member.issparse():
                    raise LayoutError(f"{self.name}: member {shown(member.name)} is not a regular file or "
                                      "directory (a link, device or sparse file); refused")
                if name in ("oci-layout", "index.json"):
                    limit = MAX_LAYOUT_FILE if name == "oci-layout" else MAX_INDEX_BYTES
                    if member.size > limit:
                        raise LayoutError(f"{self.name}: {name} is {member.size} bytes; at most {limit} are read")
                elif not _blob_member(name):
                    continue  # not part of a layout: not taken
                members.append((name, member))
            if not any(n == "oci-layout" for n, _ in members):
                raise LayoutError(f"{self.name}: the archive holds no oci-layout; not an OCI archive")
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.root, 0o755)
            for name, member in members:
                if name.startswith("blobs/"):
                    digest = name[len("blobs/"):].replace("/", ":", 1)
                    path = Layout._blob_path(self, digest, create=True)  # not ours: that one unpacks first
                    if path is not None and os.path.isfile(path) and not os.path.islink(path):
                        continue
                else:
                    path = os.path.join(self.root, name)
                assert path is not None
                source = tar.extractfile(member)
                assert source is not None
                self._copy_in(source, path)

    def _copy_in(self, source: Any, path: str) -> None:
        """``source`` into ``path`` whole or not at all (temporary file, rename)."""
        tmp = os.path.join(self.root, f".ocitransport-{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            with os.fdopen(fd, "wb") as out:
                while piece := source.read(READ_SIZE):
                    out.write(piece)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # -- what the layout does, after unpacking ------------------------------------------------------

    def entries(self) -> Any:
        self._ensure()
        return super().entries()

    def _blob_path(self, digest: str, *, create: bool = False) -> str | None:
        self._ensure()
        return super()._blob_path(digest, create=create)

    def _prepare(self) -> None:
        self._ensure()
        super()._prepare()

    async def _update_index(self, change: Any) -> None:
        self._dirty = True
        if self._finalizer is not None:  # written to: the working directory is kept until packed
            self._finalizer.detach()
            self._finalizer = None
        await super()._update_index(change)

    # -- packing ----------------------------------------------------------------------------------

    async def close(self, *, commit: bool = True) -> None:
        """Pack the working directory into the archive when the run wrote to it (``commit``), then remove
        it; left as it is when packing fails (the next run goes on from it)."""
        await super().close(commit=commit)
        if self._dirty and commit:
            try:
                await asyncio.to_thread(self._pack)
            except OSError as exc:
                if self.root == self.file + PARTIAL_SUFFIX:  # kept for the next run to go on from
                    raise LayoutError(f"{self.name}: cannot write the archive ({exc.strerror or exc}); what "
                                      f"was copied is kept in {self.root}") from None
                shutil.rmtree(self.root, ignore_errors=True)
                raise LayoutError(f"{self.name}: cannot write the archive ({exc.strerror or exc})") from None
            shutil.rmtree(self.root, ignore_errors=True)
        elif self._finalizer is not None:
            self._finalizer()

    def _pack(self) -> None:
        self._ensure()
        directory = os.path.dirname(self.file) or "."
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(self.file)}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    for name in ("oci-layout", "index.json"):
                        _add(tar, os.path.join(self.root, name), name)
                    for algorithm in ALGORITHMS:
                        folder = os.path.join(self.root, "blobs", algorithm)
                        if not os.path.isdir(folder) or os.path.islink(folder):
                            continue
                        for encoded in sorted(os.listdir(folder)):
                            if is_digest(f"{algorithm}:{encoded}"):
                                _add(tar, os.path.join(folder, encoded), f"blobs/{algorithm}/{encoded}")
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _sync_dir(directory)


def _add(tar: tarfile.TarFile, path: str, name: str) -> None:
    """One regular file of the layout into ``tar`` (owner and time left out: the same layout packs the same)."""
    if os.path.islink(path) or not os.path.isfile(path):
        return
    info = tar.gettarinfo(path, arcname=name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    info.mode = 0o644
    with open(path, "rb") as file:
        tar.addfile(info, file)


def _member_name(name: str) -> str | None:
    """A member's name relative to the layout (``./`` dropped), or ``None`` when it is absolute or has
    ``..`` (or is empty)."""
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return "/".join(parts)


def _blob_member(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 3 and parts[0] == "blobs" and parts[1] in ALGORITHMS and is_digest(f"{parts[1]}:{parts[2]}")
