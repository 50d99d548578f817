"""Failures that explain themselves: fail fast on a registry that never answered, retries shown one line
each and all counted, references read plainly, option values starting with ``-``."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from tests.servers import raw

REFUSED = "127.0.0.1:1"  # nothing listens on port 1: refused at once, on loopback


def test_refused_registry_fails_at_once_with_one_explanation(cli):
    started = time.monotonic()
    result = cli("copy", f"{REFUSED}/a/b:v1", f"{REFUSED}/c")
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert elapsed < 5, f"took {elapsed:.1f} s"  # was 31 s: ping, plan and image retries
    assert "--retry-unreachable" in result.stderr and "never answered" in result.stderr
    assert "retrying" not in result.stderr and "Traceback" not in result.stderr


def test_retry_unreachable_shows_and_counts_every_retry(cli):
    result = cli("copy", "--retry-unreachable", "--retries", "1", f"{REFUSED}/a/b:v1", f"{REFUSED}/c",
                 timeout=60)
    assert result.returncode == 1
    shown = [line for line in result.stderr.splitlines() if "retrying in" in line]
    assert shown and all(re.search(r"retrying in \d+\.\ds \(\d+/\d+\)", line) for line in shown)
    assert "(1/1)" in result.stderr  # the request layer's
    # Planning draws on the same budget (retries + 1 attempts per request): no second round of the same ping.
    assert result.stderr.count("GET https://127.0.0.1:1/v2/: retrying") <= 1
    counted = int(re.search(r"(\d+) retries", result.stderr).group(1))
    assert counted == len(shown)


def test_json_and_quiet_count_retries_without_lines(cli):
    result = cli("copy", "--json", "--retry-unreachable", "--retries", "1", f"{REFUSED}/a/b:v1", f"{REFUSED}/c",
                 timeout=60)
    assert result.returncode == 1 and "retrying in" not in result.stderr
    assert json.loads(result.stdout)["retries"] > 0


def _resolver_is_local() -> bool:
    try:
        with open("/etc/resolv.conf", encoding="utf-8") as f:
            servers = [line.split()[1] for line in f if line.startswith("nameserver") and len(line.split()) > 1]
    except OSError:
        return False
    return bool(servers) and all(s.startswith("127.") or s == "::1" for s in servers)


@pytest.mark.skipif(not _resolver_is_local(), reason="the resolver is not on loopback: a lookup of a .invalid "
                    "name (RFC 6761) would leave the machine; tests use only loopback")
def test_unresolvable_name_fails_at_once(cli):
    started = time.monotonic()
    result = cli("copy", "nosuchhost.invalid/a/b:v1", f"{REFUSED}/c")
    assert result.returncode == 1 and time.monotonic() - started < 5
    assert "never answered" in result.stderr


@pytest.mark.parametrize("reference", ["localhost:5000", "127.0.0.1:5000", "registry.example:443"])
def test_a_registry_address_is_refused_at_once(reference, cli):
    result = cli("copy", reference, f"{REFUSED}/x", timeout=30)
    assert result.returncode == 2
    assert "is a registry address, not an image" in result.stderr
    assert f"docker.io/library/{reference}" in result.stderr  # how it would have been read
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_digest_algorithm_is_refused_before_any_request(fault_server, cli):
    result = cli("copy", f"{fault_server.host}/a@md5:d41d8cd98f00b204e9800998ecf8427e", f"{REFUSED}/x")
    assert result.returncode == 2 and "digest algorithm 'md5' is not supported" in result.stderr
    assert fault_server.connections == 0  # nothing was asked


def test_option_values_may_start_with_a_dash(registry, registry_factory, make_repo_name, cli):
    dst = registry_factory()
    repo = make_repo_name()
    for tag in ("v1", "v1-rc"):
        raw.push_image(registry, repo, tag)
    result = cli("mirror", "--exclude", "-rc", f"{registry.host}/{repo}", f"{dst.host}/{repo}")
    assert result.returncode == 0, result.stderr
    assert raw.list_tags(dst, repo) == ["v1"]


def test_authentication_failures_say_what_was_sent_and_from_where(basic_registry, make_repo_name, env, cli):
    repo = make_repo_name()
    image = raw.push_image(basic_registry, repo, "v1")
    dst = f"{basic_registry.host}/{make_repo_name()}:v1"
    none = cli("copy", image.reference, dst)
    assert none.returncode == 1 and "no credentials were sent" in none.stderr
    assert f"ocitransport login {basic_registry.host}" in none.stderr
    wrong = cli("copy", "--creds", "alice:not-the-password", image.reference, dst)
    assert wrong.returncode == 1 and "credentials were sent (from --creds) and refused" in wrong.stderr
    assert "not-the-password" not in wrong.stderr
    env.docker({"credsStore": "ocitest"})
    env.helper_creds({basic_registry.host: ("alice", "stale-password")})
    helper = cli("ls", f"{basic_registry.host}/{repo}")
    assert helper.returncode == 1 and "docker-credential-ocitest" in helper.stderr
    assert "stale-password" not in helper.stderr


def test_json_report_has_a_schema_and_counts_planning_failures(registry, registry_factory, make_repo_name, cli):
    dst = registry_factory()
    repo = make_repo_name()
    raw.push_image(registry, repo, "v1")
    result = cli("copy", "--json", f"{registry.host}/{repo}:missing", f"{dst.host}/{repo}")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["schema"] == 1 and report["ok"] is False
    assert report["images_failed"] == 1
    [failed] = report["images"]
    assert failed["status"] == "failed" and failed["stage"] == "planning" and "missing" in failed["source"]


def test_closed_stdout_is_not_an_error(registry, make_repo_name, tmp_path):
    import subprocess
    import sys

    from tests.cli.conftest import SRC

    repo = make_repo_name()
    for n in range(3):
        raw.push_image(registry, repo, f"t{n}")
    env = {"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for argv in (["ls", f"{registry.host}/{repo}"], ["copy", "--json", f"{registry.host}/{repo}:t0",
                                                       f"{registry.host}/{repo}:copy"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before anything is written, as `| head -c 0`
        try:
            proc = subprocess.run([sys.executable, "-m", "ocitransport", *argv], stdout=write_end,
                                  stderr=subprocess.PIPE, env=env, timeout=60, check=False)
        finally:
            os.close(write_end)
        err = proc.stderr
        assert proc.returncode == 141, err
        assert b"BrokenPipe" not in err and b"Traceback" not in err, err


def test_a_reference_without_registry_says_how_it_was_read(cli):
    # Docker Hub through a proxy that refuses at once: nothing leaves the machine.
    env = dict(os.environ, https_proxy=f"http://{REFUSED}", http_proxy=f"http://{REFUSED}", all_proxy="",
               no_proxy="127.0.0.1")
    result = cli("copy", "myhost:5000", f"{REFUSED}/x", env=env)
    assert result.returncode == 1
    assert "'myhost:5000' names no registry and was read as index.docker.io/library/myhost:5000" in result.stderr


def test_inspection_commands_fail_fast_too(cli):
    started = time.monotonic()
    result = cli("ls", f"{REFUSED}/a")
    assert result.returncode == 1 and time.monotonic() - started < 5
    assert "never answered" in result.stderr and "retrying" not in result.stderr
    shown = cli("ls", "--retry-unreachable", "--retries", "1", f"{REFUSED}/a")
    assert shown.returncode == 1 and "retrying in 0.5s (1/1)" in shown.stderr
