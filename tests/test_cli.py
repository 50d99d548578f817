"""The ``ocitransport`` command line against real registries on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ocitransport.cli import main
from tests.servers import raw


def test_copy_and_json_report(registry, registry_factory, make_repo_name, capsys):
    dst = registry_factory()
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image = raw.push_image(registry, src_repo, "v1")
    status = main(["copy", "--json", image.reference, f"{dst.host}/{dst_repo}:v1"])
    out, err = capsys.readouterr()
    assert status == 0, err
    report = json.loads(out)
    assert report["ok"] and report["images_copied"] == 1
    assert report["images"][0]["digest"] == image.digest
    assert raw.get_manifest(dst, dst_repo, "v1").body == image.manifest


def test_mirror_dry_run_touches_nothing(registry, registry_factory, make_repo_name, capsys):
    dst = registry_factory()
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    for tag in ("a", "b"):
        raw.push_image(registry, src_repo, tag)
    status = main(["mirror", "--dry-run", f"{registry.host}/{src_repo}", f"{dst.host}/{dst_repo}"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert out.count("copy ") == 2 and f"{src_repo}:a" in out
    assert raw.list_tags(dst, dst_repo) == []
    assert not any(dst.root.rglob("data"))  # no blob stored at all


def test_mirror_plain_lines_and_summary(registry, registry_factory, make_repo_name, capsys):
    dst = registry_factory()
    src_repo = make_repo_name()
    for tag in ("a", "b", "c"):
        raw.push_image(registry, src_repo, tag)
    status = main(["mirror", "--exclude", "^c$", f"{registry.host}/{src_repo}", f"{dst.host}/m"])
    _, err = capsys.readouterr()
    assert status == 0
    assert err.count("copied  ") == 2 and "[2/2]" in err and "copied 2 images" in err


def test_missing_tag_exits_non_zero_with_one_line(registry, make_repo_name, capsys):
    src_repo = make_repo_name()
    raw.push_image(registry, src_repo, "v1")
    status = main(["copy", f"{registry.host}/{src_repo}:nope", f"{registry.host}/{make_repo_name()}"])
    _, err = capsys.readouterr()
    assert status == 1
    errors = [line for line in err.splitlines() if line.startswith("ocitransport: error:")]
    assert len(errors) == 1 and "nope" in errors[0] and "not found" in errors[0]
    assert "Traceback" not in err


def test_bad_reference_and_unreachable_registry(capsys):
    assert main(["copy", "Bad Ref!!", "127.0.0.1:1/x"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("ocitransport: error:") and len(err.strip().splitlines()) == 1
    assert main(["copy", "--retries", "0", "127.0.0.1:1/a/b:v1", "127.0.0.1:1/c"]) == 1
    _, err = capsys.readouterr()
    assert "ocitransport: error: 127.0.0.1:1/a/b:v1" in err and "Traceback" not in err


def test_auth_failure_is_one_line(basic_registry, make_repo_name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no credentials
    status = main(["copy", f"{basic_registry.host}/{make_repo_name()}:v1", f"{basic_registry.host}/x"])
    _, err = capsys.readouterr()
    assert status == 1 and "UNAUTHORIZED" in err and "Traceback" not in err


def test_python_dash_m(registry, make_repo_name):
    out = subprocess.run([sys.executable, "-m", "ocitransport", "copy", "--json", "--dry-run",
                          f"{registry.host}/{make_repo_name()}:x", f"{registry.host}/y"],
                         check=False, capture_output=True, text=True, timeout=60, env={**os.environ})
    assert out.returncode == 1
    assert json.loads(out.stdout)["ok"] is False
    assert out.stderr.startswith("ocitransport: error:")
