"""The ``--json`` report of ``copy`` / ``mirror`` / ``sync``: :func:`report_dict` (schema in
docs/json-report.md; :data:`SCHEMA` goes up when a field changes meaning or goes away)."""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMA", "report_dict"]

#: The version of the JSON report's layout (the ``"schema"`` field).
SCHEMA = 1


def report_dict(report: Any, *, retries: int | None = None) -> dict[str, Any]:
    """``report.to_dict()`` with ``"schema"``, and every failure counted in ``images_failed`` and listed
    in ``images``: a failure before an image could start (a missing tag, an authentication refusal, a
    tag list that could not be read) becomes an entry with ``"status": "failed"`` and ``"stage":
    "planning"``; the others have ``"stage": "copy"``."""
    out: dict[str, Any] = {"schema": SCHEMA, **report.to_dict()}
    images = [dict(item, stage="copy" if item.get("status") == "failed" else "") for item in out["images"]]
    for item in images:
        if not item["stage"]:
            del item["stage"]
    failed_sources = {item["source"] for item in images if item.get("status") == "failed"}
    for ref, message in report.errors:
        if ref in failed_sources:
            continue
        images.append({"source": ref, "destination": "", "status": "failed", "digest": "", "media_type": "",
                       "platforms": [], "blobs_transferred": 0, "blobs_mounted": 0, "blobs_skipped": 0,
                       "bytes_transferred": 0, "error": message, "note": "", "stage": "planning"})
    out["images"] = images
    out["images_failed"] = sum(1 for item in images if item.get("status") == "failed")
    if retries is not None:
        out["retries"] = max(int(out.get("retries", 0)), retries)
    return out
