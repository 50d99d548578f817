"""No secret in logs, exception messages, ``repr()``, the JSON report or progress output: a whole mirror
from a Basic-auth registry to a Bearer-auth registry with DEBUG logging captured, through the library and
through the command line (``-v``), then every captured line is searched for the passwords, their Basic
encodings and every token the token server issued."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ocitransport import mirror
from ocitransport.authn import DefaultKeychain
from tests.servers import raw
from tests.servers.registry import RegistryServer


def _config(path: Path, *servers: RegistryServer) -> None:
    def entry(server: RegistryServer) -> dict[str, str]:
        return {"auth": base64.b64encode(f"{server.username}:{server.password}".encode()).decode()}

    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"auths": {s.host: entry(s) for s in servers}}))


def _secrets(basic: RegistryServer, bearer: RegistryServer, *extra: str) -> list[str]:
    assert bearer.token_server is not None
    tokens = list(bearer.token_server.issued_tokens)
    assert tokens, "the token server issued no token: the test would prove nothing"
    out = [basic.password, bearer.password, *extra, *tokens]
    for server in (basic, bearer):
        out.append(base64.b64encode(f"{server.username}:{server.password}".encode()).decode())
    # A JWT's signature part alone identifies it; look for it too (a log might cut the token).
    out += [t.rsplit(".", 1)[-1] for t in tokens if t.count(".") == 2]
    return [s for s in out if len(s) >= 8]


def _assert_clean(texts: dict[str, str], secrets: list[str]) -> None:
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret ({secret[:3]}...) is in {where}"


#: A signed query value that is not redacted (X-Amz-*, X-Goog-*, Azure's sig/se/..., CloudFront's).
_SIGNED_VALUE = re.compile(r"(?i)(?:X-Amz-[A-Za-z]+|X-Goog-[A-Za-z]+|sig|se|sp|skoid|Signature|Key-Pair-Id|Policy)"
                           r"=(?!REDACTED)[^&\s\"',)]+")


def _assert_no_credentials_reached_storage(sent: bytes, secrets: list[str]) -> None:
    """What clients sent to the S3 storage host: presigned requests, and the registries' own signed S3
    calls (``Authorization: AWS4-HMAC-SHA256``); never a registry credential, token or cookie."""
    assert b"X-Amz-Signature=" in sent, "no presigned request reached storage: the test would prove nothing"
    text = sent.decode("latin-1")
    schemes = {m.lower() for m in re.findall(r"(?im)^authorization:[ \t]*(\S+)", text)}
    assert schemes <= {"aws4-hmac-sha256"}, schemes
    assert not re.search(r"(?im)^(?:cookie|proxy-authorization|x-registry-auth):", text)
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:3]}...) reached the storage host"


@pytest.mark.parametrize("where", ["filesystem", "s3"])
def test_library_mirror_logs_reports_and_errors_hold_no_secret(
        where, make_repo_name, tmp_path, monkeypatch, caplog, request) -> None:
    """On S3 too: blob GETs and HEADs are 307s to presigned URLs, logged (Location headers included)
    with their signatures redacted, and followed without the registries' credentials."""
    if where == "s3":
        storage = request.getfixturevalue("storage")
        basic_registry = request.getfixturevalue("s3_basic_registry")
        bearer_registry = request.getfixturevalue("s3_bearer_registry")
    else:
        basic_registry = request.getfixturevalue("basic_registry")
        bearer_registry = request.getfixturevalue("bearer_registry")
    src, dst = make_repo_name(), make_repo_name()
    for tag in ("v1", "v2"):
        raw.push_image(basic_registry, src, tag)
    _config(tmp_path / "good", basic_registry, bearer_registry)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "good"))
    caplog.set_level(logging.DEBUG)  # every logger, the library's included

    report = mirror.mirror_repository(f"{basic_registry.host}/{src}", f"{bearer_registry.host}/{dst}")
    assert report.ok, report.errors
    assert report.images_copied == 2
    # A new tag of an image whose blobs are there: their HEADs answer (307 on S3) "present".
    again = mirror.copy(f"{basic_registry.host}/{src}:v1", f"{bearer_registry.host}/{dst}:again")
    assert again.ok and again.blobs_skipped == 2 and again.blobs_transferred == 0, again.errors

    # A failing run too: a wrong destination password (the error path quotes registry answers).
    wrong = "Wr0ng-passw0rd-xyz"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"auths": {
        basic_registry.host: {"auth": base64.b64encode(f"alice:{basic_registry.password}".encode()).decode()},
        bearer_registry.host: {"username": "alice", "password": wrong}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "bad"))
    failed = mirror.mirror_repository(f"{basic_registry.host}/{src}", f"{bearer_registry.host}/{make_repo_name()}",
                                      retries=0)
    assert not failed.ok and failed.errors

    auth = DefaultKeychain().resolve(bearer_registry.host)
    texts = {
        "logs": "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records),
        "report": report.to_json() + report.summary() + repr(report),
        "failed report": failed.to_json() + failed.summary() + repr(failed),
        "reprs": repr(auth) + str(auth) + repr(auth.authorization()) + str(auth.authorization()),
    }
    assert any(r.levelname == "DEBUG" for r in caplog.records), "no DEBUG record: logging was not captured"
    _assert_clean(texts, _secrets(basic_registry, bearer_registry, wrong))
    for where_, text in texts.items():
        assert not _SIGNED_VALUE.search(text), f"a signed query value in {where_}: {_SIGNED_VALUE.search(text)}"
    if where == "s3":
        _assert_no_credentials_reached_storage(storage.link.sent, _secrets(basic_registry, bearer_registry))


@pytest.mark.parametrize("output, where", [("--json", "filesystem"), ("--text", "filesystem"), ("--text", "s3")])
def test_cli_mirror_verbose_output_holds_no_secret(make_repo_name, tmp_path, output: str, where: str,
                                                   request) -> None:
    """With ``-v`` every request and answer is logged: on S3 that includes the 307s to storage, whose
    ``Location`` is a presigned URL (the signature hands the blob to anyone for its lifetime)."""
    prefix = "s3_" if where == "s3" else ""
    basic_registry = request.getfixturevalue(prefix + "basic_registry")
    bearer_registry = request.getfixturevalue(prefix + "bearer_registry")
    src, dst = make_repo_name(), make_repo_name()
    raw.push_image(basic_registry, src, "v1")
    _config(tmp_path, basic_registry, bearer_registry)
    args = [sys.executable, "-m", "ocitransport", "mirror", "-v", f"{basic_registry.host}/{src}",
            f"{bearer_registry.host}/{dst}"]
    if output == "--json":
        args.insert(4, "--json")
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "DOCKER_CONFIG": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    # The logging layer ran: requests with their (redacted) Authorization headers are in the output.
    assert "authorization" in done.stderr.lower(), "verbose output missing: the test would prove nothing"
    if output == "--json":
        assert json.loads(done.stdout)["images_copied"] == 1
    _assert_clean({"stdout": done.stdout, "stderr": done.stderr}, _secrets(basic_registry, bearer_registry))
    assert not _SIGNED_VALUE.search(done.stderr), _SIGNED_VALUE.search(done.stderr)
    if where == "s3":
        assert re.search(r"(?i)'location', '[^']*X-Amz-Signature=REDACTED", done.stderr), \
            "no redirect to storage logged: the test would prove nothing"
