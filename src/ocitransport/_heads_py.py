"""Pure-Python twin: response heads: libcurl's raw header lines to status, reason, version and headers (placeholder until implemented)."""

from __future__ import annotations


def parse_head(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError

