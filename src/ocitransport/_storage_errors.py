"""Registry storage failures that no retry cures (a full disk, a quota, a read-only volume), recognised in
a registry's error answer and said in words. distribution reports a storage driver's error as
``UNKNOWN`` with the Go error as detail (registry/handlers/app.go, ``errcode.ErrorCodeUnknown.WithDetail``):
``{"Op": "write", "Path": "...", "Err": 28}`` for ``*fs.PathError`` with ``syscall.ENOSPC``, which Go
prints as ``map[Err:28 Op:write Path:...]``."""

from __future__ import annotations

import re

__all__ = ["STORAGE_CAUSES", "storage_cause"]

#: Linux errno values (asm-generic/errno-base.h, errno.h) -> what they mean for a registry's storage.
STORAGE_CAUSES = {
    28: "the registry's storage is full (ENOSPC, no space left on device)",
    122: "the registry's storage quota is exceeded (EDQUOT)",
    30: "the registry's storage is read-only (EROFS)",
}
_TEXTS = {
    "no space left on device": 28,
    "disk quota exceeded": 122,
    "read-only file system": 30,
}
_ERRNO = re.compile(r'(?:\bErr:|"Err"\s*:\s*)(\d+)\b')


def storage_cause(text: str) -> str | None:
    """What a registry error's text says about its storage (see :data:`STORAGE_CAUSES`), or ``None``."""
    for match in _ERRNO.finditer(text):
        cause = STORAGE_CAUSES.get(int(match.group(1)))
        if cause is not None:
            return cause
    lowered = text.lower()
    for words, errno in _TEXTS.items():
        if words in lowered:
            return STORAGE_CAUSES[errno]
    return None
