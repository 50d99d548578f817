"""The two twins of ``_challenges`` agree on every input: same result, or same exception and message."""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.hypothesis

# Pieces of the grammar and of what breaks it, so that random values hit every branch of the scanner.
PIECES = st.sampled_from([
    "Bearer", "Basic", "Negotiate", "realm", "service", "scope", "error", "x", "A", "abc==", "a/b+c=",
    "=", '"', "\\", ",", " ", "\t", "\r\n", ",,", '"https://auth.example/token"', "https://x/y", ":", "/",
    ";", "@", '\\"', '""', "\u00e9", "\u2603", "\U0001f600", "\x00", "\x7f", "~", "'",
])
STRUCTURED = st.lists(PIECES, max_size=16).map("".join)
HEADER_TEXT = st.one_of(STRUCTURED, st.text(max_size=40), st.text(alphabet=st.characters(max_codepoint=127),
                                                                   max_size=40))


class Text(str):
    """A str subclass: both twins accept it as a str."""


WIRE_TEXT = st.binary(max_size=40).flatmap(
    lambda raw: st.sampled_from([raw.decode("latin-1"), raw.decode("utf-8", "surrogateescape")])
)


def outcome(function, *args):
    try:
        return "ok", function(*args)
    except Exception as exc:  # noqa: BLE001 - comparing whatever each twin raises
        return type(exc), str(exc)


def test_compiled_module_name(c_impl):
    module = importlib.import_module("ocitransport._challenges_c")
    assert module.__name__ == "ocitransport._challenges_c"
    assert c_impl.parse_challenges.__module__ == "ocitransport._challenges_c"


@settings(max_examples=600, deadline=None)
@given(st.one_of(HEADER_TEXT, WIRE_TEXT, STRUCTURED.map(Text)))
def test_one_value(py_impl, c_impl, value):
    assert outcome(py_impl.parse_challenges, value) == outcome(c_impl.parse_challenges, value)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(HEADER_TEXT, WIRE_TEXT, STRUCTURED.map(Text)), max_size=4),
       st.sampled_from([list, tuple, iter]))
def test_several_values(py_impl, c_impl, values, container):
    assert outcome(py_impl.parse_challenges, container(values)) == outcome(c_impl.parse_challenges,
                                                                           container(values))


@settings(max_examples=80, deadline=None)
@given(st.one_of(st.binary(max_size=8), st.none(), st.integers(), st.floats(),
                 st.lists(st.one_of(STRUCTURED, st.binary(max_size=4), st.none(), st.integers()), max_size=3)))
def test_other_types(py_impl, c_impl, value):
    assert outcome(py_impl.parse_challenges, value) == outcome(c_impl.parse_challenges, value)
