"""The mirror's error type: failures that are not a registry answer."""

from __future__ import annotations

from ..exceptions import OCITransportError

__all__ = ["DigestMismatch", "MirrorError", "SizeMismatch"]


class MirrorError(OCITransportError):
    """A mirroring step failed for a reason that is not a registry answer (digest mismatch, SSRF guard,
    missing Location, a platform that is not in an index...)."""


class DigestMismatch(MirrorError):
    """The bytes that came from the source do not hash to the digest the manifest names."""


class SizeMismatch(DigestMismatch):
    """The source sent a blob body shorter or longer than the manifest declares (or declared such a
    length). Worth another attempt: a proxy that cuts or mislabels a body causes it as well as a
    registry that stores the wrong blob."""
