"""The ``ocitransport`` command line against real registries on loopback."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("bypass", [False, True], ids=["proxied", "no_proxy"])
def test_copy_honours_the_proxy_environment(registry, make_repo_name, proxy_factory, monkeypatch, capsys,
                                            bypass):
    """``http_proxy`` (libcurl reads the lower-case name only) carries every plain-HTTP request, as
    with curl; ``no_proxy`` exempts hosts. The proxy here forwards to the registry itself."""
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image = raw.push_image(registry, src_repo, "v1")
    proxy = proxy_factory(registry)
    monkeypatch.setenv("http_proxy", proxy.url)
    for name in ("no_proxy", "NO_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    if bypass:
        monkeypatch.setenv("no_proxy", "127.0.0.1")
    status = main(["copy", "--json", image.reference, f"{registry.host}/{dst_repo}:v1"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert json.loads(out)["images_copied"] == 1
    assert raw.get_manifest(registry, dst_repo, "v1").body == image.manifest
    targets = [r.path for r in proxy.records]
    if bypass:
        assert targets == []
    else:  # absolute-form request targets: the proxy got them as a forward proxy does
        assert f"http://{registry.host}/v2/" in targets
        assert f"http://{registry.host}/v2/{dst_repo}/manifests/v1" in targets
        assert all(t.startswith(f"http://{registry.host}/v2/") for t in targets), targets


def test_version_names_the_build(capsys):
    import pycurl

    import ocitransport

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    build = "compiled twins" if ocitransport.COMPILED else "pure-Python twins"
    assert out == (f"ocitransport {ocitransport.__version__} ({build}); Python {platform.python_version()}; "
                   f"{pycurl.version}\n")


# ------------------------------------------------------------------------------------------- sync

def _sync_file(tmp_path, registry, repo, destination=None, extra=""):
    lines = [f"destination: {destination}"] if destination else []
    lines += [f"{registry.host}:", "  images:", f"    {repo}: [a]", "  images-by-semver:",
              f"    {repo}: '>= 1.0, < 2'", "  exclude: ['^1[.]1']"]
    path = tmp_path / "sync.yaml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def test_sync_json_then_rerun_skips(registry, registry_factory, make_repo_name, tmp_path, capsys):
    dst = registry_factory()
    repo = make_repo_name()
    for tag in ("a", "b", "1.0.0", "1.1.0", "1.5.0", "2.0.0"):
        raw.push_image(registry, repo, tag)
    path = _sync_file(tmp_path, registry, repo)
    status = main(["sync", "--json", "--dest", f"{dst.host}/m", str(path)])
    out, err = capsys.readouterr()
    assert status == 0, err
    report = json.loads(out)
    assert report["ok"] and report["images_copied"] == 3
    name = repo.rsplit("/", 1)[-1]
    assert sorted(raw.list_tags(dst, f"m/{name}")) == ["1.0.0", "1.5.0", "a"]

    status = main(["sync", "--dest", f"{dst.host}/m", str(path)])
    _, err = capsys.readouterr()
    assert status == 0 and "skipped 3" in err and "copied 0 images" in err


def test_sync_dry_run_prints_the_plan(registry, registry_factory, make_repo_name, tmp_path, capsys):
    dst = registry_factory()
    repo = make_repo_name()
    for tag in ("a", "1.0.0"):
        raw.push_image(registry, repo, tag)
    path = _sync_file(tmp_path, registry, repo, destination=dst.host)
    status = main(["sync", "--dry-run", str(path)])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert out.count("copy ") == 2 and f"{dst.host}/{repo.rsplit('/', 1)[-1]}:1.0.0" in out
    assert not any(dst.root.rglob("data"))


def test_sync_usage_errors_are_one_line_exit_2(registry, tmp_path, capsys):
    cases = {
        "typo.yaml": f"destination: {registry.host}\n{registry.host}:\n  imags: {{a: []}}\n",
        "nodest.yaml": f"{registry.host}:\n  images: {{a: []}}\n",
        "yaml.yaml": f"destination: {registry.host}\n{registry.host}:\n  images: [\n",
        "semver.yaml": f"destination: {registry.host}\n{registry.host}:\n  images-by-semver: {{a: '>> 1'}}\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        assert main(["sync", str(tmp_path / name)]) == 2, name
        _, err = capsys.readouterr()
        assert err.startswith(f"ocitransport: error: {tmp_path / name}") and len(err.strip().splitlines()) == 1, err
    assert main(["sync", str(tmp_path / "absent.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["sync", "--include", "(", str(tmp_path / "typo.yaml")]) == 2
    assert "bad regular expression" in capsys.readouterr().err


def test_sync_failure_names_each_image_exit_1(registry, registry_factory, make_repo_name, tmp_path, capsys):
    dst = registry_factory()
    repo = make_repo_name()
    raw.push_image(registry, repo, "a")
    path = tmp_path / "sync.yaml"
    path.write_text(f"destination: {dst.host}\nkeep-going: true\n{registry.host}:\n"
                    f"  images:\n    {repo}: [a, nope, gone]\n")
    status = main(["sync", str(path)])
    _, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("ocitransport: error:")]
    assert status == 1 and len(errors) == 2 and "Traceback" not in err
    assert any(":nope" in e for e in errors) and any(":gone" in e for e in errors)


def test_sync_password_stays_out_of_debug_logs(basic_registry, registry_factory, make_repo_name, tmp_path):
    dst = registry_factory()
    repo = make_repo_name()
    raw.push_image(basic_registry, repo, "v1")
    path = tmp_path / "sync.yaml"
    path.write_text(f"destination: {dst.host}\n{basic_registry.host}:\n  images:\n    {repo}: [v1]\n"
                    f"  credentials:\n    username: {basic_registry.username}\n"
                    f"    password: {basic_registry.password}\n")
    out = subprocess.run([sys.executable, "-m", "ocitransport", "-v", "sync", str(path)], check=False,
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "DOCKER_CONFIG": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "DEBUG" in out.stderr and basic_registry.host in out.stderr  # requests were logged...
    assert basic_registry.password not in out.stderr  # ...without the secret
    secret = f"{basic_registry.username}:{basic_registry.password}".encode()
    import base64

    assert base64.b64encode(secret).decode() not in out.stderr


def test_sync_plain_lines_without_a_tty(registry, registry_factory, make_repo_name, tmp_path):
    dst = registry_factory()
    repo = make_repo_name()
    for tag in ("a", "1.0.0", "1.5.0"):
        raw.push_image(registry, repo, tag)
    path = _sync_file(tmp_path, registry, repo, destination=f"{dst.host}/lines")
    out = subprocess.run([sys.executable, "-m", "ocitransport", "sync", str(path)], check=False,
                         capture_output=True, text=True, timeout=60, env={**os.environ})
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert sum(line.startswith("[") and "] copied  " in line for line in lines) == 3
    assert "[3/3]" in out.stderr and "copied 3 images" in lines[-1]
    assert "\x1b[" not in out.stderr  # no terminal control codes in a log


def test_sync_dask(registry, registry_factory, make_repo_name, tmp_path, capsys):
    """``--dask local:1`` runs the copies on a one-worker local cluster; without dask installed the
    option fails with one line naming the extra to install."""
    dst = registry_factory()
    repo = make_repo_name()
    for tag in ("a", "1.0.0"):
        raw.push_image(registry, repo, tag)
    path = _sync_file(tmp_path, registry, repo, destination=f"{dst.host}/d")
    try:
        import distributed  # noqa: F401

        import ocitransport.mirror.distributed  # noqa: F401
    except ImportError:
        assert main(["sync", "--dask", "local:1", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ocitransport: error: --dask") and "pip install" in err
        assert len(err.strip().splitlines()) == 1
        return
    assert main(["sync", "--dask", "local:x", str(path)]) == 2
    assert "local:x" in capsys.readouterr().err
    # A subprocess: the local cluster's worker processes must not inherit pytest's state.
    out = subprocess.run([sys.executable, "-m", "ocitransport", "sync", "--json", "--dask", "local:1", str(path)],
                         check=False, capture_output=True, text=True, timeout=120, env={**os.environ})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["images_copied"] == 2
    assert sorted(raw.list_tags(dst, f"d/{repo.rsplit('/', 1)[-1]}")) == ["1.0.0", "a"]
