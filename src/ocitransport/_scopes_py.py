"""Pure-Python twin: token scope strings: build, merge, parse, and the token request query (placeholder until implemented)."""

from __future__ import annotations


def repository_scope(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError


def registry_scope(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError


def merge_scopes(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError


def parse_scope(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError


def token_query(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise NotImplementedError

