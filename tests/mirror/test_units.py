"""Sans-I/O pieces of the mirror: manifest parsing, platform selection, Location checks, digest checks."""

from __future__ import annotations

import json

import pytest

from ocitransport.messages import Request, Response
from ocitransport.mirror.manifests import (
    DOCKER_SCHEMA1_SIGNED,
    OCI_INDEX,
    ManifestError,
    parse_manifest,
    platform_matches,
)
from ocitransport.mirror.plan import choose_platforms, has_identifier
from ocitransport.mirror.report import ImageResult, Report
from ocitransport.mirror.session import MirrorError, resolve_location


def test_schema1_and_unknown_types_are_refused():
    with pytest.raises(ManifestError, match="schema 1"):
        parse_manifest(json.dumps({"schemaVersion": 1, "fsLayers": []}).encode(), DOCKER_SCHEMA1_SIGNED)
    with pytest.raises(ManifestError, match="unsupported manifest media type"):
        parse_manifest(b'{"schemaVersion":2,"mediaType":"application/x-thing"}', None)
    with pytest.raises(ManifestError, match="JSON"):
        parse_manifest(b"<html>", "text/html")


def test_media_type_from_content_type_or_fields():
    body = b'{"schemaVersion":2,"manifests":[]}'
    assert parse_manifest(body, OCI_INDEX + "; charset=utf-8").media_type == OCI_INDEX
    assert parse_manifest(body, "application/json").media_type == OCI_INDEX


def _index(*platforms):
    return parse_manifest(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{i:064x}", "size": 1,
         "platform": p} for i, p in enumerate(platforms)]}).encode(), None)


def test_platform_selection():
    idx = _index({"os": "linux", "architecture": "arm64", "variant": "v8"},
                 {"os": "linux", "architecture": "amd64"}, {"os": "unknown", "architecture": "unknown"})
    keep, filtered = choose_platforms(idx, ["linux/arm64"])
    assert filtered is None and keep[0].digest.endswith("0")
    keep, filtered = choose_platforms(idx, ["linux/amd64", "linux/arm64/v8"])
    assert filtered is not None and [m["digest"][-1] for m in filtered.data["manifests"]] == ["0", "1"]
    with pytest.raises(MirrorError, match="it has: linux/amd64, linux/arm64/v8, unknown/unknown"):
        choose_platforms(idx, ["linux/riscv64"])
    assert not platform_matches({"os": "linux", "architecture": "arm64", "variant": "v7"},
                                [("linux", "arm64", "v8")])


def test_has_identifier():
    assert has_identifier("localhost:5000/a/b:tag")
    assert has_identifier("r.example/a@sha256:" + "0" * 64)
    assert not has_identifier("localhost:5000/a/b")


def _response(location, url="http://registry.example:5000/v2/a/blobs/uploads/"):
    return Response(202, {"Location": location}, url=url, request=Request("POST", url))


def test_upload_location_resolution_and_ssrf_guard():
    assert resolve_location(_response("/v2/a/blobs/uploads/u1?_state=x"), "http://registry.example:5000/v2/a/") \
        == "http://registry.example:5000/v2/a/blobs/uploads/u1?_state=x"
    assert resolve_location(_response("https://storage.example/up/1"), "") == "https://storage.example/up/1"
    with pytest.raises(MirrorError, match="SSRF protection"):
        resolve_location(_response("http://169.254.169.254/latest"), "http://registry.example:5000/v2/")
    with pytest.raises(MirrorError, match="SSRF protection"):
        resolve_location(_response("http://10.0.0.1/x"), "http://registry.example:5000/v2/")
    loopback = "http://127.0.0.1:5000/v2/a/blobs/uploads/"
    assert resolve_location(_response("/v2/a/blobs/uploads/u", loopback), loopback).startswith(
        "http://127.0.0.1:5000/")
    with pytest.raises(MirrorError, match="missing Location"):
        resolve_location(Response(202, {}, url=loopback), loopback)


def test_upload_range_headers():
    from ocitransport.mirror.session import _range_end

    # Registries state what an upload holds as "0-<last byte>"; distribution says "0-0" when empty.
    assert [_range_end(v) for v in ("0-1023", "bytes=0-9", "0-0", "0--1", None, "", "5-9", "0-x")] == [
        1024, 10, 0, 0, None, None, None, None]


def test_report_json_round_trip():
    report = Report()
    report.add(ImageResult("a:1", "b:1", "copied", "sha256:x", blobs_transferred=2, bytes_transferred=10))
    report.add(ImageResult("a:2", "b:2", "failed", error="boom"))
    data = json.loads(report.to_json())
    assert data["images_copied"] == 1 and data["images_failed"] == 1 and not data["ok"]
    assert data["errors"] == [{"reference": "a:2", "error": "boom"}]
