"""Referrers (signatures, SBOMs) copied with their subjects: the OCI 1.1 tag schema fallback and cosign's
tags between real registries (distribution 2.8 has no referrers API), checked with raw HTTP; the
referrers API answer read from a small loopback server of ours."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ocitransport import mirror
from ocitransport.cli import main
from ocitransport.client import Client
from ocitransport.mirror.manifests import parse_manifest
from ocitransport.mirror.referrers import cosign_tags, fallback_tag, is_referrer_tag
from ocitransport.mirror.session import Session
from ocitransport.name import Repository
from tests.servers import raw
from tests.servers.raw import OCI_INDEX, OCI_MANIFEST

EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
SIG_TYPE = "application/vnd.example.signature.v1"
SBOM_TYPE = "application/spdx+json"


def _push_referrer(registry, repo: str, subject: tuple[str, int, str] | None, artifact_type: str,
                   payload: bytes, tag: str = "") -> tuple[str, bytes]:
    """Push an artifact manifest (empty config, one ``payload`` layer) referring to ``subject``
    ``(digest, size, media_type)``, by digest (and as ``tag`` too); its digest and bytes."""
    config = raw.push_blob(registry, repo, b"{}")
    layer = raw.push_blob(registry, repo, payload)
    value = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
             "config": {"mediaType": EMPTY_CONFIG, "digest": config, "size": 2},
             "layers": [{"mediaType": artifact_type, "digest": layer, "size": len(payload)}],
             "annotations": {"org.example.kind": artifact_type}}
    if subject is not None:
        value["subject"] = {"mediaType": subject[2], "digest": subject[0], "size": subject[1]}
    body = json.dumps(value, indent=2).encode()
    digest = raw.push_manifest(registry, repo, raw.sha256_digest(body), body, OCI_MANIFEST)
    if tag:
        raw.push_manifest(registry, repo, tag, body, OCI_MANIFEST)
    return digest, body


def _push_fallback(registry, repo: str, subject: str, entries: list[tuple[str, bytes]]) -> None:
    """The tag schema fallback: ``sha256-<hex>`` holding an index of the referrers of ``subject``."""
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d, "size": len(b), "artifactType": json.loads(b)["artifactType"]}
        for d, b in entries]}
    raw.push_manifest(registry, repo, fallback_tag(subject), json.dumps(index).encode(), OCI_INDEX)


def _listed(registry, repo: str, subject: str) -> list[str]:
    got = raw.get_manifest(registry, repo, fallback_tag(subject), accept=OCI_INDEX)
    assert got.status == 200, got.body
    return [m["digest"] for m in got.json()["manifests"]]


@pytest.fixture
def signed(registry, make_repo_name):
    """A source image with a signature (by ``subject``, in the fallback index and as cosign's ``.sig``
    tag), an SBOM (in the fallback index) and a signature of the SBOM (cosign tag of the SBOM)."""
    repo = make_repo_name()
    image = raw.push_image(registry, repo, "v1", layers=[os.urandom(2000)])
    subject = (image.digest, len(image.manifest), image.media_type)
    sig_tag = cosign_tags(image.digest)[0]
    sig = _push_referrer(registry, repo, subject, SIG_TYPE, b"signature of v1", tag=sig_tag)
    sbom = _push_referrer(registry, repo, subject, SBOM_TYPE, os.urandom(3000))
    _push_fallback(registry, repo, image.digest, [sig, sbom])
    sbom_sig_tag = cosign_tags(sbom[0])[0]
    sbom_sig = _push_referrer(registry, repo, (sbom[0], len(sbom[1]), OCI_MANIFEST), SIG_TYPE,
                              b"signature of the sbom", tag=sbom_sig_tag)
    return {"repo": repo, "image": image, "sig": sig, "sig_tag": sig_tag, "sbom": sbom,
            "sbom_sig": sbom_sig, "sbom_sig_tag": sbom_sig_tag}


def test_names_and_manifest_fields():
    digest = "sha256:" + "ab" * 32
    assert fallback_tag(digest) == "sha256-" + "ab" * 32
    assert cosign_tags(digest) == [f"sha256-{'ab' * 32}{s}" for s in (".sig", ".att", ".sbom")]
    assert is_referrer_tag(cosign_tags(digest)[2]) and is_referrer_tag(fallback_tag(digest))
    assert not is_referrer_tag("sha256-abc.sig") and not is_referrer_tag("v1.sig")
    assert not is_referrer_tag("sha256-" + "AB" * 32)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.example.config", "digest": digest, "size": 2},
                       "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": 7},
                       "annotations": {"a": "b"}}).encode()
    manifest = parse_manifest(body, None)
    assert manifest.subject is not None and (manifest.subject.digest, manifest.subject.size) == (digest, 7)
    # No artifactType: the config's media type stands for it, as the referrers API lists it.
    assert manifest.referrer_entry() == {"mediaType": OCI_MANIFEST, "digest": manifest.digest,
                                         "size": len(body), "artifactType": "application/vnd.example.config",
                                         "annotations": {"a": "b"}}


def test_copy_brings_referrers_and_cosign_tags(registry, dst_registry, make_repo_name, counting_client, signed):
    image = signed["image"]
    dst_repo = make_repo_name()
    report = mirror.copy(image.reference, f"{dst_registry.host}/{dst_repo}:v1", client=counting_client)
    assert report.ok, report.errors
    assert report.images_copied == 5  # the image, sig (digest + tag), sbom, the sbom's sig tag
    for digest, body in (signed["sig"], signed["sbom"], signed["sbom_sig"]):
        assert raw.get_manifest(dst_registry, dst_repo, digest).body == body  # identical digests
    assert raw.get_manifest(dst_registry, dst_repo, signed["sig_tag"]).body == signed["sig"][1]
    assert raw.get_manifest(dst_registry, dst_repo, signed["sbom_sig_tag"]).body == signed["sbom_sig"][1]
    assert raw.get_blob(dst_registry, dst_repo, json.loads(signed["sbom"][1])["layers"][0]["digest"]) is not None
    # The destination has no referrers API either: its fallback index lists what was copied.
    assert sorted(_listed(dst_registry, dst_repo, image.digest)) == sorted([signed["sig"][0], signed["sbom"][0]])
    index = raw.get_manifest(dst_registry, dst_repo, fallback_tag(image.digest), accept=OCI_INDEX).json()
    assert {m["artifactType"] for m in index["manifests"]} == {SIG_TYPE, SBOM_TYPE}
    # Every referrer was reported after its subject.
    order = [r.destination for r in report.images]
    dst = f"{dst_registry.host}/{dst_repo}"
    assert order[0] == f"{dst}:v1"
    assert order.index(f"{dst}@{signed['sbom'][0]}") < order.index(f"{dst}:{signed['sbom_sig_tag']}")
    assert sorted(raw.list_tags(dst_registry, dst_repo)) == sorted(
        ["v1", signed["sig_tag"], signed["sbom_sig_tag"], fallback_tag(image.digest)])

    counting_client.log.clear()
    again = mirror.copy(image.reference, f"{dst_registry.host}/{dst_repo}:v1", client=counting_client)
    assert again.ok and (again.images_copied, again.images_skipped) == (0, 5), again.errors
    assert [m for m, _, _ in counting_client.log if m in ("PUT", "POST", "PATCH")] == []
    assert not any("/blobs/" in url for _, url, _ in counting_client.log)


def test_mirror_merges_the_destination_fallback_index(registry, dst_registry, make_repo_name, counting_client,
                                                      signed):
    repo, image = signed["repo"], signed["image"]
    dst_repo = make_repo_name()
    # The destination already lists a referrer of its own for the same image: it must stay listed.
    raw.push_image(dst_registry, dst_repo, "v1", layers=image.layers, config=image.config)
    theirs = _push_referrer(dst_registry, dst_repo, (image.digest, len(image.manifest), image.media_type),
                            "application/vnd.example.vex", b"theirs")
    _push_fallback(dst_registry, dst_repo, image.digest, [theirs])

    report = mirror.mirror_repository(f"{registry.host}/{repo}", f"{dst_registry.host}/{dst_repo}",
                                      client=counting_client)
    assert report.ok, report.errors
    assert sorted(_listed(dst_registry, dst_repo, image.digest)) == sorted(
        [theirs[0], signed["sig"][0], signed["sbom"][0]])
    assert raw.get_manifest(dst_registry, dst_repo, signed["sig_tag"]).body == signed["sig"][1]
    assert raw.get_manifest(dst_registry, dst_repo, signed["sbom_sig_tag"]).body == signed["sbom_sig"][1]
    # The source's fallback tag was not copied over the destination's (that would drop "theirs").
    puts = [url for method, url, _ in counting_client.log if method == "PUT" and "/manifests/" in url]
    assert sum(url.endswith("/" + fallback_tag(image.digest)) for url in puts) == 2  # one merge per referrer

    counting_client.log.clear()
    again = mirror.mirror_repository(f"{registry.host}/{repo}", f"{dst_registry.host}/{dst_repo}",
                                     client=counting_client)
    assert again.ok and again.images_copied == 0, again.errors
    assert [m for m, _, _ in counting_client.log if m in ("PUT", "POST", "PATCH")] == []


def test_referrers_false_copies_none(registry, dst_registry, make_repo_name, signed):
    image = signed["image"]
    dst_repo = make_repo_name()
    plan = mirror.plan_copy(image.reference, f"{dst_registry.host}/{dst_repo}:v1", referrers=False)
    assert [u.destination for u in plan.units] == [f"{dst_registry.host}/{dst_repo}:v1"]
    report = mirror.copy(image.reference, f"{dst_registry.host}/{dst_repo}:v1", referrers=False)
    assert report.ok and report.images_copied == 1, report.errors
    assert raw.list_tags(dst_registry, dst_repo) == ["v1"]
    assert raw.get_manifest(dst_registry, dst_repo, signed["sig"][0]).status == 404


def test_cli_no_referrers_copy_and_mirror(registry, dst_registry, make_repo_name, signed, capsys):
    image = signed["image"]
    dst = f"{dst_registry.host}/{make_repo_name()}"
    status = main(["copy", "--json", "--no-referrers", image.reference, f"{dst}:v1"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert [i["destination"] for i in json.loads(out)["images"]] == [f"{dst}:v1"]
    # Without the flag the same command brings them along (the flag is what made the difference).
    status = main(["copy", "--json", image.reference, f"{dst}:v1"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert json.loads(out)["images_copied"] == 4  # the image itself was already there
    # A mirror with --no-referrers takes tags as tags: cosign's and the fallback tags are copied as
    # plain tags, one unit each, and no referrer is looked up by digest.
    dst_repo = make_repo_name()
    status = main(["mirror", "--json", "--no-referrers", f"{registry.host}/{signed['repo']}",
                   f"{dst_registry.host}/{dst_repo}"])
    out, err = capsys.readouterr()
    assert status == 0, err
    source_tags = raw.list_tags(registry, signed["repo"])
    assert sorted(i["destination"] for i in json.loads(out)["images"]) == sorted(
        f"{dst_registry.host}/{dst_repo}:{t}" for t in source_tags)
    assert sorted(raw.list_tags(dst_registry, dst_repo)) == sorted(source_tags)


def test_sync_referrers_override(registry, dst_registry, make_repo_name, signed, tmp_path, capsys):
    image = signed["image"]
    name = signed["repo"].rsplit("/", 1)[-1]
    config = {"destination": f"{dst_registry.host}/off", registry.host: {"images": {signed["repo"]: ["v1"]}}}
    plan_only = mirror.sync(config, dry_run=True)
    assert plan_only.ok and len(plan_only.images) == 5  # the file's default: referrers on
    report = mirror.sync(config, referrers=False)
    assert report.ok and report.images_copied == 1, report.errors
    assert raw.list_tags(dst_registry, f"off/{name}") == ["v1"]
    # The file says yes, the command line says no; and the other way round.
    path = tmp_path / "sync.yaml"
    path.write_text(f"destination: {dst_registry.host}/cli\n{registry.host}:\n  images:\n"
                    f"    {signed['repo']}: [v1]\n  referrers: false\n")
    status = main(["sync", "--json", "--dry-run", str(path)])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert len(json.loads(out)["images"]) == 1
    config = {"destination": f"{dst_registry.host}/on",
              registry.host: {"images": {signed["repo"]: ["v1"]}, "referrers": False}}
    assert len(mirror.sync(config, dry_run=True, referrers=True).images) == 5
    path.write_text(f"destination: {dst_registry.host}/cli\n{registry.host}:\n  images:\n"
                    f"    {signed['repo']}: [v1]\n")
    status = main(["sync", "--json", "--no-referrers", str(path)])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert json.loads(out)["images_copied"] == 1
    assert raw.list_tags(dst_registry, f"cli/{name}") == ["v1"]
    assert raw.get_manifest(dst_registry, f"cli/{name}", signed["sig"][0]).status == 404
    assert raw.get_manifest(dst_registry, f"cli/{name}", "v1").body == image.manifest


def test_referrer_of_a_failed_subject_is_not_copied(registry, dst_registry, make_repo_name):
    repo, dst_repo = make_repo_name(), make_repo_name()
    image = raw.push_image(registry, repo, "v1")
    sig = _push_referrer(registry, repo, (image.digest, len(image.manifest), image.media_type), SIG_TYPE,
                         b"sig", tag=cosign_tags(image.digest)[0])
    _push_fallback(registry, repo, image.digest, [sig])
    plan = mirror.plan_copy(image.reference, f"{dst_registry.host}/{dst_repo}:v1")
    units = pickle.loads(pickle.dumps(plan.units))
    assert units == plan.units and len(units) == 3
    assert {u.subject for u in units[1:]} == {f"{dst_registry.host}/{dst_repo}@{image.digest}"}
    assert {u.depends_on for u in units[1:]} == {units[0].destination}
    # The image goes away at the source between planning and running: its unit fails.
    assert raw.request(registry, "DELETE", f"/v2/{repo}/manifests/{image.digest}").status == 202
    report = mirror.execute(list(reversed(units)), jobs=4)  # order does not matter: referrers wait
    assert report.images_failed == 1 and report.errors[0][0] == image.reference
    skipped = [r for r in report.images if r.status == "skipped"]
    assert len(skipped) == 2
    assert all("not copied: its subject" in r.note and image.digest in r.note for r in skipped)
    assert raw.get_manifest(dst_registry, dst_repo, sig[0]).status == 404
    assert raw.list_tags(dst_registry, dst_repo) == []


# ---------------------------------------------------------------- the referrers API (OCI 1.1 registries)


class _ReferrersRegistry(ThreadingHTTPServer):
    """Answers ``GET /v2/a/referrers/<digest>`` in two pages linked by ``Link``; ``/v2/b/...`` like a
    registry without the API (404), ``/v2/c/...`` with an HTML page (a proxy's login form), ``/v2/d/...``
    with 200,000 nested brackets."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReferrersHandler)
        self.paths: list[str] = []


class _ReferrersHandler(BaseHTTPRequestHandler):
    server: _ReferrersRegistry

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # http.server naming
        self.server.paths.append(self.path)
        if self.path == "/v2/":
            self._send(200, b"{}", "application/json")
        elif self.path.startswith("/v2/a/referrers/"):
            last = "page=2" in self.path
            entry = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + ("2" if last else "1") * 64, "size": 10,
                     "artifactType": SIG_TYPE}
            link = {} if last else {"Link": f'<{self.path}?page=2>; rel="next"'}
            body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}).encode()
            self._send(200, body, OCI_INDEX, link)
        elif self.path.startswith("/v2/b/referrers/"):
            self._send(404, b"404 page not found\n", "text/plain")
        elif self.path.startswith("/v2/d/referrers/"):  # deeper than any JSON parser goes
            self._send(200, b"[" * 200_000, OCI_INDEX)
        else:
            self._send(200, b"<html>sign in</html>", "text/html")


@pytest.fixture
def referrers_registry() -> Iterator[_ReferrersRegistry]:
    server = _ReferrersRegistry()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_list_referrers_follows_pages_and_spots_registries_without_the_api(referrers_registry):
    host = f"127.0.0.1:{referrers_registry.server_address[1]}"
    subject = "sha256:" + "f" * 64

    async def run() -> list:
        with Client() as client:
            session = Session(client, keychain=None)
            out = []
            for name in ("a", "b", "c", "d"):
                repo = Repository(f"{host}/{name}")
                out.append(await session.list_referrers(await session.pull(repo), repo, subject))
            return out

    paged, missing, html, deep = asyncio.run(asyncio.wait_for(run(), 30))
    assert [e["digest"] for e in paged] == ["sha256:" + "1" * 64, "sha256:" + "2" * 64]
    assert paged[0]["artifactType"] == SIG_TYPE
    assert missing is None and html is None and deep is None
    assert sum(p.startswith("/v2/a/referrers/") for p in referrers_registry.paths) == 2
