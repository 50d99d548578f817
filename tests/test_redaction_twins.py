"""The two twins of ``_redaction`` agree on every input: same result, or same exception and message."""

from __future__ import annotations

import importlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.hypothesis

URL_PIECES = st.sampled_from([
    "https:", "http:", "//", "/", "user", ":", "pw", "@", "r.example", ":5000", "?", "#", "&", "=", ";", "+",
    "%", "%4", "%41", "%2F", "%C3%A9", "%zz", "scope", "service", "digest", "n", "last", "X-Amz-Signature",
    "sha256:00", " ", "\u00e9", "\udc80", "\ud800", "\x00", "1a",
])
URLS = st.one_of(st.lists(URL_PIECES, max_size=16).map("".join), st.text(max_size=30))


class Text(str):
    """A str subclass: both twins accept it as a str."""


WIRE_TEXT = st.binary(max_size=30).flatmap(
    lambda raw: st.sampled_from([raw.decode("latin-1"), raw.decode("utf-8", "surrogateescape")])
)
NOT_TEXT = st.one_of(st.binary(max_size=4), st.none(), st.integers())

HEADER_NAMES = st.one_of(
    st.sampled_from(["Authorization", "authorization", "PROXY-AUTHORIZATION", "Cookie", "set-cookie",
                     "X-Registry-Auth", "Accept", "Coo\u212aie", "Authorizatio", "", "Location", "LOCATION",
                     "content-location", "Locatio\u212a", "Content-Locatio"]),
    st.text(max_size=8),
    st.sampled_from(["Authorization", "cookie", "Accept"]).map(Text),
)
HEADER_VALUES = st.one_of(
    st.sampled_from(["Bearer abc", " \tBasic  x", "abc", "", "Bearer", "Bearer ", "a=b c", "\u00e9 x"]),
    st.text(max_size=10),
    WIRE_TEXT,
    st.sampled_from(["Bearer abc", "x"]).map(Text),
    URLS,
    URLS.map(Text),
)
PAIRS = st.one_of(
    st.tuples(HEADER_NAMES, HEADER_VALUES),
    st.lists(HEADER_NAMES, min_size=2, max_size=2),
    st.tuples(st.one_of(HEADER_NAMES, NOT_TEXT), st.one_of(HEADER_VALUES, NOT_TEXT)),
    st.tuples(HEADER_NAMES),
    NOT_TEXT,
)

SECRET_KEYS = st.sampled_from(["token", "Access_Token", "REFRESH_TOKEN", "id_token", "password", "identitytoken",
                               "registryToken", "expires_in", "issued_at", "t\u00f6ken", "to\u212aen"])
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=6)),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(SECRET_KEYS, st.text(max_size=4)), children, max_size=4),
    ),
    max_leaves=12,
)
BODIES = st.one_of(
    JSON.map(json.dumps),
    JSON.map(lambda doc: json.dumps(doc).encode()),
    st.binary(max_size=40),
    st.text(max_size=20),
    JSON.map(json.dumps).map(Text),
    st.integers(min_value=1, max_value=120).map(lambda depth: '{"a":' * depth + '{"token":1}' + "}" * depth),
)


def outcome(function, *args):
    try:
        return "ok", function(*args)
    except Exception as exc:  # noqa: BLE001 - comparing whatever each twin raises
        return type(exc), str(exc)


def test_compiled_module_name(c_impl):
    module = importlib.import_module("ocitransport._redaction_c")
    assert module.__name__ == "ocitransport._redaction_c"
    assert c_impl.redact_url.__module__ == "ocitransport._redaction_c"


@settings(max_examples=500, deadline=None)
@given(st.one_of(URLS, WIRE_TEXT, URLS.map(Text), NOT_TEXT))
def test_redact_url(py_impl, c_impl, url):
    assert outcome(py_impl.redact_url, url) == outcome(c_impl.redact_url, url)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.lists(PAIRS, max_size=5), NOT_TEXT, st.text(max_size=3)))
def test_redact_headers(py_impl, c_impl, headers):
    assert outcome(py_impl.redact_headers, headers) == outcome(c_impl.redact_headers, headers)


@settings(max_examples=300, deadline=None)
@given(st.one_of(BODIES, st.none(), st.integers()))
def test_redact_token_body(py_impl, c_impl, body):
    assert outcome(py_impl.redact_token_body, body) == outcome(c_impl.redact_token_body, body)
