"""Helpers for the command-line tests: the CLI as a subprocess, with this checkout's sources."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: The sources the CLI runs from (OCITRANSPORT_CLI_TEST_SRC: another checkout, to see these tests fail
#: without the fixes).
SRC = os.environ.get("OCITRANSPORT_CLI_TEST_SRC") or str(Path(__file__).resolve().parents[2] / "src")


def run_cli(*argv: str, input: str | None = None, timeout: float = 60.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m ocitransport ARGV`` with this checkout first on the path (the environment of the test
    otherwise: HOME, DOCKER_CONFIG, PATH as monkeypatched)."""
    environ = dict(os.environ if env is None else env)
    environ["PYTHONPATH"] = SRC + os.pathsep + environ.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "ocitransport", *argv], input=input, capture_output=True,
                          text=True, timeout=timeout, env=environ, check=False)


@pytest.fixture
def cli():
    """:func:`run_cli`."""
    return run_cli
