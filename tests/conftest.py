"""Shared fixtures: the twin implementations, and (through tests/servers) real servers on loopback."""

from __future__ import annotations

import importlib
import os
import types
from dataclasses import dataclass

import pytest

from ocitransport._compat import TWINS

pytest_plugins = ["tests.servers.fixtures"]

REQUIRE_EXTENSIONS = bool(os.environ.get("OCITRANSPORT_REQUIRE_EXTENSIONS"))
NO_EXTENSIONS = bool(os.environ.get("OCITRANSPORT_NO_EXTENSIONS"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--c-extensions", action="store_true", default=True,
        help="also run the twin tests against the compiled twins (default)",
    )
    parser.addoption(
        "--no-c-extensions", action="store_false", dest="c_extensions",
        help="run the twin tests against the pure-Python twins only",
    )


@dataclass(frozen=True)
class Implementation:
    """One side of the twins: every hot-path function, all pure or all compiled."""

    is_pure_python: bool

    @property
    def tag(self) -> str:
        return "py" if self.is_pure_python else "c"

    @property
    def module(self) -> types.SimpleNamespace:
        """The public names of every twin module of this side, in one namespace."""
        names: dict[str, object] = {}
        for twin in TWINS:
            mod = importlib.import_module(f"ocitransport.{twin}_{self.tag}")
            names.update({k: v for k, v in vars(mod).items() if not k.startswith("_")})
        return types.SimpleNamespace(**names)

    def __str__(self) -> str:
        return "pure-python" if self.is_pure_python else "c-extension"


def _compiled_available() -> bool:
    try:
        for twin in TWINS:
            importlib.import_module(f"ocitransport.{twin}_c")
    except ImportError:
        return False
    return True


@pytest.fixture(
    scope="session",
    params=[
        pytest.param(Implementation(is_pure_python=False), marks=pytest.mark.c_extension, id="c-extension"),
        pytest.param(Implementation(is_pure_python=True), id="pure-python"),
    ],
)
def impl(request: pytest.FixtureRequest) -> Implementation:
    """Each hot-path test runs against the compiled twins and against the pure ones."""
    implementation: Implementation = request.param
    if not implementation.is_pure_python:
        if not request.config.getoption("c_extensions"):
            pytest.skip("compiled twins deselected with --no-c-extensions")
        if not _compiled_available():
            if REQUIRE_EXTENSIONS:
                pytest.fail("OCITRANSPORT_REQUIRE_EXTENSIONS is set but the compiled twins did not import")
            pytest.skip("the compiled twins are not built")
    return implementation


@pytest.fixture(scope="session")
def py_impl() -> types.SimpleNamespace:
    return Implementation(is_pure_python=True).module


@pytest.fixture(scope="session")
def c_impl() -> types.SimpleNamespace:
    if not _compiled_available():
        if REQUIRE_EXTENSIONS:
            pytest.fail("OCITRANSPORT_REQUIRE_EXTENSIONS is set but the compiled twins did not import")
        pytest.skip("the compiled twins are not built")
    return Implementation(is_pure_python=False).module
