"""Air-gapped transfer: OCI image layouts (``oci:DIR``) and archives (``oci-archive:FILE.tar``) as sources and
destinations of copy, mirror and sync, between real registries on loopback; layouts checked by reading their
files, registries with raw HTTP, and interop with skopeo both ways."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from ocitransport import mirror
from ocitransport.cli.main import main
from ocitransport.mirror.referrers import fallback_tag
from tests.mirror import test_referrers
from tests.mirror.test_referrers import SIG_TYPE
from tests.servers import raw
from tests.servers.raw import OCI_INDEX

AMD64 = {"os": "linux", "architecture": "amd64"}
ARM64 = {"os": "linux", "architecture": "arm64", "variant": "v8"}
REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"
SRC = str(Path(__file__).resolve().parents[2] / "src")

pytestmark = pytest.mark.registry
signed = test_referrers.signed  # the fixture: an image with signatures and an SBOM


def _index(layout: Path) -> list[dict]:
    return json.loads((layout / "index.json").read_text())["manifests"]


def _blob(layout: Path, digest: str) -> bytes:
    algorithm, _, encoded = digest.partition(":")
    return (layout / "blobs" / algorithm / encoded).read_bytes()


def _blob_files(layout: Path) -> list[Path]:
    return sorted((layout / "blobs" / "sha256").iterdir())


def _assert_layout_holds(layout: Path, image: raw.PushedImage) -> None:
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert _blob(layout, image.digest) == image.manifest
    for digest, data in image.blobs.items():
        assert _blob(layout, digest) == data
    for path in _blob_files(layout):  # every file under its own digest
        assert "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == f"sha256:{path.name}"


def _cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, (json.loads(out) if out.strip().startswith("{") else {}), err


# ----------------------------------------------------------------------------- registry <-> layout


def test_round_trip_registry_layout_registry(registry, dst_registry, make_repo_name, tmp_path, capsys):
    repo = make_repo_name()
    image = raw.push_image(registry, repo, "v1", layers=[os.urandom(300_000), os.urandom(3000)])
    layout = tmp_path / "usb"
    status, report, err = _cli("copy", "--json", image.reference, f"oci:{layout}:v1", capsys=capsys)
    assert status == 0, err
    assert (report["images_copied"], report["blobs_transferred"]) == (1, 3)
    assert report["bytes_transferred"] == sum(len(b) for b in image.blobs.values())
    _assert_layout_holds(layout, image)
    assert _index(layout) == [{"mediaType": image.media_type, "digest": image.digest, "size": len(image.manifest),
                               "annotations": {REF_NAME: "v1"}}]
    assert not [p for p in layout.iterdir() if p.name.startswith(".")]  # no temporary file left

    # Again: nothing to do, nothing written.
    before = (layout / "index.json").stat().st_mtime_ns
    status, report, err = _cli("copy", "--json", image.reference, f"oci:{layout}:v1", capsys=capsys)
    assert status == 0, err
    assert report["images"][0]["status"] == "skipped"
    assert (layout / "index.json").stat().st_mtime_ns == before

    # The other side of the air gap.
    dst_repo = make_repo_name()
    status, report, err = _cli("copy", "--json", f"oci:{layout}:v1", f"{dst_registry.host}/{dst_repo}:v1",
                               capsys=capsys)
    assert status == 0, err
    assert report["images"][0]["digest"] == image.digest
    assert raw.get_manifest(dst_registry, dst_repo, "v1").body == image.manifest
    for digest, data in image.blobs.items():
        assert raw.get_blob(dst_registry, dst_repo, digest) == data

    # A dry run lists, writes nothing.
    other = tmp_path / "dry"
    status, report, err = _cli("copy", "--json", "--dry-run", image.reference, f"oci:{other}:v1", capsys=capsys)
    assert status == 0, err
    assert report["images"][0]["status"] == "planned" or report["images"][0]["destination"] == f"oci:{other}:v1"
    assert not other.exists()


def test_multi_arch_index_and_platform_filter(registry, dst_registry, make_repo_name, tmp_path):
    repo = make_repo_name()
    base = os.urandom(50_000)
    a = raw.push_image(registry, repo, "amd", layers=[base, os.urandom(100)])
    b = raw.push_image(registry, repo, "arm", layers=[base, os.urandom(100)])
    index = raw.push_index(registry, repo, "multi", [a, b], [AMD64, ARM64])
    src = f"{registry.host}/{repo}:multi"

    whole = tmp_path / "whole"
    report = mirror.copy(src, f"oci:{whole}:multi")
    assert report.ok, report.errors
    assert report.blobs_transferred == 5  # the shared base layer stored once
    assert [e["digest"] for e in _index(whole)] == [index]  # children are named by their index only
    _assert_layout_holds(whole, a)
    _assert_layout_holds(whole, b)

    one = tmp_path / "one"
    report = mirror.copy(src, f"oci:{one}:multi", platforms=["linux/arm64"])
    assert report.ok, report.errors
    assert [e["digest"] for e in _index(one)] == [b.digest]
    assert not (one / "blobs" / "sha256" / a.layer_digests[-1].split(":")[1]).exists()

    # From the layout with a platform filter, to a registry: the index filtered on the way.
    dst_repo = make_repo_name()
    report = mirror.copy(f"oci:{whole}:multi", f"{dst_registry.host}/{dst_repo}:multi", platforms=["linux/amd64"])
    assert report.ok, report.errors
    assert raw.get_manifest(dst_registry, dst_repo, "multi").body == a.manifest
    report = mirror.copy(f"oci:{whole}:multi", f"{dst_registry.host}/{dst_repo}:all")
    assert report.ok, report.errors
    assert raw.sha256_digest(raw.get_manifest(dst_registry, dst_repo, "all").body) == index


def test_an_image_copied_by_digest_is_listed_untagged(registry, dst_registry, make_repo_name, tmp_path):
    repo = make_repo_name()
    a = raw.push_image(registry, repo, "amd", layers=[os.urandom(1000)])
    b = raw.push_image(registry, repo, "arm", layers=[os.urandom(1000)])
    index = raw.push_index(registry, repo, "multi", [a, b], [AMD64, ARM64])
    layout = tmp_path / "by-digest"
    report = mirror.copy(f"{registry.host}/{repo}@{index}", f"oci:{layout}")
    assert report.ok, report.errors
    # The image asked for is in index.json (without a tag: none was given); its children are not.
    entries = _index(layout)
    assert [(e["digest"], e.get("annotations")) for e in entries] == [(index, None)]
    # Found again by its digest, on the other side.
    dst_repo = make_repo_name()
    report = mirror.copy(f"oci:{layout}@{index}", f"{dst_registry.host}/{dst_repo}:multi")
    assert report.ok, report.errors
    assert raw.sha256_digest(raw.get_manifest(dst_registry, dst_repo, "multi").body) == index
    # Copying it again lists it once.
    assert mirror.copy(f"{registry.host}/{repo}@{index}", f"oci:{layout}").ok
    assert [e["digest"] for e in _index(layout)] == [index]


def test_referrers_travel_through_a_layout(registry, dst_registry, make_repo_name, tmp_path, signed):
    image = signed["image"]
    layout = tmp_path / "signed"
    report = mirror.copy(image.reference, f"oci:{layout}:v1")
    assert report.ok, report.errors
    assert report.images_copied == 5, [(i.destination, i.status, i.note) for i in report.images]
    entries = _index(layout)
    # Referrers by digest are untagged index entries (how a layout holds them); cosign tags are tags, and
    # no fallback tag is made (a layout lists referrers itself).
    untagged = {e["digest"] for e in entries if REF_NAME not in e.get("annotations", {})}
    # (the signature is listed untagged unless its cosign tag's entry was there first: listed once will do)
    assert {signed["sbom"][0]} <= untagged <= {signed["sig"][0], signed["sbom"][0]}
    tags = {e["annotations"][REF_NAME]: e["digest"] for e in entries if REF_NAME in e.get("annotations", {})}
    assert tags == {"v1": image.digest, signed["sig_tag"]: signed["sig"][0],
                    signed["sbom_sig_tag"]: signed["sbom_sig"][0]}
    assert all(e.get("artifactType") == SIG_TYPE for e in entries if e["digest"] == signed["sig"][0])

    dst_repo = make_repo_name()
    report = mirror.copy(f"oci:{layout}:v1", f"{dst_registry.host}/{dst_repo}:v1")
    assert report.ok, report.errors
    # The layout lists every manifest with a subject as a referrer, as a registry's referrers API does: the
    # SBOM's signature (only a cosign tag at the source) now comes by digest as well.
    assert report.images_copied == 6
    listed = raw.get_manifest(dst_registry, dst_repo, fallback_tag(signed["sbom"][0]), accept=OCI_INDEX).json()
    assert [m["digest"] for m in listed["manifests"]] == [signed["sbom_sig"][0]]
    listed = raw.get_manifest(dst_registry, dst_repo, fallback_tag(image.digest), accept=OCI_INDEX).json()
    assert {m["digest"] for m in listed["manifests"]} == {signed["sig"][0], signed["sbom"][0]}
    assert raw.get_manifest(dst_registry, dst_repo, signed["sbom_sig_tag"]).body == signed["sbom_sig"][1]


# ----------------------------------------------------------------------------- many repositories


def test_sync_into_one_layout_and_out_again(registry, dst_registry, make_repo_name, tmp_path, capsys):
    shared = os.urandom(200_000)
    one, two = make_repo_name(), make_repo_name()
    a = raw.push_image(registry, one, "v1", layers=[shared, os.urandom(100)])
    b = raw.push_image(registry, two, "v1", layers=[shared, os.urandom(100)])
    c = raw.push_image(registry, two, "v2", layers=[shared, os.urandom(100)])
    config = tmp_path / "images.yaml"
    config.write_text(f"destination: {dst_registry.host}/unused\nkeep-going: true\n"
                      f"{registry.host}:\n  images:\n    {one}: []\n    {two}: []\n")
    layout = tmp_path / "layout"
    status, report, err = _cli("sync", "--json", str(config), "--dest", f"oci:{layout}", capsys=capsys)
    assert status == 0, err
    assert report["images_copied"] == 3
    # The shared layer: stored once, sent once; the second and third image skipped it.
    assert report["blobs_transferred"] == 1 + 3 * 2
    assert report["blobs_skipped"] + report["blobs_mounted"] >= 2
    stored = {p.name for p in _blob_files(layout)}
    assert len(stored) == 1 + 3 * 3  # shared layer + (config, own layer, manifest) per image
    names = {e["annotations"][IMAGE_NAME]: e["digest"] for e in _index(layout)}
    assert names == {f"{registry.host}/{one}:v1": a.digest, f"{registry.host}/{two}:v1": b.digest,
                     f"{registry.host}/{two}:v2": c.digest}
    assert all(e["annotations"][REF_NAME] in ("v1", "v2") for e in _index(layout))

    # One repository of the layout by name, and the whole sync out of the layout on the other side.
    status, report, err = _cli("copy", "--json", f"oci:{layout}:{registry.host}/{two}:v2",
                               f"{dst_registry.host}/by-name:v2", capsys=capsys)
    assert status == 0, err
    assert raw.get_manifest(dst_registry, "by-name", "v2").body == c.manifest
    status, report, err = _cli("sync", "--json", str(config), "--source", f"oci:{layout}", "--dest",
                               f"{dst_registry.host}/gap", capsys=capsys)
    assert status == 0, err
    assert report["images_copied"] == 3
    for repo, image, tag in ((one, a, "v1"), (two, b, "v1"), (two, c, "v2")):
        assert raw.get_manifest(dst_registry, f"gap/{repo.rsplit('/', 1)[-1]}", tag).body == image.manifest

    # The same through an archive: one tar on the way over, and a second sync adds nothing to it.
    archive = tmp_path / "mirror.tar"
    status, report, err = _cli("sync", "--json", str(config), "--dest", f"oci-archive:{archive}", capsys=capsys)
    assert status == 0 and report["images_copied"] == 3, err
    packed = archive.stat().st_mtime_ns
    status, report, err = _cli("sync", "--json", str(config), "--dest", f"oci-archive:{archive}", capsys=capsys)
    assert status == 0 and report["images_skipped"] == 3, err
    assert archive.stat().st_mtime_ns == packed  # not packed again
    status, report, err = _cli("sync", "--json", str(config), "--source", f"oci-archive:{archive}", "--dest",
                               f"{dst_registry.host}/tar", capsys=capsys)
    assert status == 0 and report["images_copied"] == 3, err
    assert raw.get_manifest(dst_registry, f"tar/{two.rsplit('/', 1)[-1]}", "v2").body == c.manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images.yaml", "layout", "mirror.tar"]

    # mirror takes a layout repository's tags from index.json.
    dst_repo = make_repo_name()
    report = mirror.mirror_repository(f"oci:{layout}:{registry.host}/{two}", f"{dst_registry.host}/{dst_repo}")
    assert report.ok, report.errors
    assert sorted(raw.list_tags(dst_registry, dst_repo)) == ["v1", "v2"]


def test_dask_refuses_a_layout_at_once(tmp_path, capsys):
    config = tmp_path / "images.yaml"
    config.write_text("127.0.0.1:1:\n  images:\n    a/b: []\n")
    status = main(["sync", str(config), "--dest", f"oci:{tmp_path / 'l'}", "--dask", "local:1"])
    _, err = capsys.readouterr()
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "local OCI layout" in lines[0] and "--dask" in lines[0], err
    assert not (tmp_path / "l").exists()
    with pytest.raises(mirror.MirrorError, match="local OCI layout"):
        mirror.sync(str(config), destination=f"oci:{tmp_path / 'l'}", executor=object())  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- crashes and resumes


def test_killed_copy_resumes(registry, make_repo_name, shaper_factory, tmp_path):
    repo = make_repo_name()
    big = os.urandom(3_000_000)
    image = raw.push_image(registry, repo, "v1", layers=[os.urandom(1000), big])
    slow = shaper_factory(registry, delay=0, rate=300_000)  # ~10 s for the big layer: killed half-way
    big_file = Path("blobs", "sha256", image.layer_digests[-1].split(":")[1])
    layout = tmp_path / "l"
    env = dict(os.environ, PYTHONPATH=SRC)
    child = subprocess.Popen([sys.executable, "-m", "ocitransport", "copy", "--no-referrers",
                              f"{slow.host}/{repo}:v1", f"oci:{layout}:v1"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        small = [Path("blobs", "sha256", d.split(":")[1]) for d in image.blobs if d != image.layer_digests[-1]]

        def half_way() -> bool:  # the small blobs in place, the big one part-written (wherever it is written)
            files = [*layout.glob(".ocitransport-*.tmp"), layout / big_file] if layout.exists() else []
            written = [f.stat().st_size for f in files if f.exists()]
            return all((layout / p).exists() for p in small) and any(300_000 < n < len(big) for n in written)

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and child.poll() is None and not half_way():
            time.sleep(0.02)
        assert half_way()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert not (layout / big_file).exists()  # a half-written blob never has its final name
    assert not (layout / "index.json").exists()  # the manifest is named last
    left = list(layout.glob(".ocitransport-*.tmp"))
    assert len(left) == 1  # the big blob's, as the kill left it
    old = layout / ".ocitransport-0123456789abcdef.tmp"  # an older run's, two days ago
    old.write_bytes(big[:1000])
    os.utime(old, (time.time() - 2 * 86400,) * 2)

    report = mirror.copy(image.reference, f"oci:{layout}:v1", referrers=False)
    assert report.ok, report.errors
    assert (report.blobs_transferred, report.blobs_skipped) == (1, 2)
    assert report.bytes_transferred == len(big)
    _assert_layout_holds(layout, image)
    assert [e["digest"] for e in _index(layout)] == [image.digest]
    assert list(layout.glob(".ocitransport-*.tmp")) == left  # a day-old one goes, a fresh one may be in use


# ----------------------------------------------------------------------------- hostile input


def _hostile_layout(root: Path, entries: list[dict]) -> Path:
    root.mkdir()
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": entries}))
    return root


def test_hostile_index_json_is_refused(dst_registry, make_repo_name, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_text("not a manifest")
    layout = _hostile_layout(tmp_path / "hostile", [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:../../outside/secret",
         "size": 14, "annotations": {REF_NAME: "evil"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "a" * 64,
         "size": 14, "annotations": {REF_NAME: "../../outside/secret", IMAGE_NAME: "../../x:evil"}},
    ])
    before = sorted(p.name for p in tmp_path.rglob("*"))
    dst = f"{dst_registry.host}/{make_repo_name()}"
    report = mirror.copy(f"oci:{layout}:evil", f"{dst}:evil")
    assert not report.ok and "invalid digest" in report.errors[0][1] and "refused" in report.errors[0][1]
    report = mirror.mirror_repository(f"oci:{layout}", dst)  # "evil" is listed, and refused again
    assert [ref for ref, _ in report.errors] == [f"oci:{layout}:evil"]
    assert "refused" in report.errors[0][1] and report.images == []
    # A destination layout with such an index is written to without following any of it.
    image_dir = tmp_path / "hostile-dst"
    shutil.copytree(layout, image_dir)
    assert sorted(p.name for p in tmp_path.rglob("*") if not str(p).startswith(str(image_dir))) == before
    assert secret.read_text() == "not a manifest"

    # A blobs directory that is a symbolic link out of the layout.
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (linked / "blobs").mkdir()
    (linked / "blobs" / "sha256").symlink_to(outside)
    report = mirror.copy(f"oci:{linked}@sha256:{'b' * 64}", f"{dst}:x")
    assert not report.ok and "symbolic link" in report.errors[0][1], report.errors
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


def test_hostile_archives_are_refused(registry, make_repo_name, tmp_path):
    repo = make_repo_name()
    image = raw.push_image(registry, repo, "v1")
    outside = tmp_path / "outside"
    outside.mkdir()

    def archive(name: str, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
        path = tmp_path / name
        with tarfile.open(path, "w") as tar:
            layout = tarfile.TarInfo("oci-layout")
            marker = b'{"imageLayoutVersion": "1.0.0"}'
            layout.size = len(marker)
            tar.addfile(layout, __import__("io").BytesIO(marker))
            for info, data in members:
                tar.addfile(info, __import__("io").BytesIO(data))
        return path

    def member(name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple:
        info = tarfile.TarInfo(name)
        info.size, info.type, info.linkname = (len(data) if kind == tarfile.REGTYPE else 0), kind, link
        return info, data

    cases = {
        "dotdot.tar": ([member("../outside/evil")], "leaves the archive"),
        "absolute.tar": ([member(str(outside / "evil"))], "leaves the archive"),
        "symlink.tar": ([member("blobs/sha256/" + "c" * 64, b"", tarfile.SYMTYPE, str(outside))], "a link"),
        "hardlink.tar": ([member("index.json", b"", tarfile.LNKTYPE, "/etc/passwd")], "a link"),
        "device.tar": ([member("index.json", b"", tarfile.CHRTYPE)], "device"),
    }
    for name, (members, why) in cases.items():
        path = archive(name, members)
        report = mirror.copy(f"oci-archive:{path}:v1", f"{registry.host}/{repo}:never")
        assert not report.ok and why in report.errors[0][1], (name, report.errors)
        # As a destination too: nothing is added to an archive that cannot be read safely.
        size = path.stat().st_size
        report = mirror.copy(image.reference, f"oci-archive:{path}:v1")
        assert not report.ok and why in report.errors[0][1], (name, report.errors)
        assert path.stat().st_size == size
    assert list(outside.iterdir()) == []
    assert raw.get_manifest(registry, repo, "never").status == 404
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".ocitransport-partial")]


# ----------------------------------------------------------------------------- archives


def test_oci_archive_both_ways_and_added_to(registry, dst_registry, make_repo_name, tmp_path, capsys):
    repo = make_repo_name()
    one = raw.push_image(registry, repo, "v1", layers=[os.urandom(5000)])
    two = raw.push_image(registry, repo, "v2", layers=[os.urandom(5000)])
    path = tmp_path / "transfer.tar"
    status, report, err = _cli("copy", "--json", one.reference, f"oci-archive:{path}:v1", capsys=capsys)
    assert status == 0, err
    status, report, err = _cli("copy", "--json", two.reference, f"oci-archive:{path}:v2", capsys=capsys)
    assert status == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["transfer.tar"]  # no working directory left
    with tarfile.open(path) as tar:
        names = tar.getnames()
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    assert {"oci-layout", "index.json", f"blobs/sha256/{one.digest.split(':')[1]}"} <= set(names)
    assert {e["annotations"][REF_NAME]: e["digest"] for e in index["manifests"]} == {"v1": one.digest,
                                                                                     "v2": two.digest}
    dst_repo = make_repo_name()
    for tag, image in (("v1", one), ("v2", two)):
        status, report, err = _cli("copy", "--json", f"oci-archive:{path}:{tag}",
                                   f"{dst_registry.host}/{dst_repo}:{tag}", capsys=capsys)
        assert status == 0, err
        assert raw.get_manifest(dst_registry, dst_repo, tag).body == image.manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["transfer.tar"]

    # A dry run reads the archive and leaves it, and the directory, as they were.
    size = path.stat().st_size
    three = raw.push_image(registry, repo, "v3")
    report = mirror.copy(three.reference, f"oci-archive:{path}:v3", dry_run=True)
    assert report.ok, report.errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["transfer.tar"] and path.stat().st_size == size
    # An archive that cannot be written is one line of the report, not a traceback.
    report = mirror.copy(three.reference, "oci-archive:/proc/transfer.tar:v3")
    assert [m for _, m in report.errors] == [
        m for m in (m for _, m in report.errors) if "cannot write the archive" in m and m.count("\n") == 0]
    assert len(report.errors) == 1, report.errors


def test_oci_archive_resumes_from_the_working_directory_a_killed_run_left(registry, make_repo_name, tmp_path):
    repo = make_repo_name()
    image = raw.push_image(registry, repo, "v1", layers=[os.urandom(200_000), os.urandom(100_000)])
    path = tmp_path / "transfer.tar"
    partial = tmp_path / "transfer.tar.ocitransport-partial"
    # What a run killed before packing leaves: the working directory with the blobs it stored (the layers),
    # a temporary file it was writing, and no index.json entry yet.
    report = mirror.copy(image.reference, f"oci:{partial}:v1")
    assert report.ok, report.errors
    (partial / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": []}))
    (partial / "blobs" / "sha256" / image.digest.split(":")[1]).unlink()  # the manifest comes last
    (partial / ".ocitransport-killed.tmp").write_bytes(b"half a blob")

    report = mirror.copy(image.reference, f"oci-archive:{path}:v1")
    assert report.ok, report.errors
    assert report.blobs_transferred == 0  # the layers and config were already there
    assert sorted(p.name for p in tmp_path.iterdir()) == ["transfer.tar"]  # packed, working directory gone
    with tarfile.open(path) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        member = tar.extractfile(f"blobs/sha256/{image.digest.split(':')[1]}")
        assert member is not None and member.read() == image.manifest
        assert not [n for n in tar.getnames() if n.endswith(".tmp")]
    assert [(e["digest"], e["annotations"][REF_NAME]) for e in index["manifests"]] == [(image.digest, "v1")]


# ----------------------------------------------------------------------------- skopeo


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
@pytest.mark.parametrize("transport", ["oci", "oci-archive"])
def test_skopeo_reads_what_we_write_and_we_read_what_it_writes(registry, dst_registry, make_repo_name, tmp_path,
                                                               transport):
    repo = make_repo_name()
    image = raw.push_image(registry, repo, "v1", layers=[os.urandom(20_000), os.urandom(100)])
    ours = tmp_path / ("ours.tar" if transport == "oci-archive" else "ours")
    report = mirror.copy(image.reference, f"{transport}:{ours}:v1")
    assert report.ok, report.errors
    dst_repo = make_repo_name()
    subprocess.run(["skopeo", "copy", "--preserve-digests", f"{transport}:{ours}:v1",
                    f"docker://{dst_registry.host}/{dst_repo}:from-ours", "--dest-tls-verify=false"],
                   check=True, capture_output=True, timeout=60)
    assert raw.get_manifest(dst_registry, dst_repo, "from-ours").body == image.manifest

    theirs = tmp_path / ("theirs.tar" if transport == "oci-archive" else "theirs")
    subprocess.run(["skopeo", "copy", "--preserve-digests", f"docker://{image.reference}",
                    f"{transport}:{theirs}:v1", "--src-tls-verify=false"],
                   check=True, capture_output=True, timeout=60)
    report = mirror.copy(f"{transport}:{theirs}:v1", f"{dst_registry.host}/{dst_repo}:from-theirs")
    assert report.ok, report.errors
    assert report.images[0].digest == image.digest
    assert raw.get_manifest(dst_registry, dst_repo, "from-theirs").body == image.manifest


# ----------------------------------------------------------------------------- layout to layout


def _put_blob(layout: Path, data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def test_layout_to_layout_and_non_distributable_layers(tmp_path):
    src = tmp_path / "src"
    (src / "blobs" / "sha256").mkdir(parents=True)
    (src / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    config = _put_blob(src, b'{"architecture": "amd64", "os": "linux"}')
    layer = _put_blob(src, os.urandom(4000))
    foreign = _put_blob(src, os.urandom(3000))
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer},
                   {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", **foreign}],
    }).encode()
    top = _put_blob(src, manifest)
    (src / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **top, "annotations": {REF_NAME: "v1"}}]}))

    plain = tmp_path / "plain"
    report = mirror.copy(f"oci:{src}:v1", f"oci:{plain}:v1")
    assert report.ok, report.errors
    assert (report.blobs_transferred, report.bytes_transferred) == (2, config["size"] + layer["size"])
    assert _blob(plain, top["digest"]) == manifest
    assert not (plain / "blobs" / "sha256" / foreign["digest"].split(":")[1]).exists()  # as for registries

    everything = tmp_path / "everything"
    report = mirror.copy(f"oci:{src}:v1", f"oci:{everything}:v1", include_nondistributable=True)
    assert report.ok, report.errors
    assert _blob(everything, foreign["digest"]) == (src / "blobs" / "sha256" / foreign["digest"][7:]).read_bytes()

    # A source blob that does not hash to its name is not stored under it.
    (src / "blobs" / "sha256" / layer["digest"][7:]).write_bytes(os.urandom(4000))
    broken = tmp_path / "broken"
    report = mirror.copy(f"oci:{src}:v1", f"oci:{broken}:v1", retries=0)
    assert not report.ok and layer["digest"] in report.errors[0][1], report.errors
    assert not (broken / "blobs" / "sha256" / layer["digest"][7:]).exists()
    assert not (broken / "index.json").exists()
