"""Strings that come from a registry (headers, manifests, tag lists, referrers) are checked against the
reference grammar before they reach a URL or a log line: a hostile source registry
(tests/servers/hostile_registry.py, a real server on loopback) gets no request outside the repository,
and the image fails with one clear line."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from ocitransport import mirror
from ocitransport.authn import MultiKeychain
from ocitransport.mirror.manifests import ManifestError
from tests.servers.hostile_registry import HostileRegistry

REPO = "hostile/repo"
EVIL_HEX = "0" * 64


@pytest.fixture
def source() -> Iterator[HostileRegistry]:
    with HostileRegistry() as server:
        yield server


@pytest.fixture
def dest() -> Iterator[HostileRegistry]:
    with HostileRegistry() as server:
        yield server


def _outside(server: HostileRegistry, repo: str = REPO) -> list[str]:
    """Requests that went anywhere but the ping and ``repo``'s own API paths."""
    return [p for p in server.paths() if p != "/v2/" and not p.startswith(f"/v2/{repo}/")]


def _copy(src: str, dst: str, **options: object) -> mirror.Report:
    return mirror.copy(src, dst, keychain=MultiKeychain(), retries=0, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("header", [
    f"sha256:{EVIL_HEX}/../../../../evil",
    f"sha256:{EVIL_HEX}/../../../../evil/manifests/pwn",
    "sha256:../../evil",
    f"sha256:{EVIL_HEX[:63]}",
    f"sha256:{'A' * 64}",
    f"sha256:{EVIL_HEX}?x=1#frag",
])
def test_forged_docker_content_digest_never_becomes_a_request(source: HostileRegistry, dest: HostileRegistry,
                                                             header: str) -> None:
    source.image(REPO, "v1", headers={"Docker-Content-Digest": header})
    report = _copy(f"{source.host}/{REPO}:v1", f"{dest.host}/copy/repo:v1")
    assert not report.ok
    assert len(report.errors) == 1
    message = report.errors[0][1]
    assert "invalid Docker-Content-Digest" in message and "\n" not in message and "\r" not in message
    assert _outside(source) == []
    assert not any(EVIL_HEX in p or "evil" in p for p in source.paths())  # never requested by that digest
    assert dest.paths("PUT") == [] and dest.paths("POST") == []


def test_tag_list_entries_that_are_not_tags_are_skipped_and_counted(
        source: HostileRegistry, dest: HostileRegistry, caplog: pytest.LogCaptureFixture) -> None:
    for tag in ("v1", "v2"):
        source.image(REPO, tag)
    bad = ["../../../evil", "../../evil/manifests/pwn", "a/b", "x" * 129, "-dash", "sp ace", "v3\r\nX: 1",
           "9" * 5000]
    source.tag_pages = lambda target: (["v1", *bad, "v2"], None)
    caplog.set_level(logging.WARNING, logger="ocitransport.mirror")
    report = mirror.mirror_repository(f"{source.host}/{REPO}", f"{dest.host}/copy/repo",
                                      keychain=MultiKeychain(), retries=0)
    assert report.ok, report.errors
    assert report.images_copied == 2
    assert {ref for (repo, ref) in dest.manifests if ":" not in ref} == {"v1", "v2"}
    assert _outside(source) == []
    manifest_paths = [p for p in source.paths() if "/manifests/" in p]
    assert all(p.rsplit("/", 1)[1] in ("v1", "v2") or p.rsplit("/", 1)[1].startswith("sha256:")
               for p in manifest_paths), manifest_paths
    assert f"skipped {len(bad)} invalid tags" in caplog.text


def test_layer_media_type_that_breaks_rfc_6838_fails_the_image(source: HostileRegistry,
                                                               dest: HostileRegistry) -> None:
    layer = source.blob(os.urandom(1000))
    layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar\r\nX-Injected: yes"
    source.image(REPO, "v1", layers=[layer])
    report = _copy(f"{source.host}/{REPO}:v1", f"{dest.host}/copy/repo:v1")
    assert not report.ok
    (_, message), = report.errors
    assert "invalid media type" in message and "\n" not in message
    assert source.paths("GET") and not any("/blobs/" in p for p in source.paths())  # no blob fetched
    assert dest.paths("POST") == [] and dest.paths("PUT") == []


def test_media_type_grammar() -> None:
    from ocitransport.name import is_media_type

    for good in ("application/vnd.oci.image.layer.v1.tar+gzip", "text/plain", "application/x-a_b.c"):
        assert is_media_type(good)
    for bad in ("", "application", "application/", "/json", "a/b/c", "a/b; charset=x", "a/b\r\n",
                "a b/c", "a/" + "b" * 200):
        assert not is_media_type(bad)
    with pytest.raises(ManifestError, match="invalid media type"):
        from ocitransport.mirror.manifests import parse_manifest

        parse_manifest(b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", '
                       b'"config": {"mediaType": "a/b\\nc", "size": 1, "digest": "sha256:' + EVIL_HEX.encode()
                       + b'"}, "layers": []}', None).blobs()
