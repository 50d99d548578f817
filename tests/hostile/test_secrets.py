"""No secret in logs, exception messages, ``repr()``, the JSON report or progress output: a whole mirror
from a Basic-auth registry to a Bearer-auth registry with DEBUG logging captured, through the library and
through the command line (``-v``), then every captured line is searched for the passwords, their Basic
encodings and every token the token server issued."""

from __future__ import annotations

import base64
import json
import logging
import os
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


def test_library_mirror_logs_reports_and_errors_hold_no_secret(
        basic_registry, bearer_registry, make_repo_name, tmp_path, monkeypatch, caplog) -> None:
    src, dst = make_repo_name(), make_repo_name()
    for tag in ("v1", "v2"):
        raw.push_image(basic_registry, src, tag)
    _config(tmp_path / "good", basic_registry, bearer_registry)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "good"))
    caplog.set_level(logging.DEBUG)  # every logger, the library's included

    report = mirror.mirror_repository(f"{basic_registry.host}/{src}", f"{bearer_registry.host}/{dst}")
    assert report.ok, report.errors
    assert report.images_copied == 2

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


@pytest.mark.parametrize("output", ["--json", "--text"])
def test_cli_mirror_verbose_output_holds_no_secret(basic_registry, bearer_registry, make_repo_name, tmp_path,
                                                   output: str) -> None:
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
