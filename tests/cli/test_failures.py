"""Failures that explain themselves: fail fast on a registry that never answered, retries shown one line
each and all counted, references read plainly, option values starting with ``-``."""

from __future__ import annotations

import json
import re
import time

import pytest

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
    assert "planning" in result.stderr  # the planning step's
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
