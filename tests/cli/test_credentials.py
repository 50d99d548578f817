"""``--creds`` / ``--src-creds`` / ``--dest-creds``, ``--authfile``, ``login`` / ``logout``, and TLS per
side (``--*-tls-verify``, ``--*-cert-dir``, the ``certs.d`` directories) against real registries."""

from __future__ import annotations

import base64
import json
import shutil

from ocitransport.cli import main
from tests.servers import raw


def test_src_creds_with_password_on_stdin_never_echoed(basic_registry, registry, make_repo_name, env, cli):
    repo = make_repo_name()
    image = raw.push_image(basic_registry, repo, "v1")
    password = basic_registry.password
    result = cli("copy", "--src-creds", basic_registry.username, image.reference, f"{registry.host}/{repo}:v1",
                 input=password + "\n")
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr
    assert raw.get_manifest(registry, repo, "v1").body == image.manifest


def test_dest_creds_inline_and_wrong_creds_fail(basic_registry, registry, make_repo_name, env, capsys):
    repo = make_repo_name()
    image = raw.push_image(registry, repo, "v1")
    dst = f"{basic_registry.host}/{repo}:v1"
    assert main(["copy", "--dest-creds", f"{basic_registry.username}:{basic_registry.password}",
                 image.reference, dst]) == 0
    assert raw.get_manifest(basic_registry, repo, "v1").body == image.manifest
    capsys.readouterr()
    assert main(["copy", "--dest-creds", "alice:wrong-secret-123", image.reference,
                 f"{basic_registry.host}/{repo}:v2"]) == 1
    _, err = capsys.readouterr()
    assert "wrong-secret-123" not in err and "Traceback" not in err


def test_authfile_is_the_only_file_read(basic_registry, registry, make_repo_name, env, tmp_path, capsys):
    repo = make_repo_name()
    image = raw.push_image(basic_registry, repo, "v1")
    auth = base64.b64encode(f"{basic_registry.username}:{basic_registry.password}".encode()).decode()
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {basic_registry.host: {"auth": auth}}}))
    assert main(["copy", image.reference, f"{registry.host}/{repo}:v1"]) == 1  # no default credentials
    assert main(["copy", "--authfile", str(authfile), image.reference, f"{registry.host}/{repo}:v1"]) == 0
    assert main(["copy", "--authfile", str(tmp_path / "missing.json"), image.reference,
                 f"{registry.host}/{repo}:v1"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_login_verifies_stores_and_logout_removes(basic_registry, registry, make_repo_name, env, cli):
    repo = make_repo_name()
    image = raw.push_image(basic_registry, repo, "v1")
    env.docker({})
    bad = cli("login", basic_registry.host, "-u", "alice", "--password-stdin", input="not-the-password\n")
    assert bad.returncode == 1 and "not-the-password" not in bad.stderr
    assert "failed; nothing was stored" in bad.stderr and "no credentials were sent" not in bad.stderr
    assert json.loads((env.docker_config / "config.json").read_text()) == {}  # nothing stored
    good = cli("login", basic_registry.host, "-u", "alice", "--password-stdin",
               input=basic_registry.password + "\n")
    assert good.returncode == 0, good.stderr
    assert basic_registry.password not in good.stdout + good.stderr
    stored = json.loads((env.docker_config / "config.json").read_text())
    assert basic_registry.host in stored["auths"]
    assert (env.docker_config / "config.json").stat().st_mode & 0o077 == 0
    assert cli("copy", image.reference, f"{registry.host}/{repo}:v1").returncode == 0
    out = cli("logout", basic_registry.host)
    assert out.returncode == 0, out.stderr
    assert basic_registry.host not in json.loads((env.docker_config / "config.json").read_text())["auths"]
    again = cli("logout", basic_registry.host)
    assert again.returncode == 1 and "not logged in" in again.stderr


def test_login_into_the_configured_helper(bearer_registry, env, cli):
    env.docker({"credsStore": "ocitest"})
    result = cli("login", bearer_registry.host, "-u", bearer_registry.username, "-p", bearer_registry.password)
    assert result.returncode == 0, result.stderr
    assert "docker-credential-ocitest" in result.stdout + result.stderr
    assert [c["argv"][-1] for c in env.helper_calls()] == ["store"]
    assert "auths" not in json.loads((env.docker_config / "config.json").read_text())
    stored = json.loads(env.creds.read_text())
    assert any(v["Username"] == bearer_registry.username for v in stored.values())
    assert cli("logout", bearer_registry.host).returncode == 0
    assert [c["argv"][-1] for c in env.helper_calls()] == ["store", "erase"]


def test_dest_cert_dir_and_certs_d(tls_registry, registry, make_repo_name, env, tmp_path, monkeypatch, capsys):
    repo = make_repo_name()
    image = raw.push_image(registry, repo, "v1")
    dst = f"{tls_registry.host}/{repo}:v1"
    monkeypatch.setenv("OCITRANSPORT_CERTS_D", str(tmp_path / "none"))
    assert main(["copy", "--retries", "0", image.reference, dst]) == 1  # unknown CA
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(tls_registry.ca_file, certs / "ca.crt")
    assert main(["copy", "--dest-cert-dir", str(certs), image.reference, dst]) == 0
    # The same directory found as certs.d/HOST:PORT, as podman and docker do.
    root = tmp_path / "certs.d"
    (root / tls_registry.host).mkdir(parents=True)
    shutil.copy(tls_registry.ca_file, root / tls_registry.host / "ca.crt")
    monkeypatch.setenv("OCITRANSPORT_CERTS_D", str(root))
    assert main(["copy", image.reference, f"{tls_registry.host}/{repo}:v2"]) == 0
    assert main(["copy", "--dest-tls-verify=false", image.reference, f"{tls_registry.host}/{repo}:v3"]) == 0
    capsys.readouterr()


def test_sync_with_src_and_dest_creds(basic_registry, registry_factory, make_repo_name, env, tmp_path, capsys):
    dst = registry_factory(auth="basic")
    repo = make_repo_name()
    image = raw.push_image(basic_registry, repo, "v1")
    sync_file = tmp_path / "sync.yaml"
    sync_file.write_text(f"{basic_registry.host}:\n  images:\n    {repo}: [v1]\n")
    argv = ["sync", str(sync_file), "--dest", f"{dst.host}/mirror"]
    assert main([*argv, "--src-creds", f"{basic_registry.username}:{basic_registry.password}"]) == 1
    assert "no credentials were sent" in capsys.readouterr().err  # the source's never go to the destination
    assert main([*argv, "--src-creds", f"{basic_registry.username}:{basic_registry.password}",
                 "--dest-creds", f"{dst.username}:{dst.password}"]) == 0, capsys.readouterr().err
    last = repo.rsplit("/", 1)[-1]
    assert raw.get_manifest(dst, f"mirror/{last}", "v1").body == image.manifest


def test_no_secret_in_verbose_logs_or_errors(basic_registry, registry, make_repo_name, env, cli):
    repo = make_repo_name()
    image = raw.push_image(basic_registry, repo, "v1")
    good = cli("copy", "-v", "--src-creds", f"{basic_registry.username}:{basic_registry.password}",
               image.reference, f"{registry.host}/{repo}:v1")
    assert good.returncode == 0, good.stderr[-2000:]
    assert "Authorization" in good.stderr or "authorization" in good.stderr  # the requests were logged
    token = base64.b64encode(f"{basic_registry.username}:{basic_registry.password}".encode()).decode()
    for secret in (basic_registry.password, token):
        assert secret not in good.stdout + good.stderr
    bad = cli("ls", "-v", "--creds", "alice:Sup3r-Secret-Value", f"{basic_registry.host}/{repo}")
    assert bad.returncode == 1 and "Sup3r-Secret-Value" not in bad.stdout + bad.stderr
    assert base64.b64encode(b"alice:Sup3r-Secret-Value").decode() not in bad.stderr
