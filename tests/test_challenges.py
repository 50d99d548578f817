"""WWW-Authenticate parsing (RFC 7235, upstream ``authchallenge`` where the RFC leaves room), both twins."""

from __future__ import annotations

import pytest

from ocitransport._values import Challenge

# Header values as the registries send them (reference section 2.3 and the registries' own responses).
REGISTRY_HEADERS = {
    "docker-hub": (
        ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
         'scope="repository:library/ubuntu:pull"'),
        Challenge("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                             "scope": "repository:library/ubuntu:pull"}),
    ),
    "ghcr": (
        'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:octo-org/app:pull"',
        Challenge("bearer", {"realm": "https://ghcr.io/token", "service": "ghcr.io",
                             "scope": "repository:octo-org/app:pull"}),
    ),
    "quay": (
        'Bearer realm="https://quay.io/v2/auth",service="quay.io",scope="repository:coreos/etcd:pull"',
        Challenge("bearer", {"realm": "https://quay.io/v2/auth", "service": "quay.io",
                             "scope": "repository:coreos/etcd:pull"}),
    ),
    "ecr": (
        'Basic realm="https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/",service="ecr.amazonaws.com"',
        Challenge("basic", {"realm": "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/",
                            "service": "ecr.amazonaws.com"}),
    ),
    "gcr": (
        'Bearer realm="https://gcr.io/v2/token",service="gcr.io",scope="repository:my-project/app:pull"',
        Challenge("bearer", {"realm": "https://gcr.io/v2/token", "service": "gcr.io",
                             "scope": "repository:my-project/app:pull"}),
    ),
    "artifact-registry": (
        ('Bearer realm="https://europe-docker.pkg.dev/v2/token",service="europe-docker.pkg.dev",'
         'scope="repository:my-project/images/app:pull"'),
        Challenge("bearer", {"realm": "https://europe-docker.pkg.dev/v2/token",
                             "service": "europe-docker.pkg.dev",
                             "scope": "repository:my-project/images/app:pull"}),
    ),
    "acr": (
        ('Bearer realm="https://contoso.azurecr.io/oauth2/token",service="contoso.azurecr.io",'
         'scope="repository:samples/hello-world:pull,push",error="insufficient_scope"'),
        Challenge("bearer", {"realm": "https://contoso.azurecr.io/oauth2/token",
                             "service": "contoso.azurecr.io",
                             "scope": "repository:samples/hello-world:pull,push",
                             "error": "insufficient_scope"}),
    ),
    "harbor": (
        ('Bearer realm="https://harbor.example.com/service/token",service="harbor-registry",'
         'scope="repository:library/nginx:pull,push"'),
        Challenge("bearer", {"realm": "https://harbor.example.com/service/token", "service": "harbor-registry",
                             "scope": "repository:library/nginx:pull,push"}),
    ),
    "distribution-insufficient-scope": (
        ('Bearer realm="https://auth.example.com/token",service="registry.example.com",'
         'scope="repository:samalba/my-app:pull,push",error="insufficient_scope"'),
        Challenge("bearer", {"realm": "https://auth.example.com/token", "service": "registry.example.com",
                             "scope": "repository:samalba/my-app:pull,push", "error": "insufficient_scope"}),
    ),
    "distribution-invalid-token": (
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",error="invalid_token"',
        Challenge("bearer", {"realm": "https://auth.example.com/token", "service": "registry.example.com",
                             "error": "invalid_token"}),
    ),
    "distribution-htpasswd": ('Basic realm="Registry Realm"', Challenge("basic", {"realm": "Registry Realm"})),
}


@pytest.mark.parametrize("header, expected", REGISTRY_HEADERS.values(), ids=REGISTRY_HEADERS.keys())
def test_registry_headers(impl, header, expected):
    assert impl.module.parse_challenges(header) == [expected]


def test_result_is_a_list_of_mutable_challenges(impl):
    result = impl.module.parse_challenges('Bearer realm="r"')
    assert type(result) is list
    challenge = result[0]
    assert type(challenge) is Challenge
    assert challenge.insecure is False
    assert challenge.token68 is None
    assert hash(challenge) == hash(Challenge("bearer", {"realm": "r"}))
    assert repr(challenge) == "Challenge('bearer', {'realm': 'r'}, insecure=False)"
    challenge.insecure = True  # ping marks the challenge it returns
    assert challenge.insecure is True


def test_long_names_lower_cased(impl):
    scheme, key = "X-Vendor-" + "Scheme" * 12, "Parameter" * 9
    assert impl.module.parse_challenges(f'{scheme} {key}="v", {scheme.upper()}') == [
        Challenge(scheme.lower(), {key.lower(): "v"}),
        Challenge(scheme.lower()),
    ]


def test_several_challenges_in_one_value(impl):
    assert impl.module.parse_challenges('Basic realm="x", Bearer realm="y",service="z"') == [
        Challenge("basic", {"realm": "x"}),
        Challenge("bearer", {"realm": "y", "service": "z"}),
    ]


def test_iterable_of_values_concatenated_in_order(impl):
    values = ['Bearer realm="a"', 'Basic realm="b", Negotiate', ""]
    expected = [Challenge("bearer", {"realm": "a"}), Challenge("basic", {"realm": "b"}), Challenge("negotiate")]
    assert impl.module.parse_challenges(values) == expected
    assert impl.module.parse_challenges(tuple(values)) == expected
    assert impl.module.parse_challenges(v for v in values) == expected
    assert impl.module.parse_challenges([]) == []


def test_token68(impl):
    parse = impl.module.parse_challenges
    assert parse("Negotiate abc==") == [Challenge("negotiate", token68="abc==")]
    assert parse("Custom a-b.c_d~e+f/g=, Basic realm=x") == [
        Challenge("custom", token68="a-b.c_d~e+f/g="),
        Challenge("basic", {"realm": "x"}),
    ]
    assert parse("Negotiate abc==  ") == [Challenge("negotiate", token68="abc==")]


def test_scheme_without_parameters(impl):
    parse = impl.module.parse_challenges
    assert parse("Negotiate") == [Challenge("negotiate")]
    assert parse('Negotiate, Basic realm="x"') == [Challenge("negotiate"), Challenge("basic", {"realm": "x"})]


def test_names_lower_cased_values_kept(impl):
    assert impl.module.parse_challenges('BEARER Realm="HTTPS://Auth.Example/Token",SerVice=Reg') == [
        Challenge("bearer", {"realm": "HTTPS://Auth.Example/Token", "service": "Reg"})
    ]


def test_last_duplicate_parameter_wins(impl):
    assert impl.module.parse_challenges('Bearer realm="a",REALM="b",realm=c') == [
        Challenge("bearer", {"realm": "c"})
    ]


def test_quoted_strings(impl):
    parse = impl.module.parse_challenges
    assert parse(r'Bearer realm="a\"b\\c\d"') == [Challenge("bearer", {"realm": 'a"b\\cd'})]
    assert parse('Bearer scope="repository:a:pull,push",realm="x"') == [
        Challenge("bearer", {"scope": "repository:a:pull,push", "realm": "x"})
    ]
    assert parse('Basic realm="  spaced out  "') == [Challenge("basic", {"realm": "  spaced out  "})]
    # Values beyond latin-1 (2- and 4-byte strings) keep the parameter names recognised.
    assert parse('Basic REALM="caf\u00e9 \u2603"') == [Challenge("basic", {"realm": "caf\u00e9 \u2603"})]
    assert parse('BEARER Realm="\U0001f600",Scope=x') == [Challenge("bearer", {"realm": "\U0001f600", "scope": "x"})]


def test_optional_whitespace(impl):
    parse = impl.module.parse_challenges
    # BWS around "=" (RFC 7235 section 2.1); upstream stops at the space.
    assert parse('Bearer realm = "x" , service\t=\t"y"') == [Challenge("bearer", {"realm": "x", "service": "y"})]
    assert parse('  \tBasic   realm="x"  ') == [Challenge("basic", {"realm": "x"})]
    assert parse('Bearer\trealm="x",\r\n service="y"') == [Challenge("bearer", {"realm": "x", "service": "y"})]


def test_empty_list_elements(impl):
    assert impl.module.parse_challenges(',, Basic realm="x",,, ,service="y",, Bearer ,') == [
        Challenge("basic", {"realm": "x", "service": "y"}),
        Challenge("bearer"),
    ]


@pytest.mark.parametrize("value", ["", "   ", ",", " , ,, ", "\t\r\n"])
def test_nothing_to_parse(impl, value):
    assert impl.module.parse_challenges(value) == []


def test_unquoted_url_cut_at_first_separator(impl):
    # upstream reads a plain token value, so ``realm=https://x`` keeps ``https``.
    assert impl.module.parse_challenges("Bearer realm=https://auth.example/token,service=svc") == [
        Challenge("bearer", {"realm": "https", "service": "svc"})
    ]


def test_unterminated_quoted_string_drops_the_parameter(impl):
    assert impl.module.parse_challenges('Bearer service="svc",realm="https://auth') == [
        Challenge("bearer", {"service": "svc"})
    ]
    assert impl.module.parse_challenges('Bearer realm="ends in escape\\') == [Challenge("bearer")]


def test_empty_values_dropped_as_upstream(impl):
    assert impl.module.parse_challenges('Bearer realm="",service=,scope="s"') == [
        Challenge("bearer", {"scope": "s"})
    ]


def test_garbage_skipped_to_next_comma(impl):
    parse = impl.module.parse_challenges
    assert parse('Bearer realm="x" junk "a,b" more, service="y"') == [
        Challenge("bearer", {"realm": "x", "service": "y"})
    ]
    assert parse('Bearer @@@, realm="x"') == [Challenge("bearer", {"realm": "x"})]
    assert parse('Bearer realm="x", =y, ;;;, service="z"') == [Challenge("bearer", {"realm": "x", "service": "z"})]
    # Missing comma between parameters: the rest of the element is skipped (upstream stops there).
    assert parse('Bearer realm="x" service="y"') == [Challenge("bearer", {"realm": "x"})]


def test_parameters_before_any_scheme_dropped(impl):
    assert impl.module.parse_challenges('realm="x", Basic realm="y"') == [Challenge("basic", {"realm": "y"})]


def test_tokens_are_ascii_only(impl):
    parse = impl.module.parse_challenges
    assert parse("B\u00e9arer realm=x") == []
    assert parse('Bearer r\u00e9alm="x",realm="y"') == [Challenge("bearer", {"realm": "y"})]
    # A token value stops at the first character outside the RFC token set.
    assert parse("Bearer realm=abc\u00e9def") == [Challenge("bearer", {"realm": "abc"})]


@pytest.mark.parametrize(
    "value, kind",
    [
        (b'Bearer realm="x"', "bytes"),
        (bytearray(b"Basic"), "bytearray"),
        (None, "NoneType"),
        (42, "int"),
    ],
)
def test_wrong_type(impl, value, kind):
    with pytest.raises(TypeError, match=rf"expects a str or an iterable of str, got {kind}$"):
        impl.module.parse_challenges(value)


@pytest.mark.parametrize("item, kind", [(b"Basic", "bytes"), (None, "NoneType"), (1, "int")])
def test_wrong_item_type(impl, item, kind):
    with pytest.raises(TypeError, match=rf"expects str header values, got {kind}$"):
        impl.module.parse_challenges(['Basic realm="x"', item])
