"""What a copy or mirror run did: ``Report`` and its per-image ``ImageResult``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..transport.limit import LimitStats
    from .session import PullQuota

Status = Literal["copied", "skipped", "failed", "planned"]


@dataclass
class ImageResult:
    """One unit's outcome: ``source`` and ``destination`` references, the manifest ``digest`` the
    destination now has (or would have), ``status`` and, when it failed, ``error``."""

    source: str
    destination: str
    status: Status
    digest: str = ""
    media_type: str = ""
    platforms: list[str] = field(default_factory=list)
    blobs_transferred: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    bytes_transferred: int = 0
    error: str = ""
    note: str = ""


@dataclass
class Report:
    """Totals of a run plus one ``ImageResult`` per image.

    ``ok`` is true when every image was copied or skipped. ``errors`` lists ``(reference, message)``
    for every failure, planning failures included (a missing tag, an unreachable registry).

    Politeness (see ``ocitransport.transport.limit``): ``throttle_events`` counts the 429 / 503 answers,
    ``throttled_seconds`` the wall-clock time a registry asked us to pause (``Retry-After``),
    ``queued_seconds`` the time requests were held back for a pause or a concurrency slot (summed over
    requests), ``lowest_concurrency`` the smallest concurrency limit a registry was cut to (0: none was).

    ``pull_quota``: for registries that state a pull quota on manifest answers (Docker Hub's
    ``RateLimit-*`` headers), the lowest seen in the run: ``{registry: {"remaining": 76, "limit": 100,
    "window_seconds": 21600}}`` (``limit`` / ``window_seconds`` 0 when not stated).
    """

    images_copied: int = 0
    images_skipped: int = 0
    images_failed: int = 0
    images_not_attempted: int = 0
    blobs_transferred: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    bytes_transferred: int = 0
    retries: int = 0
    throttle_events: int = 0
    throttled_seconds: float = 0.0
    queued_seconds: float = 0.0
    lowest_concurrency: int = 0
    duration: float = 0.0
    dry_run: bool = False
    #: Images in flight: the fixed ``jobs``, or what ``auto`` chose (``"auto: 16 (peak 32, ceiling 64)"``).
    concurrency: str = ""
    #: Per registry (``host:port``): ``{"connections": new TCP connections, "tls_handshakes": n}``.
    connections: dict[str, dict[str, int]] = field(default_factory=dict)
    images: list[ImageResult] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    pull_quota: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors and self.images_failed == 0 and self.images_not_attempted == 0

    @classmethod
    def of_plan(cls, errors: Iterable[tuple[str, str]], *, dry_run: bool = False) -> Report:
        """A report that starts with a plan's planning failures ``(reference, message)``."""
        report = cls(dry_run=dry_run)
        for ref, message in errors:
            report.fail(ref, message)
        return report

    def list_planned(self, units: Iterable[Any]) -> None:
        """A dry run's results: every planned unit as ``planned``, or ``skipped`` when up to date."""
        for unit in units:
            self.add(ImageResult(unit.source, unit.destination, "skipped" if unit.up_to_date else "planned",
                                 unit.target_digest, unit.media_type, list(unit.platforms)))

    def not_started(self, units: int, started: float) -> Report:
        """Nothing ran: planning failed and the run was not to keep going; ``units`` are not attempted."""
        self.images_not_attempted = units
        self.duration = time.monotonic() - started
        return self

    def add(self, result: ImageResult) -> None:
        """Count one image's result in the totals."""
        self.images.append(result)
        if result.status == "copied":
            self.images_copied += 1
        elif result.status == "skipped":
            self.images_skipped += 1
        elif result.status == "failed":
            self.images_failed += 1
            self.errors.append((result.source, result.error))
        self.blobs_transferred += result.blobs_transferred
        self.blobs_mounted += result.blobs_mounted
        self.blobs_skipped += result.blobs_skipped
        self.bytes_transferred += result.bytes_transferred

    def fail(self, reference: str, message: str) -> None:
        """Record a failure that is not one image's (planning: listing tags, resolving a reference)."""
        self.errors.append((reference, message))

    def merge(self, other: Report) -> None:
        """Add ``other``'s images, errors and counters (for runs split across workers)."""
        for result in other.images:
            self.add(result)
        self.errors.extend(e for e in other.errors if e not in self.errors)
        self.retries += other.retries
        self.throttle_events += other.throttle_events
        self.throttled_seconds = max(self.throttled_seconds, other.throttled_seconds)
        self.queued_seconds += other.queued_seconds
        if other.lowest_concurrency:
            self.lowest_concurrency = min(self.lowest_concurrency or other.lowest_concurrency,
                                          other.lowest_concurrency)
        self.duration = max(self.duration, other.duration)
        self.note_concurrency(self.concurrency or other.concurrency, other.connections)
        for registry, quota in other.pull_quota.items():
            self._lower_quota(registry, quota)

    def note_pull_quota(self, quotas: Mapping[str, PullQuota]) -> None:
        """Take a session's pull quotas (the lowest per registry wins)."""
        for registry, q in quotas.items():
            self._lower_quota(registry, {"remaining": q.remaining, "limit": q.limit,
                                         "window_seconds": q.window_seconds})

    def _lower_quota(self, registry: str, quota: dict[str, int]) -> None:
        seen = self.pull_quota.get(registry)
        if seen is None or quota["remaining"] < seen["remaining"]:
            self.pull_quota[registry] = dict(quota)

    def quota_text(self) -> str:
        """``registry-1.docker.io: 76 of 100 pulls left per 6 h`` for each registry that stated a quota."""
        parts = []
        for registry, q in sorted(self.pull_quota.items()):
            text = f"{registry}: {q['remaining']}"
            if q.get("limit"):
                text += f" of {q['limit']}"
            text += " pulls left"
            window = q.get("window_seconds", 0)
            if window:
                text += f" per {window / 3600:g} h" if window % 360 == 0 else f" per {window} s"
            parts.append(text)
        return ", ".join(parts)

    def _concurrency_text(self) -> str:
        if not self.concurrency:
            return ""
        conns = ", ".join(f"{r} {c.get('connections', 0)} ({c.get('tls_handshakes', 0)} TLS)"
                          for r, c in self.connections.items())
        return f"; jobs {self.concurrency}" + (f"; new connections: {conns}" if conns else "")

    def note_concurrency(self, chosen: str, connections: dict[str, dict[str, int]]) -> None:
        """What the run's concurrency was, and the connections it opened per registry."""
        self.concurrency = chosen
        for registry, counts in connections.items():
            mine = self.connections.setdefault(registry, {"connections": 0, "tls_handshakes": 0})
            for key, n in counts.items():
                mine[key] = mine.get(key, 0) + n

    def note_limits(self, stats: LimitStats) -> None:
        """Take the politeness counters of a run (``LimitBackend.stats()``)."""
        self.throttle_events = stats.throttle_events
        self.throttled_seconds = stats.paused_seconds
        self.queued_seconds = stats.queued_seconds
        self.lowest_concurrency = stats.lowest_limit

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        out["errors"] = [{"reference": ref, "error": msg} for ref, msg in self.errors]
        out["duration"] = round(self.duration, 3)
        out["throttled_seconds"] = round(self.throttled_seconds, 3)
        out["queued_seconds"] = round(self.queued_seconds, 3)
        return out

    def to_json(self, **kwargs: Any) -> str:
        """The report as JSON (``json.dumps`` keyword arguments pass through, e.g. ``indent=2``)."""
        return json.dumps(self.to_dict(), **kwargs)

    def summary(self) -> str:
        """One line for humans."""
        mib = self.bytes_transferred / (1 << 20)
        verb = "would copy" if self.dry_run else "copied"
        copied = len(self.images) - self.images_skipped if self.dry_run else self.images_copied
        extra = f", not attempted {self.images_not_attempted}" if self.images_not_attempted else ""
        throttled = (f"; throttled {self.throttle_events} times, paused {self.throttled_seconds:.1f} s"
                     if self.throttle_events else "")
        return (f"{verb} {copied} images, skipped {self.images_skipped}, failed {len(self.errors)}{extra}; "
                f"blobs: {self.blobs_transferred} transferred ({mib:.1f} MiB), {self.blobs_mounted} mounted, "
                f"{self.blobs_skipped} already present; {self.retries} retries{throttled}; "
                f"{self.duration:.2f} s") + self._concurrency_text() + (
                    f"; pull quota: {self.quota_text()}" if self.pull_quota else "")
