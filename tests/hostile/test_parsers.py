"""Every parser fed hostile bytes and text: only its documented error, never a crash or a hang, and the
compiled twin agrees with the pure one (``fuzz/targets.py`` holds the targets; ``fuzz/run.py`` runs the
same checks for millions of inputs outside CI)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from fuzz.targets import TARGETS
from hypothesis import HealthCheck, given, settings

from ocitransport._links import MAX_LINK_HEADER, next_link, parse_links
from ocitransport.mirror.manifests import ManifestError, filter_index, parse_manifest, valid_digest
from ocitransport.mirror.tags import TagListError, parse_tag_list
from ocitransport.name import BadName, parse_reference

pytestmark = pytest.mark.hypothesis

HEX = "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_parser_survives_hostile_input(name: str) -> None:
    target = TARGETS[name]

    @settings(max_examples=150, deadline=timedelta(seconds=2), database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(target.strategy)
    def check(value: object) -> None:
        target.check(value)

    check()


# ------------------------------------------------------------------------------------------ regressions


def test_reference_grammar_is_linear_time() -> None:
    # Upstream's path-component separator may be empty; with a backtracking regex engine 26 digits
    # followed by a bad character took 15 s. 100,000 characters must now fail at once.
    start = time.monotonic()
    for text in ["9" * 40 + '"', "a" + "-a" * 50_000 + "!", "a" * 100_000 + "/B", "a._" * 30_000 + "!"]:
        with pytest.raises(BadName):
            parse_reference(text)
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize("raw, reason", [
    (b"[" * 100_000, "nested too deeply"),
    (b'{"schemaVersion": ' + b"9" * 5000 + b"}", "not valid JSON"),
    (b'{"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": 5}', "manifests is not an array"),
    (b'{"mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": {"a": 1}}', "layers is not an array"),
    ((b'{"mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": [{"digest": "sha256:../../x", '
     b'"size": 1}]}'), "no valid digest"),
    (b'{"mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": [{"digest": "sha256:' + HEX.encode()
     + b'", "size": true}]}', "no valid size"),
])
def test_hostile_manifests_raise_manifest_error(raw: bytes, reason: str) -> None:
    with pytest.raises(ManifestError, match=reason):
        manifest = parse_manifest(raw, None, where="r.example/a:b")
        manifest.children()
        manifest.blobs()


def test_unsupported_media_type_message_is_bounded() -> None:
    raw = json.dumps({"mediaType": "x" * 1_000_000}).encode()
    with pytest.raises(ManifestError) as info:
        parse_manifest(raw, None)
    assert len(str(info.value)) < 400


def test_filter_index_skips_entries_that_are_not_objects() -> None:
    raw = json.dumps({"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        "junk", {"digest": "sha256:" + HEX, "size": 1, "mediaType": "x"}]}).encode()
    index = parse_manifest(raw, None)
    kept = filter_index(index, [])
    assert kept.data["manifests"] == []


@pytest.mark.parametrize("digest, ok", [
    ("sha256:" + HEX, True), ("sha512:" + "ab" * 64, True), ("sha256:" + HEX.upper(), False),
    ("sha256:" + HEX[:-1], False), ("sha256:../x", False),
    ("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8", True),
    ("sha256", False), (":abc", False), ("sha256:" + HEX + "\n", False), (None, False), ("a:" + "b" * 2000, False),
])
def test_valid_digest(digest: object, ok: bool) -> None:
    assert valid_digest(digest) is ok


# ------------------------------------------------------------------------------------------ Link headers

BASE = "https://r.example/v2/a/tags/list?n=2"


@pytest.mark.parametrize("value, expected", [
    ('</v2/a/tags/list?n=2&last=b>; rel="next"', "https://r.example/v2/a/tags/list?n=2&last=b"),
    ("</v2/a/tags/list?last=b>;rel=next", "https://r.example/v2/a/tags/list?last=b"),
    ('</p>; rel="prev", </n>; title="a, b; c"; rel="next"', "https://r.example/n"),
    ('</n>; REL="Next Last"', "https://r.example/n"),
    ('<https://other.example/x>; rel="next"', "https://other.example/x"),
    ('</a,b>; rel="next"', "https://r.example/a,b"),
    ('</p>; rel="prev"', None),
    ('</x>; rel="nextpage"', None),
    ("</x>", None),
    ('<javascript:alert(1)>; rel="next"', None),
    ('<file:///etc/passwd>; rel="next"', None),
    ('<http://[::1>; rel="next"', None),
    ('<http://r.example:99999/x>; rel="next"', None),
    ('</x\r\nInjected: 1>; rel="next"', None),
    ('no-angle; rel="next"', None),
    ("", None),
])
def test_next_link(value: str, expected: str | None) -> None:
    assert next_link(value, BASE) == expected


def test_next_link_several_header_values_and_odd_input() -> None:
    assert next_link(['</p>; rel="prev"', '</n>; rel="next"'], BASE) == "https://r.example/n"
    assert next_link(None, BASE) is None
    assert next_link([], BASE) is None
    assert next_link('<' + "x" * MAX_LINK_HEADER + '>; rel="next"', BASE) is None
    assert parse_links(42) == []  # type: ignore[arg-type]
    assert parse_links([b"</x>; rel=next", None]) == []  # type: ignore[list-item]
    assert parse_links('</x>; rel=next; rel=prev; Title="a \\" b"') == [("/x", {"rel": "next", "title": 'a " b'})]


# ------------------------------------------------------------------------------------------ tag lists


@pytest.mark.parametrize("body, tags", [
    (b'{"name": "a", "tags": ["v1", "latest"]}', ["v1", "latest"]),
    (b'{"name": "a", "tags": null}', []),
    (b'{"name": "a"}', []),
    (b'{"tags": ["v1", 2, null, {"x": 1}, "v2"]}', ["v1", "v2"]),
])
def test_tag_list(body: bytes, tags: list[str]) -> None:
    assert parse_tag_list(body) == tags


@pytest.mark.parametrize("body, reason", [
    (b"<html>gateway</html>", "not JSON"),
    (b"\xff\xfe\x00", "not JSON"),
    (b"[" * 100_000, "not JSON"),
    (b'["v1"]', "a JSON array, not an object"),
    (b'{"tags": "v1"}', '"tags" is a JSON string, not an array'),
    (b'{"tags": {"v1": 1}}', '"tags" is a JSON object, not an array'),
])
def test_tag_list_errors(body: bytes, reason: str) -> None:
    with pytest.raises(TagListError, match=reason):
        parse_tag_list(body)
    with pytest.raises(TypeError):
        parse_tag_list("{}")  # type: ignore[arg-type]
