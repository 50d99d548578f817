"""Mirror runs between registries on S3 (blob GET and HEAD redirected to presigned URLs) behind the
fault proxy, and an incremental rerun after new tags arrive: the blob checks of the rerun meet 307s."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import ocitransport
from ocitransport.messages import Timeout
from ocitransport.mirror import mirror_repository
from tests.reliability.conftest import SourceRepo, check_destination
from tests.servers import raw
from tests.servers.fixtures import S3Storage, unique_repo_name
from tests.servers.proxy import FaultProxy
from tests.servers.registry import RegistryServer

RATES = {"reset_before": 0.02, "reset_during": 0.02, "reset_after": 0.01, "truncate": 0.02,
         "status_500": 0.01, "status_503": 0.02}


def test_s3_to_s3_through_faults_then_an_incremental_run(s3_registry: RegistryServer, s3_dst_registry: RegistryServer,
                                                         storage: S3Storage,
                                                         proxy_factory: Callable[..., FaultProxy]) -> None:
    rng = random.Random(77)
    source = SourceRepo(unique_repo_name("s3-faults-src"))
    shared = [rng.randbytes(8192), rng.randbytes(2048)]
    for i in range(4):
        image = raw.push_image(s3_registry, source.repo, f"img-{i}", layers=[*shared, rng.randbytes(500)])
        source.tags[image.tag] = image.digest
    dst_repo = unique_repo_name("s3-faults-dst")
    src_proxy, dst_proxy = proxy_factory(s3_registry, seed=5), proxy_factory(s3_dst_registry, seed=6)
    for proxy in (src_proxy, dst_proxy):
        proxy.set_rates(**RATES)
    src, dst = f"{src_proxy.host}/{source.repo}", f"{dst_proxy.host}/{dst_repo}"
    with ocitransport.Client(timeout=Timeout(connect=5, stall=2)) as client:
        started = time.monotonic()
        first = mirror_repository(src, dst, client=client, jobs=4, retries=6)
        print(f"\nfirst run {time.monotonic() - started:.1f} s: {first.summary()}")
        assert first.ok, first.errors[:3]
        assert first.images_copied == len(source.tags)
        assert src_proxy.faults + dst_proxy.faults > 0
        # New tags whose layers are at the destination already: their HEADs answer 307 there.
        for i in range(2):
            image = raw.push_image(s3_registry, source.repo, f"late-{i}", layers=[*shared, bytes([i]) * 100])
            source.tags[image.tag] = image.digest
        started = time.monotonic()
        again = mirror_repository(src, dst, client=client, jobs=4, retries=6)
        print(f"incremental run {time.monotonic() - started:.1f} s: {again.summary()}")
    assert again.ok, again.errors[:3]
    assert (again.images_copied, again.images_skipped) == (2, len(source.tags) - 2)
    assert again.blobs_skipped >= 2 * len(shared)
    for proxy in (src_proxy, dst_proxy):
        proxy.set_rates()
    check_destination(s3_dst_registry, dst_repo, source)
