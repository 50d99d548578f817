"""Fixtures of the hostile-input tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ocitransport.client import Client


@pytest.fixture
def client() -> Iterator[Client]:
    """A Client for this test, closed after it."""
    with Client() as c:
        yield c
