"""Pure-Python twin: WWW-Authenticate challenge parsing (RFC 7235) (placeholder until implemented)."""

from __future__ import annotations


def parse_challenges(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError

