"""The two twins of ``_heads`` agree on every input: same result, or same exception and message."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.hypothesis

TERMINATORS = st.sampled_from([b"\r\n", b"\n", b"", b"\r", b"\r\r\n"])
WS = st.sampled_from([b"", b" ", b"  ", b"\t", b"\x0b", b"\x0c", b" \t"])
STATUS_LINES = st.builds(
    lambda version, ws1, code, ws2, reason, end: b"HTTP/" + version + ws1 + code + ws2 + reason + end,
    st.sampled_from([b"1.1", b"2", b"1.0", b"3", b"", b"x"]), WS,
    st.one_of(st.from_regex(rb"\A[0-9]{3}\Z"), st.binary(max_size=4)), WS, st.binary(max_size=12), TERMINATORS,
)
HEADER_LINES = st.builds(
    lambda lead, name, sep, value, end: lead + name + sep + value + end,
    st.sampled_from([b"", b"", b"", b" ", b"\t"]),
    st.one_of(st.sampled_from([b"Content-Type", b"Docker-Content-Digest", b"etag", b"Date", b"", b"HTTP/1.1 200"]),
              st.binary(max_size=8)),
    st.sampled_from([b":", b": ", b":\t", b"", b" : "]),
    st.one_of(st.sampled_from([b"registry/2.0", b"nosniff", b"0", b"keep-alive", b""]), st.binary(max_size=12)),
    TERMINATORS,
)
LINES = st.one_of(STATUS_LINES, HEADER_LINES, TERMINATORS, st.binary(max_size=20))


def outcome(function, *args):
    try:
        return "ok", function(*args)
    except Exception as exc:  # noqa: BLE001 - comparing whatever each twin raises
        return type(exc), str(exc)


@settings(max_examples=500, deadline=None)
@given(st.lists(LINES, max_size=12), st.booleans())
def test_parse_head_structured(py_impl, c_impl, lines, as_tuple):
    head = tuple(lines) if as_tuple else lines
    assert outcome(py_impl.parse_head, head) == outcome(c_impl.parse_head, head)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=30), st.text(max_size=3), st.none(), st.integers()), max_size=6))
def test_parse_head_arbitrary_items(py_impl, c_impl, lines):
    assert outcome(py_impl.parse_head, lines) == outcome(c_impl.parse_head, lines)


@settings(max_examples=50, deadline=None)
@given(st.one_of(st.binary(max_size=10), st.text(max_size=5), st.none(), st.integers(),
                 st.dictionaries(st.binary(max_size=3), st.binary(max_size=3), max_size=2)))
def test_parse_head_non_sequences(py_impl, c_impl, value):
    assert outcome(py_impl.parse_head, value) == outcome(c_impl.parse_head, value)


@settings(max_examples=500, deadline=None)
@given(st.one_of(STATUS_LINES, HEADER_LINES, TERMINATORS, st.binary(max_size=20), st.text(max_size=3),
                 st.none(), st.integers()))
def test_is_interim_agrees(py_impl, c_impl, line):
    assert outcome(py_impl.is_interim, line) == outcome(c_impl.is_interim, line)
