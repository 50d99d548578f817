"""The ``ocitransport mirror`` command killed (SIGKILL) at random points, then run again to completion.

After every kill the destination must already be consistent (every tag there names the source's digest
and every manifest there has all it references: a manifest is pushed only after its blobs and
children), and the final run must complete it. The source is read through the fault proxy trickling
blob bodies, so the whole mirror takes about ten seconds and every kill lands in the middle of it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.conftest import SourceRepo, check_destination
from tests.servers import raw
from tests.servers.fixtures import unique_repo_name
from tests.servers.proxy import FaultProxy
from tests.servers.registry import RegistryServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
KILLS = 4
SEED = 4242


def _populate(registry: RegistryServer, repo: str, rng: random.Random) -> SourceRepo:
    """36 images (a shared base layer, two small layers of their own) and 3 two-platform indexes."""
    base = raw.push_blob(registry, repo, rng.randbytes(3000))
    base_bytes = raw.get_blob(registry, repo, base)
    assert base_bytes is not None
    plain = [(f"img-{i:02d}", [base_bytes, rng.randbytes(rng.randint(1000, 3000)),
                               rng.randbytes(rng.randint(1000, 3000))]) for i in range(36)]
    source = SourceRepo(repo)

    # One at a time: raw.push_image uploads the shared base again, and concurrent uploads of one blob
    # into one repository race in the registry's storage (a manifest PUT then reads a half-written link).
    for tag, layers in plain:
        source.tags[tag] = raw.push_image(registry, repo, tag, layers=layers).digest
    for i in range(3):
        children = [raw.push_image(registry, repo, f"idx-{i}-{arch}", layers=[base_bytes, rng.randbytes(1500)])
                    for arch in ("amd64", "arm64")]
        source.tags.update({c.tag: c.digest for c in children})
        tag = f"multi-{i}"
        source.tags[tag] = raw.push_index(registry, repo, tag, children,
                                          [{"architecture": a, "os": "linux"} for a in ("amd64", "arm64")])
        source.indexes.add(tag)
    return source


def _mirror(src: str, dst: str, config_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "DOCKER_CONFIG": str(config_dir)}
    return subprocess.Popen([sys.executable, "-m", "ocitransport", "mirror", src, dst, "--jobs", "4",
                             "--keep-going", "--retries", "2", "--json", "--quiet"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_mirror_leaves_a_consistent_destination_and_a_rerun_completes_it(
        registry: RegistryServer, dst_registry: RegistryServer, proxy_factory: Callable[..., FaultProxy],
        tmp_path: Path) -> None:
    rng = random.Random(SEED)
    source = _populate(registry, unique_repo_name("kill-src"), rng)
    proxy = proxy_factory(registry, seed=SEED)
    proxy.trickle_rate = 4096
    proxy.match("GET", "/blobs/")
    proxy.set_rates(trickle=1.0)
    dst_repo = unique_repo_name("kill-dst")
    src, dst = f"{proxy.host}/{source.repo}", f"{dst_registry.host}/{dst_repo}"
    started = time.monotonic()
    rounds: list[tuple[float, int]] = []  # (seconds before the kill, tags at the destination after it)
    for _ in range(KILLS):
        delay = rng.uniform(1.0, 3.0)
        process = _mirror(src, dst, tmp_path)
        try:
            process.wait(delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=10)
            assert process.returncode == -signal.SIGKILL
        else:
            pytest.fail(f"the mirror finished within {delay:.1f} s: the kills must land mid-run "
                        f"({process.communicate()[1][-500:]})")
        rounds.append((delay, check_destination(dst_registry, dst_repo, source, complete=False)))
    killed_at = time.monotonic()
    process = _mirror(src, dst, tmp_path)
    out, err = process.communicate(timeout=60)
    finished = time.monotonic()
    print(f"\nSIGKILL and rerun: {len(source.tags)} tags; kills after {[f'{d:.1f}' for d, _ in rounds]} s left "
          f"{[n for _, n in rounds]} tags; final run {finished - killed_at:.1f} s; total {finished - started:.1f} s")
    assert process.returncode == 0, err[-2000:]
    report = json.loads(out)
    assert report["ok"] and report["images_failed"] == 0
    # The kills made progress that the final run kept: it skipped what was already there.
    assert report["images_skipped"] >= rounds[-1][1] > 0
    assert report["images_copied"] + report["images_skipped"] == len(source.tags)
    check_destination(dst_registry, dst_repo, source)
