"""Waits a server asks for are capped: a ``Retry-After`` of 3170 years (or a date in the year 9999) fails
the request at once with a line that says so, pauses nothing, and no shared pause outlasts the cap; bad
numbers in ``Retry-After``, ``Range`` and ``OCI-Chunk-Min-Length`` are read as absent, never a
``ValueError``. Against the fault proxy in front of a real registry, the fault server, and the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable

import pytest

from ocitransport import transport
from ocitransport.authn import MultiKeychain
from ocitransport.client import Client
from ocitransport.messages import Request
from ocitransport.mirror.distributed import LocalPauses, SharedLimits
from ocitransport.mirror.session import Session, Upload
from ocitransport.name import Repository
from ocitransport.transport import LimitPolicy
from ocitransport.transport.retry import MAX_RETRY_AFTER, Backoff
from tests.servers import raw
from tests.servers.faults import FaultServer, Step
from tests.servers.proxy import FaultProxy
from tests.servers.registry import RegistryServer

FAST = Backoff(duration=0.01, factor=1.0, jitter=0.0, steps=3)
FAR = ["100000000000", "Fri, 31 Dec 9999 23:59:59 GMT"]
CAP = f"more than the {MAX_RETRY_AFTER:g} s cap"


@pytest.mark.parametrize("retry_after", FAR, ids=["seconds", "date"])
def test_cli_copy_fails_at_once_when_asked_to_wait_millennia(
        registry: RegistryServer, proxy_factory: Callable[..., FaultProxy],
        make_repo_name: Callable[[], str], retry_after: str) -> None:
    image = raw.push_image(registry, make_repo_name(), "v1")
    proxy = proxy_factory(registry)
    proxy.answer_status(429, times=1000, retry_after=retry_after, path_contains="/manifests/")
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "ocitransport", "copy", f"{proxy.host}/{image.repo}:v1",
                          f"{registry.host}/{make_repo_name()}:v1"],
                         check=False, capture_output=True, text=True, timeout=120, env={**os.environ})
    took = time.monotonic() - started
    assert out.returncode == 1, out.stderr
    assert "years (Retry-After), " + CAP in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert took < 30, took  # before: hung until killed


def test_a_retry_after_over_the_cap_pauses_nothing(registry: RegistryServer,
                                                   proxy_factory: Callable[..., FaultProxy],
                                                   make_repo_name: Callable[[], str]) -> None:
    image = raw.push_image(registry, make_repo_name(), "v1")
    proxy = proxy_factory(registry)
    url = f"http://{proxy.host}/v2/{image.repo}/manifests/v1"
    proxy.answer_status(429, times=1, retry_after="100000000000", path_contains="/manifests/")
    with Client() as client:
        limits = transport.LocalLimits()
        rt = transport.new_retry(transport.new_limit(client, backend=limits), backoff=FAST)
        started = time.monotonic()
        refused = rt.round_trip(Request("GET", url))
        with pytest.raises(transport.Error) as info:
            transport.check_error(refused, 200)
        # The registry's next answer goes out at once: nobody paused the registry for the cap.
        after = rt.round_trip(Request("GET", url, {"Accept": image.media_type}))
        took = time.monotonic() - started
    assert str(info.value).endswith("(registry asked to wait 3169 years (Retry-After), "
                                    f"{CAP} (LimitPolicy.max_pause))"), str(info.value)
    assert not info.value.temporary()  # another attempt would be told the same: not worth one
    assert after.status == 200 and took < 5, took
    assert limits.stats().paused_seconds == 0


def test_a_shared_pause_in_the_year_9999_is_waited_out_at_most_the_cap(fault_server: FaultServer) -> None:
    board = LocalPauses()
    backend = SharedLimits(board, LimitPolicy(max_pause=1.0))
    registry = fault_server.host
    board.pause(registry, time.time() + 250_000_000_000)  # as another worker published it

    async def main() -> int:
        with Client() as client:
            rt = transport.new_limit(client, backend=backend)
            response = await rt.round_trip_async(Request("GET", fault_server.url_for("/bytes?n=3")))
            return response.status

    started = time.monotonic()
    assert asyncio.run(asyncio.wait_for(main(), 20)) == 200
    assert 0.9 <= time.monotonic() - started < 5


@pytest.mark.parametrize("value", ["²", "¹²", "9" * 400])  # isdigit() says yes to each
def test_bad_retry_after_on_a_throttle_is_ignored(fault_server: FaultServer, value: str) -> None:
    busy = Step(429, [("Retry-After", value)])
    fault_server.script([busy, busy, None], path="/bytes")
    with Client() as client:
        rt = transport.new_retry(transport.new_limit(client), backoff=FAST)
        started = time.monotonic()
        response = rt.round_trip(Request("GET", fault_server.url_for("/bytes?n=2")))
    if value == "9" * 400:  # all digits: 2**31 s (RFC 9111 section 1.2.2), over the cap
        assert response.status == 429 and "68 years" in response.extensions["wait_refused"]
    else:  # not a number: our own backoff, and the third answer is the real one
        assert response.status == 200 and response.extensions["retries"] == 2
    assert time.monotonic() - started < 5


def _bearer_registry(server: FaultServer, bad: str) -> Repository:
    """The fault server as a bearer registry whose every answer but the token carries ``Retry-After: bad``."""
    challenge = f'Bearer realm="{server.url}/token",service="faults"'
    query = urllib.parse.urlencode([("retry_after", bad), ("header", f"WWW-Authenticate:{challenge}")])
    server.alias("/v2/", f"/status/401?{query}")
    server.alias("/token", "/status/200?" + urllib.parse.urlencode(
        [("type", "application/json"), ("body", '{"token": "t0ken", "expires_in": "١٢"}')]))
    server.alias("/v2/hostile/repo/manifests/v1", "/status/404?" + urllib.parse.urlencode(
        [("retry_after", bad), ("error", "MANIFEST_UNKNOWN"), ("message", "manifest unknown")]))
    return Repository(f"{server.host}/hostile/repo")


def test_bad_numbers_on_a_401_ping_and_a_404_are_just_answers(fault_server: FaultServer) -> None:
    repo = _bearer_registry(fault_server, "²")

    async def main() -> BaseException:
        with Client() as client:
            session = Session(client, MultiKeychain(), retries=1)
            rt = await session.pull(repo)
            try:
                await session.get_manifest(rt, repo, "v1")
            except Exception as exc:  # noqa: BLE001 - the test looks at it
                return exc
            raise AssertionError("a 404 was taken for a manifest")

    error = asyncio.run(asyncio.wait_for(main(), 30))
    assert isinstance(error, transport.Error) and error.status_code == 404, repr(error)
    assert "MANIFEST_UNKNOWN" in str(error)
    assert fault_server.requests_to("/token")  # the 401 ping's challenge was followed


def test_bad_upload_numbers_read_as_absent(fault_server: FaultServer) -> None:
    fault_server.alias("/v2/", "/status/200")
    location = "/v2/hostile/repo/blobs/uploads/u1"
    fault_server.script([Step(202, [("Location", location), ("OCI-Chunk-Min-Length", "²")])],
                        path="/v2/hostile/repo/blobs/uploads/")
    fault_server.script([Step(204, [("Location", location), ("Range", "0-¹²")])], path=location)
    repo = Repository(f"{fault_server.host}/hostile/repo")

    async def main() -> tuple[Upload | None, int]:
        with Client() as client:
            session = Session(client, MultiKeychain(), retries=0)
            rt = await session.push(repo)
            upload = await session.begin_upload(rt, repo)
            assert upload is not None
            upload.offset = 99
            assert await session.upload_status(rt, upload)
            return upload, upload.offset

    upload, offset = asyncio.run(asyncio.wait_for(main(), 30))
    assert upload is not None and upload.chunk_min == 0  # before: ValueError: invalid literal for int()
    assert offset == 0  # an unreadable Range: the upload starts over from 0
