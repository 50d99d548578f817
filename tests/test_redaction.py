"""Redaction of URLs (upstream redact.URL + url.Redacted), headers and token bodies, both twins."""

from __future__ import annotations

import json

import pytest

SIGNED_BLOB_URL = (
    "https://production.cloudflare.docker.com/registry-v2/docker/registry/v2/blobs/sha256/a3/a3ed95ca/data"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20240101%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=1200&X-Amz-SignedHeaders=host&X-Amz-Signature=0123abcd"
)

# -- redact_url -----------------------------------------------------------------------------------------


def test_signed_blob_url(impl):
    assert impl.module.redact_url(SIGNED_BLOB_URL) == (
        "https://production.cloudflare.docker.com/registry-v2/docker/registry/v2/blobs/sha256/a3/a3ed95ca/data"
        "?X-Amz-Algorithm=REDACTED&X-Amz-Credential=REDACTED&X-Amz-Date=REDACTED&X-Amz-Expires=REDACTED"
        "&X-Amz-Signature=REDACTED&X-Amz-SignedHeaders=REDACTED"
    )


def test_allowlisted_parameters_keep_their_values(impl):
    url = (
        "https://r.example/v2/a/blobs/uploads/?_state=secret&from=b%2Fc&mount=sha256:00&digest=sha256:11"
        "&n=100&last=tag&scope=repository:a:pull&service=r.example&origin=r2.example"
    )
    assert impl.module.redact_url(url) == (
        "https://r.example/v2/a/blobs/uploads/?_state=REDACTED&digest=sha256%3A11&from=b%2Fc&last=tag"
        "&mount=sha256%3A00&n=100&origin=REDACTED&scope=repository%3Aa%3Apull&service=r.example"
    )


def test_repeated_keys_keep_their_order(impl):
    assert impl.module.redact_url("https://r/t?scope=b&x=1&scope=a&x=2") == (
        "https://r/t?scope=b&scope=a&x=REDACTED&x=REDACTED"
    )


def test_keys_compared_after_decoding(impl):
    assert impl.module.redact_url("https://r/t?sc%6Fpe=a+b&%73ecret=x") == "https://r/t?scope=a+b&secret=REDACTED"


def test_password_masked(impl):
    assert impl.module.redact_url("https://user:hunter2@r.example/v2/") == "https://user:xxxxx@r.example/v2/"
    assert impl.module.redact_url("https://user:@r.example/v2/") == "https://user:xxxxx@r.example/v2/"
    assert impl.module.redact_url("//user:pw@r.example?x=1") == "//user:xxxxx@r.example?x=REDACTED"
    assert impl.module.redact_url("https://u:p:q@a@h:5000/p@x") == "https://u:xxxxx@h:5000/p@x"


def test_user_without_password_kept(impl):
    assert impl.module.redact_url("https://user@r.example/v2/") == "https://user@r.example/v2/"


@pytest.mark.parametrize(
    "url",
    [
        "https://registry-1.docker.io/v2/library/ubuntu/manifests/latest",
        "https://r.example/v2/?",  # an empty query stays, as Go's ForceQuery keeps it
        "https://r.example/v2/#frag?x=1",  # "?" inside the fragment is not a query
        "not a url at all",
        "user:pw@host/path",  # no "//": no authority, so no userinfo (as Go parses it)
        "",
    ],
)
def test_unchanged(impl, url):
    assert impl.module.redact_url(url) == url


def test_fragment_kept_after_query(impl):
    assert impl.module.redact_url("https://r/p?sig=abc#frag") == "https://r/p?sig=REDACTED#frag"


def test_unparseable_pairs_dropped_never_shown(impl):
    # url.ParseQuery drops pairs with ";" and with bad escapes; an all-dropped query loses its "?"
    assert impl.module.redact_url("https://r/p?a=1;sig=s3cret&b=%zzs3cret&c=%41") == "https://r/p?c=REDACTED"
    assert impl.module.redact_url("https://r/p?;s3cret#f") == "https://r/p#f"
    assert impl.module.redact_url("https://r/p?&&") == "https://r/p"


def test_key_without_value_is_redacted_too(impl):
    assert impl.module.redact_url("https://r/p?token&digest") == "https://r/p?digest=&token=REDACTED"


def test_non_ascii_query(impl):
    assert impl.module.redact_url("https://r/p?scope=\u00e9&\u00e9=1") == "https://r/p?scope=%C3%A9&%C3%A9=REDACTED"


@pytest.mark.parametrize(
    "url",
    [
        "?=s3cret",
        "https://r/p?a=s3cret&&=s3cret&b",
        "https://r/p?x=%s3cret",
        "https://u:s3cret@/?x=s3cret",
        "\x00?\udc80=s3cret",
        "https://r/p?x==s3cret",
        "https://r/p?x=s3cret%",
    ],
)
def test_never_leaks_a_query_value(impl, url):
    assert "s3cret" not in impl.module.redact_url(url)


@pytest.mark.parametrize("url, kind", [(b"https://r/", "bytes"), (None, "NoneType")])
def test_redact_url_types(impl, url, kind):
    with pytest.raises(TypeError, match=f"expects a str, got {kind}$"):
        impl.module.redact_url(url)


# -- redact_headers --------------------------------------------------------------------------------------


def test_credentials_keep_their_scheme(impl):
    assert impl.module.redact_headers([
        ("Authorization", "Bearer eyJhbGciOi.payload.sig"),
        ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
    ]) == [("Authorization", "Bearer REDACTED"), ("Proxy-Authorization", "Basic REDACTED")]


@pytest.mark.parametrize("value", ["dXNlcjpwYXNz", "", "   ", "abc=def ghi", "\u00e9t\u00e9 x"])
def test_credentials_without_a_scheme(impl, value):
    assert impl.module.redact_headers([("Authorization", value)]) == [("Authorization", "REDACTED")]


def test_credentials_scheme_after_whitespace(impl):
    assert impl.module.redact_headers([("authorization", " \tBearer\ttok")]) == [("authorization", "Bearer REDACTED")]


def test_cookies_and_registry_auth_redacted_whole(impl):
    assert impl.module.redact_headers([
        ("Cookie", "session=abc"),
        ("Set-Cookie", "id=1; HttpOnly"),
        ("X-Registry-Auth", "eyJ1c2VybmFtZSI6ImEifQ=="),
    ]) == [("Cookie", "REDACTED"), ("Set-Cookie", "REDACTED"), ("X-Registry-Auth", "REDACTED")]


def test_names_case_insensitive_order_kept(impl):
    headers = [
        ("accept", "application/json"),
        ("AUTHORIZATION", "Bearer t"),
        ("sEt-CoOkIe", "a=b"),
        ("Content-Length", "0"),
        ("authorization", "Basic x"),
    ]
    assert impl.module.redact_headers(headers) == [
        ("accept", "application/json"),
        ("AUTHORIZATION", "Bearer REDACTED"),
        ("sEt-CoOkIe", "REDACTED"),
        ("Content-Length", "0"),
        ("authorization", "Basic REDACTED"),
    ]


def test_only_exact_names_match(impl):
    headers = [("Authorization-Info", "x"), ("X-Cookie", "y"), ("Coo\u212aie", "z")]
    assert impl.module.redact_headers(headers) == headers


# Presigned URLs of the object stores registries redirect blob GETs and HEADs to (S3, GCS, Azure, CloudFront):
# every signed parameter is a secret for as long as the URL is valid.
PRESIGNED = [
    (SIGNED_BLOB_URL, ["AKIAEXAMPLE", "0123abcd"]),
    (("https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=sa%40p.iam"
      "&X-Goog-Date=20240101T000000Z&X-Goog-Expires=900&X-Goog-SignedHeaders=host&X-Goog-Signature=9f8e7d"),
     ["sa%40p.iam", "sa@p.iam", "9f8e7d"]),
    (("https://acct.blob.core.windows.net/c/b?sv=2021-08-06&se=2024-01-01T00%3A20%3A00Z&sr=b&sp=r"
      "&sig=AzUrEsIg%2Bnature%3D&skoid=oid123&sktid=tid456"), ["AzUrEsIg", "oid123", "tid456", "2024-01-01"]),
    (("https://d111.cloudfront.net/blobs/x?Expires=1704067200&Signature=CfSiGnAtUrE~&Key-Pair-Id=APKAEXAMPLE"
      "&Policy=eyJTdGF0ZW1lbnQiOltdfQ__"), ["CfSiGnAtUrE", "APKAEXAMPLE", "eyJTdGF0ZW1lbnQiOltdfQ__", "1704067200"]),
]


@pytest.mark.parametrize("url, secrets", PRESIGNED, ids=["s3", "gcs", "azure", "cloudfront"])
@pytest.mark.parametrize("name", ["Location", "location", "Content-Location", "CONTENT-LOCATION"])
def test_location_headers_are_redacted_like_urls(impl, name, url, secrets):
    """A 307 to storage logged with -v: the Location header is the presigned URL itself."""
    (got_name, got), = impl.module.redact_headers([(name, url)])
    assert got_name == name and got == impl.module.redact_url(url)
    assert "REDACTED" in got and got.split("?")[0] == url.split("?")[0]
    for secret in secrets:
        assert secret not in got


def test_upload_location_state_redacted_relative_too(impl):
    headers = [("Location", "/v2/a/blobs/uploads/u1?_state=c2VjcmV0&digest=sha256:00"), ("Location", "/v2/a/")]
    assert impl.module.redact_headers(headers) == [
        ("Location", "/v2/a/blobs/uploads/u1?_state=REDACTED&digest=sha256%3A00"), ("Location", "/v2/a/")]


def test_pairs_come_back_as_tuples(impl):
    result = impl.module.redact_headers(iter([["Accept", "*/*"], ("Cookie", "x")]))
    assert result == [("Accept", "*/*"), ("Cookie", "REDACTED")]
    assert all(type(pair) is tuple for pair in result)
    assert impl.module.redact_headers([]) == []


@pytest.mark.parametrize(
    "headers, message",
    [
        (b"Cookie: x", "redact_headers() expects an iterable of (name, value) pairs, got bytes"),
        (None, "redact_headers() expects an iterable of (name, value) pairs, got NoneType"),
        ([("Cookie",)], "redact_headers() expects (name, value) pairs, got tuple"),
        (["Cookie: x"], "redact_headers() expects (name, value) pairs, got str"),
        ([(b"Cookie", "x")], "header names and values must be str, got bytes"),
        ([("Cookie", None)], "header names and values must be str, got NoneType"),
    ],
)
def test_redact_headers_types(impl, headers, message):
    with pytest.raises(TypeError) as info:
        impl.module.redact_headers(headers)
    assert str(info.value) == message


# -- redact_token_body -----------------------------------------------------------------------------------


def test_docker_token_response(impl):
    body = json.dumps({
        "token": "eyJhbGciOi.a.b", "access_token": "eyJhbGciOi.a.b", "expires_in": 300,
        "issued_at": "2024-01-01T00:00:00Z", "refresh_token": "r3fr3sh",
    }).encode()
    assert impl.module.redact_token_body(body) == (
        '{"access_token":"REDACTED","expires_in":300,"issued_at":"2024-01-01T00:00:00Z",'
        '"refresh_token":"REDACTED","token":"REDACTED"}'
    )


def test_secret_keys_at_any_depth_any_case(impl):
    body = '{"Data":{"ID_Token":{"x":1},"list":[{"Password":"p","registryToken":"r"},[{"IdentityToken":"i"}]]}}'
    assert impl.module.redact_token_body(body) == (
        '{"Data":{"ID_Token":"REDACTED","list":[{"Password":"REDACTED","registryToken":"REDACTED"},'
        '[{"IdentityToken":"REDACTED"}]]}}'
    )


def test_other_values_kept(impl):
    assert impl.module.redact_token_body(b'{"b":[1,2.5,null,true],"a":"\\u00e9"}') == (
        '{"a":"\\u00e9","b":[1,2.5,null,true]}'
    )


@pytest.mark.parametrize(
    "body, size",
    [
        (b"not json", 8),
        (b'["token","abc"]', 15),
        (b'"token"', 7),
        (b"", 0),
        (b"\xff\xfe{", 3),
        (b'{"token":"abc"', 14),
        ("t\u00e9l\u00e9", 6),  # str bodies are measured in UTF-8 bytes
        (b"[" * 100_000, 100_000),
        (b'{"n":' + b"9" * 5000 + b"}", 5006),
    ],
)
def test_not_a_json_object(impl, body, size):
    assert impl.module.redact_token_body(body) == f"[{size} bytes redacted]"


def test_deep_nesting_not_reserialised(impl):
    shallow = '{"a":' * 10 + '{"token":"t"}' + "}" * 10
    assert impl.module.redact_token_body(shallow) == '{"a":' * 10 + '{"token":"REDACTED"}' + "}" * 10
    deep = '{"a":' * 200 + '{"token":"t"}' + "}" * 200
    assert impl.module.redact_token_body(deep) == f"[{len(deep)} bytes redacted]"


def test_bytearray_accepted(impl):
    assert impl.module.redact_token_body(bytearray(b'{"token":"t"}')) == '{"token":"REDACTED"}'


@pytest.mark.parametrize("body, kind", [(None, "NoneType"), ({"token": "t"}, "dict"), (1, "int")])
def test_redact_token_body_types(impl, body, kind):
    with pytest.raises(TypeError, match=f"expects bytes or str, got {kind}$"):
        impl.module.redact_token_body(body)
