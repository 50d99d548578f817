"""Files written whole or not at all: a temporary file beside the target, renamed over it at the end."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], *, binary: bool, prefix: str, suffix: str = "") -> Iterator[IO[Any]]:
    """Yield a new file in ``path``'s directory (mode 0600, as mkstemp makes it); on leaving the block it
    replaces ``path``, on an error it is removed, so ``path`` is never half-written."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")) as out:
            yield out
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
