"""Fixtures of the mirror tests: a second open registry (the destination of cross-registry copies)
and a Client that counts what it sends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ocitransport.client import Client
from ocitransport.messages import Request, Response
from tests.servers.fixtures import require_registry
from tests.servers.registry import RegistryServer


@pytest.fixture(scope="session")
def dst_registry() -> Iterator[RegistryServer]:
    """Another open registry on loopback (the session's ``registry`` is the usual source)."""
    require_registry()
    with RegistryServer() as server:
        yield server


class CountingClient(Client):
    """A Client recording ``(method, url, status)`` of every request that reaches the engine."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.log: list[tuple[str, str, int]] = []

    async def round_trip_async(self, request: Request) -> Response:
        response = await super().round_trip_async(request)
        self.log.append((request.method, request.url, response.status))
        return response

    def blob_gets(self) -> list[str]:
        return [url for method, url, _ in self.log if method == "GET" and "/blobs/sha256:" in url]

    def mounts(self) -> list[tuple[str, int]]:
        return [(url, status) for method, url, status in self.log if method == "POST" and "mount=" in url]


@pytest.fixture
def counting_client() -> Iterator[CountingClient]:
    with CountingClient() as client:
        yield client


#: Source and destination fixtures of the registry worlds mirror tests run in: registries serving blobs
#: themselves, and registries on S3 whose blob GET and HEAD answer 307 to a presigned URL.
WORLDS = {
    "loopback": ("registry", "dst_registry"),
    "to-s3": ("registry", "s3_registry"),
    "from-s3": ("s3_registry", "dst_registry"),
    "s3-to-s3": ("s3_registry", "s3_dst_registry"),
}


def worlds(*names: str) -> list[object]:
    """``parametrize("world", worlds(...), indirect=True)`` parameters (every world when none is named)."""
    return [pytest.param(name, id=name, marks=pytest.mark.registry) for name in (names or WORLDS)]


@pytest.fixture
def world(request: pytest.FixtureRequest) -> tuple[RegistryServer, RegistryServer]:
    """``(source, destination)`` registries of the world named by the parameter (see :data:`WORLDS`)."""
    src, dst = WORLDS[request.param]
    return request.getfixturevalue(src), request.getfixturevalue(dst)
