"""A mirror that outlives many short Bearer tokens: no failure, and one token request per expiry.

distribution 2.8 accepts a token for 60 s past its ``exp`` (a leeway it does not let us configure), so
the token server issues tokens whose ``exp`` is 60 s early (``expire_early``): the registry rejects
them ``expires_in`` seconds after they were issued, as if there were no leeway. ``exp`` is a whole
number of seconds, so a 2-second token really lives between 1 and 2 s.

The source is read through the fault proxy trickling every GET body at 1 KiB/s, so that a mirror of a
few small images, two at a time, keeps both registries' tokens in use for about 20 s.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

import ocitransport
from ocitransport import authn
from ocitransport.mirror import execute, plan_repository
from tests.reliability.conftest import SourceRepo, check_destination
from tests.servers import raw
from tests.servers.fixtures import unique_repo_name
from tests.servers.proxy import FaultProxy
from tests.servers.registry import RegistryServer
from tests.servers.token_server import TokenServer

if TYPE_CHECKING:  # typing.Self is Python 3.11+
    from typing_extensions import Self

pytestmark = pytest.mark.slow

LIFETIME = 2
IMAGES = 14
#: The client refreshes a token when four fifths of its ``expires_in`` have passed.
REFRESH_AFTER = 0.8 * LIFETIME


class _Credentials:
    """A keychain with the registry's full-access user for every host (the proxy's included)."""

    def __init__(self, registry: RegistryServer) -> None:
        assert registry.username and registry.password
        self.auth = authn.Basic(registry.username, registry.password)

    def resolve(self, target: object) -> authn.Authenticator:
        return self.auth


class _TokenClock:
    """Samples the token server's counters every 20 ms (bounded by ``limit`` seconds) and keeps, per
    scope set, when each token was issued (to within a sample)."""

    def __init__(self, server: TokenServer, limit: float) -> None:
        self.server = server
        self.limit = limit
        self.issued: dict[frozenset[str], list[float]] = {}
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()

    def _sample(self) -> None:
        now = time.monotonic() - self.started
        with self.server._lock:
            counts = dict(self.server.issued_by)
        for (_grant, scopes), n in counts.items():
            times = self.issued.setdefault(scopes, [])
            times.extend([now] * (n - len(times)))

    def _run(self) -> None:
        while not self._stop.wait(0.02) and time.monotonic() - self.started < self.limit:
            self._sample()


def _normalised(scopes: frozenset[str]) -> frozenset[str]:
    """Scopes with their actions sorted (``repository:a:push,pull`` is ``repository:a:pull,push``)."""
    out = set()
    for scope in scopes:
        resource, _, actions = scope.rpartition(":")
        out.add(f"{resource}:{','.join(sorted(actions.split(',')))}")
    return frozenset(out)


def _most_in_window(times: list[float], window: float) -> int:
    """The most issuances of one scope set within any ``window`` seconds."""
    return max((bisect.bisect_right(times, t + window) - i for i, t in enumerate(times)), default=0)


def _trickled_source(registry: RegistryServer, proxy_factory: Callable[..., FaultProxy], name: str, images: int,
                     layer_size: int, *, seed: int) -> tuple[SourceRepo, FaultProxy, str]:
    """``images`` one-layer images in a new repository, read through a proxy trickling every GET body at
    1 KiB/s, and ``LIFETIME``-second tokens from then on; the source, the proxy, a destination name."""
    rng = random.Random(seed + 66)
    source = SourceRepo(unique_repo_name(f"{name}-src"))
    for i in range(images):  # pushed with tokens minted in-process: not counted by the token server
        image = raw.push_image(registry, source.repo, f"v{i:02d}", layers=[rng.randbytes(layer_size)])
        source.tags[image.tag] = image.digest
    proxy = proxy_factory(registry, seed=seed)
    proxy.trickle_rate = 1024
    proxy.match("GET")
    proxy.set_rates(trickle=1.0)
    ts = registry.token_server
    assert ts is not None
    ts.token_lifetime = LIFETIME
    ts.expire_early = True
    return source, proxy, unique_repo_name(f"{name}-dst")


def test_two_second_tokens_through_a_twenty_second_mirror(
        bearer_registry: RegistryServer, proxy_factory: Callable[..., FaultProxy]) -> None:
    ts = bearer_registry.token_server
    assert ts is not None
    source, proxy, dst_repo = _trickled_source(bearer_registry, proxy_factory, "tokens", IMAGES, 2048, seed=11)
    keychain = _Credentials(bearer_registry)
    src, dst = f"{proxy.host}/{source.repo}", f"{bearer_registry.host}/{dst_repo}"

    with _TokenClock(ts, limit=40) as clock, ocitransport.Client() as client:
        plan = plan_repository(src, dst, client=client, keychain=keychain)
        assert not plan.errors and len(plan.units) == IMAGES
        report = execute(plan.units, client=client, keychain=keychain, jobs=2, retries=3)
    elapsed = time.monotonic() - clock.started
    requests = ts.requests_snapshot()
    # One access, two spellings: the client asks "push,pull", a 401's challenge (a token that died a
    # moment early) names "pull,push"; the client takes the challenge's words, so both appear.
    merged: dict[frozenset[str], list[float]] = {}
    for scopes, times in clock.issued.items():
        merged.setdefault(_normalised(scopes), []).extend(times)
    for times in merged.values():
        times.sort()
    windows = {", ".join(sorted(s)): (len(t), _most_in_window(t, LIFETIME), _most_in_window(t, 0.5))
               for s, t in merged.items()}
    print(f"\n2-second tokens: {IMAGES} images in {elapsed:.1f} s ({report.summary()}); token requests "
          f"{len(requests)} under {len(clock.issued)} scope strings; per scope set (tokens, most in "
          f"{LIFETIME} s, most in 0.5 s): {windows}")

    assert report.ok, report.errors[:3]
    assert report.images_copied == IMAGES
    assert 16 <= elapsed < 30, f"{elapsed:.1f} s: the run must outlive many tokens and stay bounded"
    assert all(r.status == 200 for r in requests)
    assert len(requests) == ts.issued == sum(len(t) for t in clock.issued.values())
    for scopes, times in clock.issued.items():
        assert _most_in_window(times, 0.5) <= 1, (sorted(scopes), times)  # single flight per key
    # Two registries (the proxy is another registry to the client), one scope set each.
    assert len(merged) == 2, sorted(merged)
    for scopes, times in merged.items():
        # A token is asked for again only when the one in use is due (4/5 of expires_in) or rejected
        # (it really died up to a second early): at most two in any expiry window, the second one
        # being a refresh that raced an expiry.
        assert _most_in_window(times, LIFETIME) <= 2, (sorted(scopes), times)
        # And over the run, no more than one per second of real token life (plus the first).
        assert len(times) <= elapsed / (LIFETIME / 2) + 1, (sorted(scopes), len(times), elapsed)
        # The run outlived many of them (tokens are fetched when a request needs one: lazily).
        assert len(times) >= 5, (sorted(scopes), times)
    check_destination(bearer_registry, dst_repo, source)


def test_tokens_that_die_before_their_expires_in(
        bearer_registry: RegistryServer, proxy_factory: Callable[..., FaultProxy]) -> None:
    """A token server that claims 300 s but signs tokens the registry rejects after 1-2 s: the client
    learns that a token died only from 401s. The destination is reached through a proxy that holds the
    first ``held`` blob PUTs for longer than a token lives, so each reaches the registry with a dead
    token: a 401 on a streamed body, which the Bearer layer cannot send again. Each is recovered (the
    rejected token dropped, the upload resumed with a new one); the other 401s are replayed by the
    Bearer layer itself."""
    ts = bearer_registry.token_server
    assert ts is not None
    images, held = 4, 3
    rng = random.Random(12)
    source = SourceRepo(unique_repo_name("dying-src"))
    for i in range(images):  # pushed with tokens minted in-process: not counted by the token server
        image = raw.push_image(bearer_registry, source.repo, f"v{i:02d}", layers=[rng.randbytes(3072)])
        source.tags[image.tag] = image.digest
    ts.token_lifetime, ts.expire_early, ts.claimed_lifetime = LIFETIME, True, 300
    proxy = proxy_factory(bearer_registry, seed=12)
    proxy.hold_request(LIFETIME + 0.5, method="PUT", path_contains="/blobs/uploads/", times=held)
    keychain = _Credentials(bearer_registry)
    dst_repo = unique_repo_name("dying-dst")
    src, dst = f"{bearer_registry.host}/{source.repo}", f"{proxy.host}/{dst_repo}"
    with ocitransport.Client() as client:
        plan = plan_repository(src, dst, client=client, keychain=keychain)
        assert not plan.errors and len(plan.units) == images
        report = execute(plan.units, client=client, keychain=keychain, jobs=2, retries=3)
    records = proxy.records
    print(f"\ntokens dying early: {report.summary()}; {ts.issued} tokens; "
          f"{sum(r.status == 401 for r in records)} of {len(records)} destination requests answered 401")
    assert report.ok, report.errors[:3]
    assert report.images_copied == images
    # Every held PUT met a dead token ...
    assert [r.status for r in records if r.fault == "hold"] == [401] * held
    # ... and was resumed: the registry's upload status asked once for each, the blob then sent again.
    status_checks = [r for r in records if r.method == "GET" and "/blobs/uploads/" in r.path and r.status == 204]
    assert len(status_checks) == held
    assert report.retries >= held
    check_destination(bearer_registry, dst_repo, source)
