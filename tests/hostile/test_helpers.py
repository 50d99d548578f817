"""Hostile credential helpers (real programs on PATH): endless output, a hang that leaves a child
behind, noise on stderr. Each gives a clear ``CredentialHelperError`` within its bound, leaks no secret
from stdout, and leaves no process running."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ocitransport.authn import MAX_HELPER_OUTPUT, CredentialHelper, CredentialHelperError, DefaultKeychain

SECRET = "hunter2-Secret-Value"


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", f"{path}{os.pathsep}{os.environ['PATH']}")
    return path


def _helper(bin_dir: Path, name: str, script: str) -> CredentialHelper:
    program = bin_dir / f"docker-credential-{name}"
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(0o755)
    return CredentialHelper(name, timeout=5)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0) until reaped by its parent (not us for a grandchild): read its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def test_endless_stdout_is_cut_and_never_quoted(bin_dir: Path) -> None:
    helper = _helper(bin_dir, "endless", f"exec yes '{{\"Username\": \"u\", \"Secret\": \"{SECRET}\"}}'\n")
    start = time.monotonic()
    with pytest.raises(CredentialHelperError) as info:
        helper.get("r.example")
    assert str(info.value) == (f"credential helper docker-credential-endless wrote more than {MAX_HELPER_OUTPUT} "
                               "bytes on stdout (registry r.example)")
    assert time.monotonic() - start < 5


def test_deeply_nested_output_is_not_json(bin_dir: Path) -> None:
    # Nesting deeper than the JSON parser recurses is the same one-line error as any other non-JSON.
    helper = _helper(bin_dir, "nested", "head -c 60000 /dev/zero | tr '\\0' '['\n")
    with pytest.raises(CredentialHelperError) as info:
        helper.get("r.example")
    assert str(info.value) == ("credential helper docker-credential-nested returned output that is not JSON "
                               "(registry r.example)")


def test_endless_stderr_is_bounded_and_trimmed(bin_dir: Path) -> None:
    # 50 MB of noise on stderr, then a failure: the message quotes a trimmed start of it.
    helper = _helper(bin_dir, "noisy", "head -c 50000000 /dev/zero | tr '\\0' x >&2\nexit 1\n")
    with pytest.raises(CredentialHelperError) as info:
        helper.get("r.example")
    message = str(info.value)
    assert message.startswith("credential helper docker-credential-noisy failed with exit status 1: xxx")
    assert len(message) < 1200


def test_hanging_helper_and_its_child_are_killed_after_the_timeout(bin_dir: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The helper starts a child that keeps the pipes open, then hangs itself.
    pids = tmp_path / "pids"
    _helper(bin_dir, "hang", f"sleep 60 &\necho $! > {pids}\necho $$ >> {pids}\nsleep 60\n")
    keychain_config = tmp_path / "config"
    keychain_config.mkdir()
    (keychain_config / "config.json").write_text('{"credsStore": "hang"}')
    monkeypatch.setenv("DOCKER_CONFIG", str(keychain_config))
    start = time.monotonic()
    with pytest.raises(CredentialHelperError) as info:
        DefaultKeychain(helper_timeout=1.0).resolve("r.example")
    elapsed = time.monotonic() - start
    assert str(info.value) == "credential helper docker-credential-hang timed out after 1 s (registry r.example)"
    assert 0.9 < elapsed < 5
    deadline = time.monotonic() + 5
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2
    while not all(_gone(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(pid) for pid in started)


def test_stdin_is_the_server_url_only_and_argv_is_get(bin_dir: Path, tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    helper = _helper(bin_dir, "echo", f'cat > {seen}\necho "$#:$1" >> {seen}\n'
                     'echo \'{"Username": "u", "Secret": "s"}\'\n')
    config = helper.get("r.example:5000")
    assert config is not None and config.username == "u"
    assert seen.read_text() == "r.example:50001:get\n"  # stdin (no newline added), then argc:argv[1]


def test_failing_helper_with_credentials_on_stdout_quotes_nothing_of_them(bin_dir: Path) -> None:
    helper = _helper(bin_dir, "half", f"echo '{{\"Secret\": \"{SECRET}\"}}'\necho 'locked' >&2\nexit 2\n")
    with pytest.raises(CredentialHelperError) as info:
        helper.get("r.example")
    assert str(info.value) == ("credential helper docker-credential-half failed with exit status 2: locked "
                               "(registry r.example)")
    assert SECRET not in repr(info.value)
