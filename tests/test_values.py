"""The field layout the compiled twins rely on: the order of ``__slots__`` in ``_values``."""

from __future__ import annotations

import importlib

import pytest

from ocitransport import _values
from ocitransport._compat import NO_EXTENSIONS


def test_slot_order_is_the_compiled_layout() -> None:
    # The compiled twins store into these members by position in this order (ext/_capi.pxd): sorting or
    # reordering them silently turns COMPILED off for users who did not set OCITRANSPORT_REQUIRE_EXTENSIONS.
    assert _values.Challenge.__slots__ == ("scheme", "parameters", "insecure", "token68")
    assert _values.Scope.__slots__ == ("type", "name", "actions")


@pytest.mark.skipif(NO_EXTENSIONS, reason="the pure build has no compiled twins to import")
@pytest.mark.parametrize("name", ["_challenges_c", "_scopes_c"])
def test_compiled_twins_accept_the_layout(name: str) -> None:
    # Importing checks the slots against the names the twin fills; a changed layout raises ImportError here.
    importlib.import_module(f"ocitransport.{name}")
