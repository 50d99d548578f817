"""The mirror's error type: failures that are not a registry answer."""

from __future__ import annotations

from ..exceptions import OCITransportError

__all__ = ["MirrorError"]


class MirrorError(OCITransportError):
    """A mirroring step failed for a reason that is not a registry answer (digest mismatch, SSRF guard,
    missing Location, a platform that is not in an index...)."""
