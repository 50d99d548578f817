"""Response heads: libcurl's raw header lines to (version, status, reason, headers), on both twins."""

from __future__ import annotations

import pytest

from ocitransport.exceptions import ProtocolError
from ocitransport.messages import Headers

MANIFEST_HEAD = [
    b"HTTP/1.1 200 OK\r\n",
    b"Content-Type: application/vnd.oci.image.manifest.v1+json\r\n",
    b"Content-Length: 1234\r\n",
    b"Docker-Content-Digest: sha256:" + b"a" * 64 + b"\r\n",
    b"Docker-Distribution-Api-Version: registry/2.0\r\n",
    b'Etag: "sha256:' + b"a" * 64 + b'"\r\n',
    b"X-Content-Type-Options: nosniff\r\n",
    b"Date: Tue, 04 Mar 2025 10:00:00 GMT\r\n",
    b"\r\n",
]


def test_registry_manifest_head(impl):
    version, status, reason, headers = impl.module.parse_head(MANIFEST_HEAD)
    assert (version, status, reason) == ("HTTP/1.1", 200, "OK")
    assert headers == [
        ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
        ("Content-Length", "1234"),
        ("Docker-Content-Digest", "sha256:" + "a" * 64),
        ("Docker-Distribution-Api-Version", "registry/2.0"),
        ("Etag", '"sha256:' + "a" * 64 + '"'),
        ("X-Content-Type-Options", "nosniff"),
        ("Date", "Tue, 04 Mar 2025 10:00:00 GMT"),
    ]
    assert Headers._from_list(headers)["content-length"] == "1234"


def test_tuple_input_and_bare_newlines(impl):
    assert impl.module.parse_head((b"HTTP/1.0 404 Not Found\n", b"Server: x\n", b"\n")) == (
        "HTTP/1.0", 404, "Not Found", [("Server", "x")]
    )


def test_http2_status_line_without_reason(impl):
    head = [b"HTTP/2 200 \r\n", b"content-type: application/json\r\n", b"\r\n"]
    assert impl.module.parse_head(head) == ("HTTP/2", 200, "", [("content-type", "application/json")])
    assert impl.module.parse_head([b"HTTP/3 204\r\n", b"\r\n"]) == ("HTTP/3", 204, "", [])


def test_reason_phrase_keeps_inner_spaces_and_colons(impl):
    head = [b"HTTP/1.1 500   Internal  Error: boom \r\n", b"\r\n"]
    assert impl.module.parse_head(head)[1:3] == (500, "Internal  Error: boom")


def test_100_continue_then_final_head(impl):
    head = [
        b"HTTP/1.1 100 Continue\r\n", b"\r\n",
        b"HTTP/1.1 201 Created\r\n", b"Location: /v2/a/blobs/sha256:1\r\n", b"\r\n",
    ]
    assert impl.module.parse_head(head) == ("HTTP/1.1", 201, "Created", [("Location", "/v2/a/blobs/sha256:1")])


def test_early_hints_headers_do_not_leak_into_final_head(impl):
    head = [
        b"HTTP/1.1 103 Early Hints\r\n", b"Link: </style.css>; rel=preload\r\n", b"\r\n",
        b"HTTP/1.1 200 OK\r\n", b"Content-Length: 0\r\n", b"\r\n",
    ]
    assert impl.module.parse_head(head)[3] == [("Content-Length", "0")]


def test_proxy_connect_head_then_real_head(impl):
    head = [
        b"HTTP/1.1 200 Connection established\r\n", b"Proxy-Agent: squid\r\n", b"\r\n",
        b"HTTP/2 401 \r\n", b'www-authenticate: Bearer realm="https://auth"\r\n', b"\r\n",
    ]
    version, status, reason, headers = impl.module.parse_head(head)
    assert (version, status, reason) == ("HTTP/2", 401, "")
    assert headers == [("www-authenticate", 'Bearer realm="https://auth"')]


def test_last_head_returned_even_without_blank_line(impl):
    head = [b"HTTP/1.1 100 Continue\r\n", b"\r\n", b"HTTP/1.1 200 OK\r\n", b"A: 1\r\n"]
    assert impl.module.parse_head(head) == ("HTTP/1.1", 200, "OK", [("A", "1")])


def test_duplicate_headers_kept_in_order(impl):
    head = [b"HTTP/1.1 401 Unauthorized\r\n", b"WWW-Authenticate: Basic realm=x\r\n",
            b"Set-Cookie: a=1\r\n", b"WWW-Authenticate: Bearer realm=y\r\n", b"\r\n"]
    headers = impl.module.parse_head(head)[3]
    assert headers == [("WWW-Authenticate", "Basic realm=x"), ("Set-Cookie", "a=1"),
                       ("WWW-Authenticate", "Bearer realm=y")]
    assert Headers._from_list(headers).get_all("www-authenticate") == ["Basic realm=x", "Bearer realm=y"]


def test_obsolete_line_folding(impl):
    head = [b"HTTP/1.1 200 OK\r\n", b"X-Long: first\r\n", b"   second  \r\n", b"\tthird\r\n",
            b"X-Empty:\r\n", b" now set\r\n", b"Y: y\r\n", b"  \r\n", b"\r\n"]
    assert impl.module.parse_head(head)[3] == [("X-Long", "first second third"), ("X-Empty", "now set"), ("Y", "y")]


def test_folded_line_before_any_header_is_ignored(impl):
    assert impl.module.parse_head([b"HTTP/1.1 200 OK\r\n", b" orphan\r\n", b"\r\n"])[3] == []


def test_trailers_after_the_head_are_ignored(impl):
    head = [b"HTTP/1.1 200 OK\r\n", b"Transfer-Encoding: chunked\r\n", b"Trailer: Digest\r\n", b"\r\n",
            b"Digest: sha-256=abc\r\n", b"\r\n"]
    assert impl.module.parse_head(head)[3] == [("Transfer-Encoding", "chunked"), ("Trailer", "Digest")]


def test_names_as_sent_values_stripped(impl):
    head = [b"HTTP/1.1 200 OK\r\n", b"x-MiXeD:\t  v a l  \t\r\n", b"Odd :x\r\n", b"Empty:\r\n",
            b"Colon: a:b:c\r\n", b"\r\n"]
    assert impl.module.parse_head(head)[3] == [("x-MiXeD", "v a l"), ("Odd ", "x"), ("Empty", ""),
                                               ("Colon", "a:b:c")]


def test_lines_without_colon_or_name_are_skipped(impl):
    head = [b"HTTP/1.1 200 OK\r\n", b"garbage line\r\n", b": no name\r\n", b"\x0b: vt name\r\n", b"A: 1\r\n",
            b"\r\n"]
    assert impl.module.parse_head(head)[3] == [("\x0b", "vt name"), ("A", "1")]


def test_garbage_before_the_status_line_is_ignored(impl):
    head = [b"\r\n", b"junk: 1\r\n", b"HTTP/1.1 200 OK\r\n", b"\r\n"]
    assert impl.module.parse_head(head) == ("HTTP/1.1", 200, "OK", [])


def test_latin1_decoding(impl):
    head = [b"HTTP/1.1 200 \xc4rger\r\n", b"X-Name: caf\xe9 \xff\r\n", b"\r\n"]
    _, _, reason, headers = impl.module.parse_head(head)
    assert reason == "\xc4rger"
    assert headers == [("X-Name", "caf\xe9 \xff")]


@pytest.mark.parametrize("lines", [[], [b"\r\n"], [b"Content-Type: x\r\n", b"\r\n"], [b"http/1.1 200 OK\r\n"]])
def test_no_status_line_raises(impl, lines):
    with pytest.raises(ProtocolError, match="^no HTTP status line in the response head$"):
        impl.module.parse_head(lines)


@pytest.mark.parametrize("line", [b"HTTP/1.1\r\n", b"HTTP/1.1 \r\n", b"HTTP/1.1 20 OK\r\n", b"HTTP/1.1 2000 OK\r\n",
                                  b"HTTP/1.1 2x0 OK\r\n", b"HTTP/1.1 200OK\r\n", b"HTTP/"])
def test_malformed_status_line_raises(impl, line):
    with pytest.raises(ProtocolError) as info:
        impl.module.parse_head([line, b"\r\n"])
    shown = line.rstrip(b"\r\n").decode("latin-1")
    assert str(info.value) == f"malformed HTTP status line: {shown!r}"


def test_malformed_interim_status_line_raises(impl):
    with pytest.raises(ProtocolError):
        impl.module.parse_head([b"HTTP/1.1 1xx Continue\r\n", b"\r\n", b"HTTP/1.1 200 OK\r\n", b"\r\n"])


def test_malformed_message_is_truncated(impl):
    with pytest.raises(ProtocolError) as info:
        impl.module.parse_head([b"HTTP/1.1 " + b"x" * 500])
    assert len(str(info.value)) < 240


@pytest.mark.parametrize("lines", [None, b"HTTP/1.1 200 OK\r\n", "HTTP/1.1 200 OK", iter([b"HTTP/1.1 200 OK\r\n"])])
def test_non_sequence_input_raises_type_error(impl, lines):
    with pytest.raises(TypeError, match="expects a list or tuple of bytes"):
        impl.module.parse_head(lines)


@pytest.mark.parametrize("item", ["HTTP/1.1 200 OK", bytearray(b"A: 1\r\n"), memoryview(b"A: 1\r\n"), 1, None])
def test_non_bytes_line_raises_type_error(impl, item):
    with pytest.raises(TypeError, match=f"expects bytes lines, got {type(item).__name__}$"):
        impl.module.parse_head([b"HTTP/1.1 200 OK\r\n", item, b"\r\n"])


def test_compiled_twin_module_name():
    heads_c = pytest.importorskip("ocitransport._heads_c")
    assert heads_c.__name__ == "ocitransport._heads_c"


@pytest.mark.parametrize(("line", "interim"), [
    (b"HTTP/1.1 100 Continue\r\n", True),
    (b"HTTP/1.1 103 Early Hints\r\n", True),
    (b"HTTP/2 100\r\n", True),
    (b"HTTP/1.1\t199\t\r\n", True),
    (b"HTTP/1.1 101 Switching Protocols\r\n", False),  # final: the connection changes protocol
    (b"HTTP/1.1 200 OK\r\n", False),
    (b"HTTP/1.0 200 Connection established\r\n", False),
    (b"HTTP/1.1 1xx Continue\r\n", False),  # malformed: final, and parse_head raises for it
    (b"HTTP/1.1 1000 Continue\r\n", False),
    (b"HTTP/1.1 10 Continue\r\n", False),
    (b"HTTP/1.1\r\n", False),
    (b"Content-Type: text/plain\r\n", False),
    (b"\r\n", False),
    (b"", False),
])
def test_is_interim_follows_the_status_line_rules(impl, line, interim):
    assert impl.module.is_interim(line) is interim


@pytest.mark.parametrize("item", ["HTTP/1.1 100 Continue", bytearray(b"HTTP/1.1 100 Continue\r\n"), None, 1])
def test_is_interim_non_bytes_raises_type_error(impl, item):
    with pytest.raises(TypeError, match=f"is_interim\\(\\) expects bytes, got {type(item).__name__}$"):
        impl.module.is_interim(item)
