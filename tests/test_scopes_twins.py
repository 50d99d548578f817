"""The two twins of ``_scopes`` agree on every input: same result, or same exception and message."""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.hypothesis

SCOPE_PIECES = st.sampled_from([
    "repository", "registry", ":", "::", "library/ubuntu", "localhost:5000/a", "catalog", "*", "pull", "push",
    "delete", ",", ",,", "", " ", "\u00e9", "\U0001f600",
])
SCOPES = st.one_of(st.lists(SCOPE_PIECES, max_size=8).map("".join), st.text(max_size=20))
QUERY_PIECES = st.sampled_from([
    "scope", "service", "client_id", "a", "B", "=", "&", ";", "+", "%", "%4", "%41", "%2f", "%C3%A9", "%zz", "~",
    " ", "\u00e9", "\x00", "\udc80", "\ud800",
])
QUERIES = st.one_of(st.lists(QUERY_PIECES, max_size=12).map("".join), st.text(max_size=20))


class Text(str):
    """A str subclass: both twins accept it as a str."""


WIRE_TEXT = st.binary(max_size=20).flatmap(
    lambda raw: st.sampled_from([raw.decode("latin-1"), raw.decode("utf-8", "surrogateescape")])
)
TEXT = st.one_of(SCOPES, WIRE_TEXT, SCOPES.map(Text))
NOT_TEXT = st.one_of(st.binary(max_size=4), st.none(), st.integers())
SCOPE_LISTS = st.one_of(
    st.lists(TEXT, max_size=5),
    st.lists(st.one_of(TEXT, NOT_TEXT), max_size=3),
    TEXT,
    NOT_TEXT,
)


def outcome(function, *args):
    try:
        return "ok", function(*args)
    except Exception as exc:  # noqa: BLE001 - comparing whatever each twin raises
        return type(exc), str(exc)


def test_compiled_module_name(c_impl):
    module = importlib.import_module("ocitransport._scopes_c")
    assert module.__name__ == "ocitransport._scopes_c"
    assert c_impl.merge_scopes.__module__ == "ocitransport._scopes_c"


@settings(max_examples=300, deadline=None)
@given(st.one_of(TEXT, NOT_TEXT))
def test_parse_scope(py_impl, c_impl, scope):
    assert outcome(py_impl.parse_scope, scope) == outcome(c_impl.parse_scope, scope)


@settings(max_examples=300, deadline=None)
@given(SCOPE_LISTS, SCOPE_LISTS)
def test_merge_scopes(py_impl, c_impl, new, old):
    assert outcome(py_impl.merge_scopes, new, old) == outcome(c_impl.merge_scopes, new, old)


@settings(max_examples=300, deadline=None)
@given(st.one_of(TEXT, NOT_TEXT), SCOPE_LISTS, st.one_of(QUERIES, WIRE_TEXT, QUERIES.map(Text), NOT_TEXT))
def test_token_query(py_impl, c_impl, service, scopes, query):
    assert outcome(py_impl.token_query, service, scopes, query) == outcome(c_impl.token_query, service, scopes,
                                                                           query)


@settings(max_examples=150, deadline=None)
@given(st.one_of(TEXT, NOT_TEXT), SCOPE_LISTS, st.one_of(TEXT, NOT_TEXT))
def test_repository_and_registry_scope(py_impl, c_impl, repository, actions, action):
    assert outcome(py_impl.repository_scope, repository, actions) == outcome(c_impl.repository_scope,
                                                                             repository, actions)
    assert outcome(py_impl.registry_scope, action) == outcome(c_impl.registry_scope, action)
