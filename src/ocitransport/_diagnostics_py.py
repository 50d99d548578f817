"""Pure-Python twin: registry error bodies: decoding and the seed's message formats (placeholder until implemented)."""

from __future__ import annotations


def decode_error_body(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError


def format_diagnostic(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError


def format_error(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError


def status_text(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError


def is_temporary(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError

