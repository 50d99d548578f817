"""Pure-Python twin: redaction of secrets in URLs, headers and token bodies (placeholder until implemented)."""

from __future__ import annotations


def redact_url(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError


def redact_headers(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError


def redact_token_body(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError

