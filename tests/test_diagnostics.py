"""Registry error bodies: decoding, Go-style printing, status texts and the temporary rules, on both twins."""

from __future__ import annotations

import json

import pytest

from ocitransport._values import Diagnostic, ErrorCode

HEAD_HINT = " (HEAD responses have no body, use GET for details)"


def body(*errors: dict) -> bytes:
    return json.dumps({"errors": list(errors)}).encode()


# -- decoding -------------------------------------------------------------------------------------

REGISTRY_BODIES = [
    pytest.param(  # distribution/distribution
        b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"latest"}}]}\n',
        [Diagnostic("MANIFEST_UNKNOWN", "manifest unknown", {"Tag": "latest"})],
        "MANIFEST_UNKNOWN: manifest unknown; map[Tag:latest]",
        id="distribution-manifest-unknown",
    ),
    pytest.param(
        b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":'
        b'[{"Type":"repository","Class":"","Name":"library/foo","Action":"pull"}]}]}\n',
        [Diagnostic("UNAUTHORIZED", "authentication required",
                    [{"Type": "repository", "Class": "", "Name": "library/foo", "Action": "pull"}])],
        "UNAUTHORIZED: authentication required; [map[Action:pull Class: Name:library/foo Type:repository]]",
        id="distribution-unauthorized-access-list",
    ),
    pytest.param(
        b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:abc"}]}',
        [Diagnostic("BLOB_UNKNOWN", "blob unknown to registry", "sha256:abc")],
        "BLOB_UNKNOWN: blob unknown to registry; sha256:abc",
        id="distribution-blob-unknown",
    ),
    pytest.param(  # Docker Hub rate limit
        b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit. You may '
        b'increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"}]}\n',
        [Diagnostic("TOOMANYREQUESTS", "You have reached your pull rate limit. You may increase the limit by "
                    "authenticating and upgrading: https://www.docker.com/increase-rate-limit")],
        "TOOMANYREQUESTS: You have reached your pull rate limit. You may increase the limit by authenticating "
        "and upgrading: https://www.docker.com/increase-rate-limit",
        id="dockerhub-toomanyrequests",
    ),
    pytest.param(  # Amazon ECR
        b'{"errors":[{"code":"DENIED","message":"Your authorization token has expired. '
        b'Reauthenticate and try again."}]}',
        [Diagnostic("DENIED", "Your authorization token has expired. Reauthenticate and try again.")],
        "DENIED: Your authorization token has expired. Reauthenticate and try again.",
        id="ecr-denied",
    ),
    pytest.param(  # Google GCR / Artifact Registry
        b'{"errors":[{"code":"UNAUTHORIZED","message":"You don\'t have the needed permissions to perform this '
        b'operation, and you may have invalid credentials."}]}',
        [Diagnostic("UNAUTHORIZED", "You don't have the needed permissions to perform this operation, and you "
                    "may have invalid credentials.")],
        "UNAUTHORIZED: You don't have the needed permissions to perform this operation, and you may have "
        "invalid credentials.",
        id="gcr-unauthorized",
    ),
    pytest.param(  # Quay sends an empty detail object
        b'{"errors": [{"code": "MANIFEST_UNKNOWN", "detail": {}, "message": "manifest unknown"}]}',
        [Diagnostic("MANIFEST_UNKNOWN", "manifest unknown", {})],
        "MANIFEST_UNKNOWN: manifest unknown; map[]",
        id="quay-empty-detail",
    ),
    pytest.param(  # Harbor uses codes outside the spec
        b'{"errors":[{"code":"NOT_FOUND","message":"artifact library/foo:latest not found"}]}',
        [Diagnostic("NOT_FOUND", "artifact library/foo:latest not found")],
        "NOT_FOUND: artifact library/foo:latest not found",
        id="harbor-not-found",
    ),
]


@pytest.mark.parametrize(("raw", "expected", "text"), REGISTRY_BODIES)
def test_real_registry_bodies(impl, raw, expected, text):
    diagnostics = impl.module.decode_error_body(raw)
    assert diagnostics == expected
    assert [impl.module.format_diagnostic(d) for d in diagnostics] == [text]


def test_keys_match_case_insensitively(impl):
    raw = b'{"ERRORS":[{"Code":"DENIED","MESSAGE":"no","Detail":1}]}'
    assert impl.module.decode_error_body(raw) == [Diagnostic("DENIED", "no", 1)]


def test_keys_fold_like_go_unicode(impl):
    # Go folds with ToUpper(ToLower(r)): long s, Kelvin sign, dotted and dotless I reach ASCII letters.
    raw = '{"errorſ":[{"codE":"A","meſſage":"m","detaİl":true},{"code":"\u212a","detaıl":null}]}'.encode()
    assert impl.module.decode_error_body(raw) == [Diagnostic("A", "m", True), Diagnostic("\u212a", "", None)]


def test_repeated_keys_last_valid_value_wins(impl):
    raw = b'{"errors":[{"code":"A","Code":"B","code":5,"message":"m","message":null,"detail":1,"DETAIL":null}]}'
    assert impl.module.decode_error_body(raw) == [Diagnostic("B", "m", None)]


def test_repeated_errors_key_last_list_wins(impl):
    raw = b'{"errors":[{"code":"A"}],"Errors":[{"code":"B"},{"code":"C"}]}'
    assert impl.module.decode_error_body(raw) == [Diagnostic("B"), Diagnostic("C")]
    assert impl.module.decode_error_body(b'{"errors":[{"code":"A"}],"errors":null}') == []
    assert impl.module.decode_error_body(b'{"errors":[{"code":"A"}],"errors":7}') == [Diagnostic("A")]


def test_items_need_a_string_code(impl):
    raw = body({"code": 1}, {"message": "x"}, "str", None, [], {"code": None}, {"code": "OK", "message": 2})
    assert impl.module.decode_error_body(raw) == [Diagnostic("OK", "")]


def test_detail_kept_as_decoded_value(impl):
    raw = body({"code": "X", "detail": {"a": [1, 2.5, None, {"b": "c"}]}})
    assert impl.module.decode_error_body(raw)[0].detail == {"a": [1, 2.5, None, {"b": "c"}]}
    assert type(impl.module.decode_error_body(raw)[0].detail) is dict


def test_numbers_out_of_float64_range_become_none(impl):
    raw = b'{"errors":[{"code":"A","detail":[1e400,-1e400,' + b"9" * 400 + b"," + b"9" * 5000 + b",1e-400]}]}"
    assert impl.module.decode_error_body(raw) == [Diagnostic("A", "", [None, None, None, None, 0.0])]


def test_negative_zero_keeps_its_sign(impl):
    detail = impl.module.decode_error_body(b'{"errors":[{"code":"A","detail":-0}]}')[0].detail
    assert str(detail) == "-0.0"


def test_invalid_utf8_becomes_replacement_per_byte(impl):
    raw = b'{"errors":[{"code":"A","message":"caf\xe9 \xe2\x82!"}]}'
    assert impl.module.decode_error_body(raw)[0].message == "caf\ufffd \ufffd\ufffd!"


def test_lone_surrogate_escape_becomes_replacement(impl):
    raw = b'{"errors":[{"code":"A\\ud800","message":"\\ud83d\\ude00","detail":{"k\\udfff":"\\udc00"}}]}'
    assert impl.module.decode_error_body(raw) == [Diagnostic("A\ufffd", "\U0001f600", {"k\ufffd": "\ufffd"})]


@pytest.mark.parametrize(
    "raw",
    [
        b"", b"   ", b"null", b"[]", b'"errors"', b"{}", b'{"errors":[]}', b'{"errors":{}}', b'{"errors":"x"}',
        b"not json", b"<html>502 Bad Gateway</html>", b'{"errors":[{"code":"A"}]} trailing',
        b'{"errors":[{"code":"A","detail":NaN}]}', b'{"errors":[{"code":"A","detail":Infinity}]}',
        b'{"errors":[{"code":"A","message":"\x01"}]}', b"\xef\xbb\xbf{}", b"\xff\xfe", b"[" * 100000,
        b'{"errors":[{"code":"A","detail":' + b"[" * 5000 + b"]" * 5000 + b"}]}",
    ],
)
def test_undecodable_bodies_give_nothing(impl, raw):
    assert impl.module.decode_error_body(raw) == []


def _nested(levels: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    """An error body nested ``levels`` deep in all: three levels of envelope, the rest in ``detail``."""
    inner = levels - 3
    return b'{"errors":[{"code":"A","detail":' + opener * inner + closer * inner + b"}]}"


def test_body_depth_limit_is_the_same_on_every_python(impl):
    # 512 levels decode (any interpreter's JSON scanner manages that many), 513 do not, whatever the
    # interpreter's own recursion limits are.
    (deepest,) = impl.module.decode_error_body(_nested(512))
    detail = deepest.detail
    for _ in range(508):
        (detail,) = detail
    assert detail == []
    assert impl.module.decode_error_body(_nested(513)) == []
    assert impl.module.decode_error_body(_nested(513, b'{"a":', b"}")[:-3] + b"}]}") == []


def test_brackets_in_strings_do_not_count_toward_the_depth(impl):
    # JSON text: an escaped backslash, an escaped quote, then brackets - all inside the string.
    body = b'{"errors":[{"code":"A","message":"' + rb'\\\"' + b"[{" * 600 + b'"}]}'
    assert impl.module.decode_error_body(body) == [Diagnostic("A", '\\"' + "[{" * 600)]
    # Closers inside a string do not throw the walk off either (600 brackets in all: the walk runs).
    body = b'{"errors":[{"code":"A","message":"' + b"]" * 600 + b'","detail":' + b"[" * 100 + b"]" * 100 + b"}]}"
    assert impl.module.decode_error_body(body)[0].message == "]" * 600


def test_surrounding_json_whitespace_is_fine(impl):
    assert impl.module.decode_error_body(b' \r\n\t{"errors":[{"code":"A"}]}\n') == [Diagnostic("A")]


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bytes_like_bodies(impl, kind):
    assert impl.module.decode_error_body(kind(b'{"errors":[{"code":"A"}]}')) == [Diagnostic("A")]


@pytest.mark.parametrize("bad", ['{"errors":[]}', None, 1, ["x"]])
def test_non_bytes_body_is_a_type_error(impl, bad):
    with pytest.raises(TypeError, match=f"^decode_error_body\\(\\) expects bytes, got {type(bad).__name__}$"):
        impl.module.decode_error_body(bad)


# -- format_diagnostic: Go's %v ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("detail", "text"),
    [
        (1000000, "1e+06"), (999999, "999999"), (100000, "100000"), (1234567, "1.234567e+06"),
        (123456.5, "123456.5"), (1e20, "1e+20"), (1e21, "1e+21"), (0.0001, "0.0001"), (0.00001, "1e-05"),
        (0.000123, "0.000123"), (1.5e-7, "1.5e-07"), (1.0, "1"), (-2.5, "-2.5"), (0, "0"), (-0.0, "-0"),
        (0.1, "0.1"), (1 / 3, "0.3333333333333333"), (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"), (1e100, "1e+100"),
        (12345678901234567890, "1.2345678901234567e+19"), (2**53 + 1, "9.007199254740992e+15"),
        (float("inf"), "+Inf"), (float("-inf"), "-Inf"), (float("nan"), "NaN"), (10**400, "+Inf"),
        (-(10**400), "-Inf"), (True, "true"), (False, "false"), ("text", "text"), ("", ""),
        ([], "[]"), ({}, "map[]"), ([1, "a", None, True], "[1 a <nil> true]"),
        ({"b": 1, "a": [2, {"z": None, "y": "s"}]}, "map[a:[2 map[y:s z:<nil>]] b:1]"),
        ({"B": 1, "a": 2, "_": 3}, "map[B:1 _:3 a:2]"), ((1, 2), "[1 2]"), ({2: "b", 10: "a"}, "map[2:b 10:a]"),
    ],
)
def test_detail_printed_like_go(impl, detail, text):
    assert impl.module.format_diagnostic(Diagnostic("CODE", "msg", detail)) == "CODE: msg; " + text


def test_no_detail_and_empty_message(impl):
    assert impl.module.format_diagnostic(Diagnostic("NAME_INVALID", "")) == "NAME_INVALID: "
    assert impl.module.format_diagnostic(Diagnostic("NAME_INVALID", "bad", None)) == "NAME_INVALID: bad"


def test_error_code_members_print_their_value(impl):
    assert impl.module.format_diagnostic(Diagnostic(ErrorCode.DENIED, "no")) == "DENIED: no"


def test_str_of_diagnostic_uses_the_dispatcher():
    assert str(Diagnostic("MANIFEST_UNKNOWN", "manifest unknown", {"Tag": "x"})) == (
        "MANIFEST_UNKNOWN: manifest unknown; map[Tag:x]"
    )


def test_cyclic_detail_is_refused(impl):
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="nests deeper than 10000 levels"):
        impl.module.format_diagnostic(Diagnostic("X", "", cyclic))


def test_format_diagnostic_needs_a_diagnostic(impl):
    with pytest.raises(TypeError, match="^format_diagnostic\\(\\) expects a Diagnostic, got str$"):
        impl.module.format_diagnostic("X: y")


# -- format_error ------------------------------------------------------------------------------------

URL = "https://registry.example/v2/library/ubuntu/manifests/latest"


def test_one_diagnostic_with_request_prefix(impl):
    text = impl.module.format_error("GET", URL, 404, [Diagnostic("MANIFEST_UNKNOWN", "manifest unknown")], b"{...}")
    assert text == f"GET {URL}: MANIFEST_UNKNOWN: manifest unknown"


def test_several_diagnostics(impl):
    diagnostics = [Diagnostic("DENIED", "a"), Diagnostic("UNAUTHORIZED", "b", {"k": 1})]
    assert impl.module.format_error(None, None, 403, diagnostics, b"") == (
        "multiple errors returned: DENIED: a; UNAUTHORIZED: b; map[k:1]"
    )


def test_no_diagnostics_empty_body(impl):
    assert impl.module.format_error("GET", URL, 502, [], b"") == f"GET {URL}: unexpected status code 502 Bad Gateway"


def test_no_diagnostics_head_request_hint(impl):
    assert impl.module.format_error("HEAD", URL, 404, [], b"") == (
        f"HEAD {URL}: unexpected status code 404 Not Found" + HEAD_HINT
    )
    assert (impl.module.format_error("HEAD", URL, 404, [], b"x")
            == f"HEAD {URL}: unexpected status code 404 Not Found: x")


def test_no_diagnostics_raw_body_verbatim(impl):
    text = impl.module.format_error("PUT", URL, 500, [], b"  oops\xff\n")
    assert text == f"PUT {URL}: unexpected status code 500 Internal Server Error:   oops\ufffd\n"


def test_unknown_status_has_empty_text_and_trailing_space(impl):
    assert impl.module.format_error(None, None, 499, [], b"") == "unexpected status code 499 "


def test_prefix_needs_both_method_and_url(impl):
    assert impl.module.format_error("GET", None, 418, [], b"") == "unexpected status code 418 I'm a teapot"
    assert impl.module.format_error(None, URL, 418, [], b"") == "unexpected status code 418 I'm a teapot"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1, URL, 404, [], b""), "method as str or None, got int"),
        (("GET", b"u", 404, [], b""), "url as str or None, got bytes"),
        (("GET", URL, 404, "x", b""), "a list of Diagnostic, got str"),
        (("GET", URL, 404, ["x"], b""), "a list of Diagnostic, got an item of type str"),
        (("GET", URL, 404, [], "body"), "body as bytes, got str"),
        (("GET", URL, "404", [], b""), "cannot be interpreted as an integer"),
    ],
)
def test_format_error_type_errors(impl, args, message):
    with pytest.raises(TypeError, match=message):
        impl.module.format_error(*args)


# -- status_text and is_temporary --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("code", "text"),
    [(100, "Continue"), (103, "Early Hints"), (200, "OK"), (203, "Non-Authoritative Information"),
     (226, "IM Used"), (306, ""), (308, "Permanent Redirect"), (407, "Proxy Authentication Required"),
     (413, "Request Entity Too Large"), (414, "Request URI Too Long"), (416, "Requested Range Not Satisfiable"),
     (418, "I'm a teapot"), (421, "Misdirected Request"), (422, "Unprocessable Entity"), (425, "Too Early"),
     (429, "Too Many Requests"), (451, "Unavailable For Legal Reasons"), (499, ""), (505, "HTTP Version Not Supported"),
     (511, "Network Authentication Required"), (522, ""), (0, ""), (-1, "")],
)
def test_status_text_is_gos_table(impl, code, text):
    assert impl.module.status_text(code) == text


def test_status_text_needs_an_integer(impl):
    with pytest.raises(TypeError):
        impl.module.status_text("200")


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_temporary_statuses_without_diagnostics(impl, status):
    assert impl.module.is_temporary(status, []) is True


@pytest.mark.parametrize("status", [400, 401, 403, 404, 499, 501, 522])
def test_other_statuses_are_not_temporary(impl, status):
    assert impl.module.is_temporary(status, []) is False


@pytest.mark.parametrize("codes", [["UNKNOWN"], ["TOOMANYREQUESTS"], ["BLOB_UPLOAD_INVALID", "UNAVAILABLE"],
                                   [ErrorCode.UNKNOWN, "UNAVAILABLE"]])
def test_temporary_codes(impl, codes):
    assert impl.module.is_temporary(400, [Diagnostic(c) for c in codes]) is True


def test_one_permanent_code_makes_it_permanent_whatever_the_status(impl):
    assert impl.module.is_temporary(503, [Diagnostic("UNKNOWN"), Diagnostic("DENIED")]) is False
    assert impl.module.is_temporary(503, [Diagnostic("unknown")]) is False


def test_is_temporary_type_errors(impl):
    with pytest.raises(TypeError, match="a list of Diagnostic, got an item of type int"):
        impl.module.is_temporary(500, [1])


def test_compiled_twin_module_name():
    diagnostics_c = pytest.importorskip("ocitransport._diagnostics_c")
    assert diagnostics_c.__name__ == "ocitransport._diagnostics_c"
