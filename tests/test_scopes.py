"""Token scopes (build, parse, merge) and the token GET query, both twins."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from ocitransport._values import Scope

# -- repository_scope / registry_scope ---------------------------------------------------------------


def test_repository_scope_with_action_string(impl):
    assert impl.module.repository_scope("library/ubuntu", "pull") == "repository:library/ubuntu:pull"
    assert impl.module.repository_scope("a/b", "push,pull") == "repository:a/b:push,pull"


def test_repository_scope_joins_an_iterable_of_actions(impl):
    scope = impl.module.repository_scope
    assert scope("a/b", ["push", "pull"]) == "repository:a/b:push,pull"
    assert scope("a/b", ("pull",)) == "repository:a/b:pull"
    assert scope("a/b", (a for a in ("push", "pull", "delete"))) == "repository:a/b:push,pull,delete"
    assert scope("a/b", []) == "repository:a/b:"


@pytest.mark.parametrize(
    "repository, actions, message",
    [
        (b"a/b", "pull", "repository must be a str, got bytes"),
        (None, "pull", "repository must be a str, got NoneType"),
        ("a/b", b"pull", "actions must be a str or an iterable of str, got bytes"),
        ("a/b", 3, "actions must be a str or an iterable of str, got int"),
        ("a/b", ["pull", 1], "actions must be str, got int"),
    ],
)
def test_repository_scope_types(impl, repository, actions, message):
    with pytest.raises(TypeError) as info:
        impl.module.repository_scope(repository, actions)
    assert str(info.value) == message


def test_registry_scope_is_always_catalog(impl):
    assert impl.module.registry_scope() == "registry:catalog:*"
    # upstream's Registry.Scope ignores its argument
    assert impl.module.registry_scope("push") == "registry:catalog:*"


# -- parse_scope ---------------------------------------------------------------------------------------


def test_parse_scope(impl):
    assert impl.module.parse_scope("repository:library/ubuntu:pull,push") == Scope(
        "repository", "library/ubuntu", ("pull", "push")
    )
    assert impl.module.parse_scope("registry:catalog:*") == Scope("registry", "catalog", ("*",))


def test_parse_scope_name_may_hold_colons(impl):
    assert impl.module.parse_scope("repository:localhost:5000/a/b:pull") == Scope(
        "repository", "localhost:5000/a/b", ("pull",)
    )


def test_parse_scope_drops_empty_actions(impl):
    assert impl.module.parse_scope("repository:a:,pull,,push,") == Scope("repository", "a", ("pull", "push"))
    assert impl.module.parse_scope("repository:a:") == Scope("repository", "a", ())
    assert impl.module.parse_scope("repository::pull") == Scope("repository", "", ("pull",))


def test_parse_scope_result_type(impl):
    scope = impl.module.parse_scope("repository:a:pull")
    assert type(scope) is Scope
    assert type(scope.actions) is tuple
    assert str(scope) == "repository:a:pull"


@pytest.mark.parametrize("scope", ["", "repository", "repository:a", ":a:pull", "::"])
def test_parse_scope_invalid(impl, scope):
    with pytest.raises(ValueError) as info:
        impl.module.parse_scope(scope)
    assert str(info.value).startswith(f"invalid scope {scope!r}")


@pytest.mark.parametrize("scope, kind", [(b"repository:a:pull", "bytes"), (None, "NoneType")])
def test_parse_scope_types(impl, scope, kind):
    with pytest.raises(TypeError, match=f"scope must be a str, got {kind}$"):
        impl.module.parse_scope(scope)


# -- merge_scopes ---------------------------------------------------------------------------------------


def test_merge_puts_new_actions_first(impl):
    assert impl.module.merge_scopes(["repository:a:push"], ["repository:a:pull"]) == ["repository:a:push,pull"]


def test_merge_keeps_resource_order_new_then_old(impl):
    assert impl.module.merge_scopes(
        ["repository:b:pull", "repository:a:push"],
        ["repository:a:pull", "repository:c:pull", "repository:b:pull"],
    ) == ["repository:b:pull", "repository:a:push,pull", "repository:c:pull"]


def test_merge_unions_actions_in_first_appearance_order(impl):
    assert impl.module.merge_scopes(
        ["repository:a:pull", "repository:a:delete,pull"], ["repository:a:push,pull,delete"]
    ) == ["repository:a:pull,delete,push"]


def test_merge_is_per_type_and_name(impl):
    assert impl.module.merge_scopes(
        ["repository:localhost:5000/a:pull"], ["repository:localhost:5000/b:pull", "registry:localhost:5000/a:*"]
    ) == ["repository:localhost:5000/a:pull", "repository:localhost:5000/b:pull", "registry:localhost:5000/a:*"]


def test_merge_keeps_catalog_scope(impl):
    assert impl.module.merge_scopes(["registry:catalog:*"], ["repository:a:pull", "registry:catalog:*"]) == [
        "registry:catalog:*",
        "repository:a:pull",
    ]


def test_merge_keeps_unparseable_scopes_verbatim_once(impl):
    assert impl.module.merge_scopes(["junk", "repository:a:pull"], ["a:b", "junk", "", ":x:y", "a:b"]) == [
        "junk",
        "repository:a:pull",
        "a:b",
        "",
        ":x:y",
    ]


def test_merge_unparseable_never_collides_with_a_resource(impl):
    assert impl.module.merge_scopes(["a:b:"], ["a:b", "a:b:pull"]) == ["a:b:pull", "a:b"]


def test_merge_normalises_actions(impl):
    assert impl.module.merge_scopes(["repository:a:pull,,pull,"], []) == ["repository:a:pull"]
    assert impl.module.merge_scopes([], []) == []


def test_merge_accepts_any_iterables(impl):
    assert impl.module.merge_scopes(iter(["repository:a:push"]), ("repository:a:pull",)) == [
        "repository:a:push,pull"
    ]


@pytest.mark.parametrize(
    "new, old, message",
    [
        ("repository:a:pull", [], "new must be an iterable of str, got str"),
        ([], b"repository:a:pull", "old must be an iterable of str, got bytes"),
        (None, [], "new must be an iterable of str, got NoneType"),
        (["repository:a:pull", 3], [], "new must hold str scopes, got int"),
        ([], [b"x"], "old must hold str scopes, got bytes"),
    ],
)
def test_merge_types(impl, new, old, message):
    with pytest.raises(TypeError) as info:
        impl.module.merge_scopes(new, old)
    assert str(info.value) == message


# -- token_query ---------------------------------------------------------------------------------------


def test_token_query_docker_hub(impl):
    assert (
        impl.module.token_query("registry.docker.io", ["repository:library/ubuntu:pull"])
        == "scope=repository%3Alibrary%2Fubuntu%3Apull&service=registry.docker.io"
    )


def test_token_query_one_scope_parameter_per_scope_in_order(impl):
    assert impl.module.token_query("svc", ["repository:b:pull", "repository:a:push,pull"]) == (
        "scope=repository%3Ab%3Apull&scope=repository%3Aa%3Apush%2Cpull&service=svc"
    )


def test_token_query_always_sends_service(impl):
    # upstream #1359: the challenge gave no service, so "service=" goes out empty
    assert impl.module.token_query("", ["repository:a:pull"]) == "scope=repository%3Aa%3Apull&service="
    assert impl.module.token_query("", []) == "service="


def test_token_query_keeps_realm_parameters_sorted(impl):
    assert impl.module.token_query("svc", ["repository:a:pull"], "z=1&account=me&b=2&b=1") == (
        "account=me&b=2&b=1&scope=repository%3Aa%3Apull&service=svc&z=1"
    )


def test_token_query_replaces_realm_scope_and_service(impl):
    assert impl.module.token_query("new", ["repository:a:pull"], "scope=old&service=old&x=1") == (
        "scope=repository%3Aa%3Apull&service=new&x=1"
    )
    assert impl.module.token_query("new", [], "scope=old") == "service=new"


def test_token_query_form_encoding(impl):
    # Go's QueryEscape: only A-Za-z0-9-_.~ stay, space is "+", UTF-8 bytes in upper-case %XX
    assert impl.module.token_query("a b~c-d_e.f", ["x/y:z,\u00e9+%"]) == (
        "scope=x%2Fy%3Az%2C%C3%A9%2B%25&service=a+b~c-d_e.f"
    )


def test_token_query_realm_query_decoded_as_go_does(impl):
    # "+" and %XX are decoded and re-encoded; pairs with ";" or a bad escape are dropped (url.ParseQuery)
    assert impl.module.token_query("s", [], "a=x+y&b=%41%2f&c=1;d=2&e=%zz&%=1&f&=v&&") == (
        "=v&a=x+y&b=A%2F&f=&service=s"
    )


def test_token_query_keys_sorted_bytewise(impl):
    assert impl.module.token_query("s", [], "b=1&B=2&%C3%A9=3&a=4") == "B=2&a=4&b=1&service=s&%C3%A9=3"


def test_token_query_round_trips_through_a_form_parser(impl):
    scopes = ["repository:library/ubuntu:pull", "repository:a b/c~d:push,pull", "registry:catalog:*"]
    query = impl.module.token_query("auth.example:443", scopes, "client_id=ocitransport&offline_token=true")
    assert parse_qsl(query, keep_blank_values=True) == [
        ("client_id", "ocitransport"),
        ("offline_token", "true"),
        *[("scope", s) for s in scopes],
        ("service", "auth.example:443"),
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        ((b"svc", []), "service must be a str, got bytes"),
        (("svc", "repository:a:pull"), "scopes must be an iterable of str, got str"),
        (("svc", [1]), "scopes must hold str scopes, got int"),
        (("svc", [], None), "query must be a str, got NoneType"),
    ],
)
def test_token_query_types(impl, args, message):
    with pytest.raises(TypeError) as info:
        impl.module.token_query(*args)
    assert str(info.value) == message
