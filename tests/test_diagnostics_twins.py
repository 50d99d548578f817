"""The two twins of ``_diagnostics`` agree on every input: same result, or same exception and message."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocitransport._values import Diagnostic

pytestmark = pytest.mark.hypothesis

KEYS = st.sampled_from(["errors", "Errors", "ERRORS", "errorſ", "code", "Code", "CODE", "codE", "message",
                        "Message", "meſſage", "detail", "Detail", "detaİl", "detaıl", "\u212a", "x", ""])
NUMBERS = st.one_of(
    st.integers(), st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1e6, 1e21, 1e-5, 1e-4, 999999.0]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(), KEYS)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(KEYS, st.text()), inner, max_size=4)),
    max_leaves=20,
)
ITEMS = st.one_of(st.dictionaries(KEYS, JSONISH, max_size=5), JSONISH)
DOCS = st.one_of(st.dictionaries(KEYS, st.one_of(st.lists(ITEMS, max_size=4), JSONISH), max_size=3), JSONISH)


def outcome(function, *args):
    try:
        return "ok", function(*args)
    except Exception as exc:  # noqa: BLE001 - comparing whatever each twin raises
        return type(exc), str(exc)


def texts(result):
    """Diagnostics compared through their fields and their printed form (NaN != NaN otherwise)."""
    kind, value = result
    if kind != "ok" or not isinstance(value, list):
        return result
    return kind, [(d.code, d.message, repr(d.detail), type(d.detail)) for d in value]


def encode(doc, ensure_ascii: bool) -> bytes:
    return json.dumps(doc, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decode_arbitrary_bytes(py_impl, c_impl, raw):
    assert texts(outcome(py_impl.decode_error_body, raw)) == texts(outcome(c_impl.decode_error_body, raw))


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=500, max_value=530),
       st.lists(st.sampled_from(['"', "\\", "[", "{", "]", "}", "a", ":", ","]), max_size=40),
       st.integers(min_value=0, max_value=600))
def test_decode_near_the_depth_limit(py_impl, c_impl, depth, noise, at):
    # Bodies around the 512-level limit, with quotes, escapes and brackets spliced in: the walk that
    # decides "too deep" is the same in both twins.
    inner = depth - 3
    raw = b'{"errors":[{"code":"A","detail":' + b"[" * inner + b"]" * inner + b"}]}"
    spliced = raw[:at] + "".join(noise).encode() + raw[at:]
    for candidate in (raw, spliced):
        assert texts(outcome(py_impl.decode_error_body, candidate)) == texts(
            outcome(c_impl.decode_error_body, candidate))


@settings(max_examples=150, deadline=None)
@given(DOCS, st.booleans(), st.binary(max_size=3), st.integers(min_value=0, max_value=400))
def test_decode_jsonish_bodies(py_impl, c_impl, doc, ensure_ascii, noise, at):
    raw = encode(doc, ensure_ascii)
    for candidate in (raw, raw[:at] + noise + raw[at:]):
        py_result = outcome(py_impl.decode_error_body, candidate)
        assert texts(py_result) == texts(outcome(c_impl.decode_error_body, candidate))
        if py_result[0] == "ok":
            for d in py_result[1]:
                assert outcome(py_impl.format_diagnostic, d) == outcome(c_impl.format_diagnostic, d)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(), KEYS), st.text(), st.one_of(JSONISH, st.tuples(JSONISH, JSONISH), st.binary(max_size=4),
                                                        st.dictionaries(st.integers(), JSONISH, max_size=3)))
def test_format_diagnostic(py_impl, c_impl, code, message, detail):
    d = Diagnostic(code, message, detail)
    assert outcome(py_impl.format_diagnostic, d) == outcome(c_impl.format_diagnostic, d)


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_go_float_printing(py_impl, c_impl, number):
    d = Diagnostic("N", "", number)
    assert py_impl.format_diagnostic(d) == c_impl.format_diagnostic(d)


DIAGNOSTICS = st.lists(st.builds(Diagnostic, st.one_of(KEYS, st.sampled_from(
    ["UNKNOWN", "TOOMANYREQUESTS", "UNAVAILABLE", "BLOB_UPLOAD_INVALID", "DENIED"])), st.text(), JSONISH), max_size=3)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.none(), st.sampled_from(["GET", "HEAD", "PUT", ""]), st.integers()),
       st.one_of(st.none(), st.text(max_size=20)),
       st.one_of(st.integers(min_value=-1, max_value=999), st.booleans(), st.text(max_size=3)),
       st.one_of(DIAGNOSTICS, st.tuples(), st.lists(st.integers(), max_size=2), st.none()),
       st.one_of(st.binary(max_size=30), st.text(max_size=3)))
def test_format_error_status_text_is_temporary(py_impl, c_impl, method, url, status, diagnostics, raw):
    assert outcome(py_impl.format_error, method, url, status, diagnostics, raw) == outcome(
        c_impl.format_error, method, url, status, diagnostics, raw)
    assert outcome(py_impl.status_text, status) == outcome(c_impl.status_text, status)
    assert outcome(py_impl.is_temporary, status, diagnostics) == outcome(c_impl.is_temporary, status, diagnostics)
