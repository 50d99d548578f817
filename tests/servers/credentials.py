"""Credential stores of one test: a private HOME, docker ``config.json``, ``REGISTRY_AUTH_FILE``, podman's
``auth.json`` and the ``docker-credential-ocitest`` helper (``tests/bin``), which answers from a JSON file
and logs every call. The ``env`` fixture (``tests/servers/fixtures.py``) gives each test its own."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

#: Where ``docker-credential-ocitest`` lives (put on PATH by :func:`isolated`).
BIN = Path(__file__).resolve().parents[1] / "bin"


class Env:
    """Paths of one test's private environment, and helpers to write config files into it."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp
        self.monkeypatch = monkeypatch
        self.home = tmp / "home"
        self.home.mkdir()
        self.docker_config = tmp / "docker-config"
        self.creds = tmp / "helper-creds.json"
        self.log = tmp / "helper-log.jsonl"

    def write(self, path: Path, data: Any) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
        return path

    def docker(self, data: Any) -> Path:
        """Write $DOCKER_CONFIG/config.json (and set DOCKER_CONFIG)."""
        self.monkeypatch.setenv("DOCKER_CONFIG", str(self.docker_config))
        return self.write(self.docker_config / "config.json", data)

    def home_docker(self, data: Any) -> Path:
        return self.write(self.home / ".docker" / "config.json", data)

    def registry_auth_file(self, data: Any) -> Path:
        path = self.write(self.tmp / "auth-file.json", data)
        self.monkeypatch.setenv("REGISTRY_AUTH_FILE", str(path))
        return path

    def podman(self, data: Any) -> Path:
        runtime = self.tmp / "run"
        self.monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
        return self.write(runtime / "containers" / "auth.json", data)

    def helper_creds(self, creds: dict[str, tuple[str, str]]) -> None:
        self.write(self.creds, {url: {"Username": u, "Secret": s} for url, (u, s) in creds.items()})

    def helper_calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """An :class:`Env` in ``tmp_path`` with every credential variable cleared and the test helper on PATH."""
    e = Env(tmp_path, monkeypatch)
    monkeypatch.setenv("HOME", str(e.home))
    for var in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "OCITEST_HELPER_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("OCITEST_CREDENTIALS_FILE", str(e.creds))
    monkeypatch.setenv("OCITEST_HELPER_LOG", str(e.log))
    return e
