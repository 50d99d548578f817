"""Unit tests of the transport's pure pieces: realm guard, host matching, token parsing, Retry-After,
backoff arithmetic, error formats. Network behaviour is tested against real servers elsewhere."""

from __future__ import annotations

import email.utils
import time

import pytest

from ocitransport.exceptions import BodyTooLarge, ConnectError, ReadError, TLSError
from ocitransport.messages import Request, Response
from ocitransport.roundtrip import RoundTripper
from ocitransport.transport import Backoff, Error, ErrorCode, TokenError, check_error
from ocitransport.transport.basic import HostMatch
from ocitransport.transport.bearer import parse_token, validate_realm
from ocitransport.transport.retry import REMOTE_BACKOFF, is_retryable, parse_retry_after


class TestValidateRealm:
    def test_https_is_allowed(self) -> None:
        validate_realm("https://auth.docker.io/token", "index.docker.io", insecure=False)

    def test_http_refused_for_a_secure_registry(self) -> None:
        with pytest.raises(TokenError, match='realm scheme "http" not allowed for a secure registry'):
            validate_realm("http://auth.example/token", "r.example", insecure=False)

    def test_http_allowed_for_an_insecure_registry(self) -> None:
        validate_realm("http://auth.example/token", "r.example", insecure=True)

    @pytest.mark.parametrize("scheme", ["ftp", "file", "gopher"])
    def test_other_schemes_refused(self, scheme: str) -> None:
        with pytest.raises(TokenError, match=f'realm scheme "{scheme}" not allowed; must be https'):
            validate_realm(f"{scheme}://auth.example/token", "r.example", insecure=True)

    @pytest.mark.parametrize("host", ["169.254.169.254", "127.0.0.1", "10.1.2.3", "192.168.0.1",
                                      "172.16.5.4", "0.0.0.0", "[::1]", "[fd00::1]", "[::]", "[fe80::1]"])
    def test_private_literals_refused(self, host: str) -> None:
        with pytest.raises(TokenError, match="is a private or link-local address"):
            validate_realm(f"https://{host}/token", "r.example", insecure=False)

    def test_same_host_and_port_is_allowed_even_when_private(self) -> None:
        validate_realm("http://127.0.0.1:5000/token", "127.0.0.1:5000", insecure=True)

    def test_same_host_other_port_is_allowed(self) -> None:
        # The token server next to a local registry: the same machine, so no SSRF step.
        validate_realm("http://127.0.0.1:5001/token", "127.0.0.1:5000", insecure=True)

    def test_other_private_host_is_refused(self) -> None:
        with pytest.raises(TokenError, match="private or link-local"):
            validate_realm("http://127.0.0.2:5001/token", "127.0.0.1:5000", insecure=True)

    def test_dns_names_are_not_resolved(self) -> None:
        validate_realm("https://localhost/token", "r.example", insecure=False)


class TestHostMatch:
    def test_default_port_matches_the_bare_name(self) -> None:
        m = HostMatch("r.example")
        assert m("https://r.example/v2/")
        assert m("https://r.example:443/v2/")
        assert m("http://r.example/v2/")
        assert not m("https://r.example:5000/v2/")
        assert not m("https://evil.example/v2/")

    def test_explicit_port_must_match(self) -> None:
        m = HostMatch("127.0.0.1:5000", "http")
        assert m("http://127.0.0.1:5000/v2/x")
        assert not m("http://127.0.0.1:5001/v2/x")
        assert not m("http://127.0.0.1/v2/x")

    def test_case_and_userinfo(self) -> None:
        m = HostMatch("R.Example:5000")
        assert m("https://user@r.example:5000/v2/")
        assert not m("https://r.example.evil:5000/v2/")

    def test_ipv6(self) -> None:
        m = HostMatch("[::1]:5000", "http")
        assert m("http://[::1]:5000/v2/")
        assert not m("http://[::2]:5000/v2/")


class TestParseToken:
    def test_access_token_wins(self) -> None:
        tok = parse_token(b'{"token":"a","access_token":"b","expires_in":300}', "r")
        assert tok.value == "b" and tok.expires_in == 300

    def test_token_only_and_default_expiry(self) -> None:
        tok = parse_token(b'{"token":"a"}', "r")
        assert tok.value == "a" and tok.expires_in == 0

    @pytest.mark.parametrize("raw", [b'"300"', b"300.5", b'"abc"', b"null", b"-5", b"true"])
    def test_odd_expires_in_never_fails(self, raw: bytes) -> None:
        tok = parse_token(b'{"token":"a","expires_in":' + raw + b"}", "r")
        assert tok.value == "a"
        assert tok.expires_in >= 0

    def test_refresh_token(self) -> None:
        assert parse_token(b'{"token":"a","refresh_token":"r1"}', "r").refresh_token == "r1"

    def test_no_token_error_hides_secrets(self) -> None:
        with pytest.raises(TokenError) as info:
            parse_token(b'{"refresh_token":"SECRETVALUE"}', "r.example")
        assert "no token in bearer response from r.example" in str(info.value)
        assert "SECRETVALUE" not in str(info.value)

    def test_not_json(self) -> None:
        with pytest.raises(TokenError, match="not JSON"):
            parse_token(b"<html>", "r")

    def test_repr_hides_tokens(self) -> None:
        tok = parse_token(b'{"token":"SECRETVALUE","refresh_token":"OTHERSECRET"}', "r")
        assert "SECRETVALUE" not in repr(tok) and "OTHERSECRET" not in repr(tok)


class TestRetryArithmetic:
    def test_remote_defaults(self) -> None:
        delays = REMOTE_BACKOFF.delays()
        assert len(delays) == 2
        assert 1.0 <= delays[0] <= 1.1
        assert 3.0 <= delays[1] <= 3.3

    def test_zero_steps_still_means_one_attempt(self) -> None:
        assert Backoff(steps=0).delays() == []

    def test_cap(self) -> None:
        assert Backoff(duration=1, factor=10, jitter=0, steps=4, cap=5).delays() == [1, 5, 5]

    def test_delay_past_steps(self) -> None:
        """``delay(n)`` is ``delays()[n]``, and goes on past ``steps`` (outer loops count their own)."""
        backoff = Backoff(duration=0.5, factor=2, jitter=0, steps=2, cap=8)
        assert backoff.delays() == [backoff.delay(0)] == [0.5]
        assert [backoff.delay(n) for n in range(6)] == [0.5, 1, 2, 4, 8, 8]

    def test_retry_after_seconds_and_date(self) -> None:
        assert parse_retry_after("7") == 7.0
        now = time.time()
        date = email.utils.formatdate(now + 30, usegmt=True)
        assert 28 <= parse_retry_after(date, now=now) <= 31  # type: ignore[operator]
        assert parse_retry_after("garbage") is None
        assert parse_retry_after(None) is None

    def test_predicate(self) -> None:
        assert is_retryable(ReadError("reset"))
        assert is_retryable(ConnectError("refused"))
        assert not is_retryable(TLSError("bad cert"))
        assert not is_retryable(ValueError("x"))
        assert is_retryable(Error(503))
        assert not is_retryable(Error(404))


class TestCheckError:
    def _response(self, status: int, body: bytes, method: str = "GET") -> Response:
        req = Request(method, "https://r.example/v2/a/manifests/x?X-Amz-Signature=SECRET")
        return Response(status, {}, body, request=req)

    def test_ok(self) -> None:
        check_error(self._response(200, b""), 200)

    def test_one_diagnostic(self) -> None:
        body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
        with pytest.raises(Error) as info:
            check_error(self._response(404, body), 200)
        err = info.value
        assert err.status_code == 404
        assert err.errors[0].code == ErrorCode.MANIFEST_UNKNOWN
        assert str(err).startswith("GET https://r.example/v2/a/manifests/x?X-Amz-Signature=REDACTED: ")
        assert str(err).endswith("MANIFEST_UNKNOWN: manifest unknown")
        assert "SECRET" not in str(err)
        assert not err.temporary()

    def test_raw_body_fallback(self) -> None:
        with pytest.raises(Error, match="unexpected status code 502 Bad Gateway: upstream down"):
            check_error(self._response(502, b"upstream down"), 200)

    def test_head_has_no_body(self) -> None:
        with pytest.raises(Error, match=r"\(HEAD responses have no body, use GET for details\)"):
            check_error(self._response(404, b"", "HEAD"), 200)

    def test_oversized_body(self) -> None:
        with pytest.raises(BodyTooLarge, match="body exceeds 65536 byte limit"):
            check_error(self._response(500, b"x" * 70000), 200)

    def test_pickles(self) -> None:
        import pickle

        body = b'{"errors":[{"code":"DENIED","message":"no"}]}'
        with pytest.raises(Error) as info:
            check_error(self._response(403, body), 200)
        again = pickle.loads(pickle.dumps(info.value))
        assert str(again) == str(info.value) and again.status_code == 403


class TestSetHeader:
    def test_copies_every_slot_of_request(self) -> None:
        # set_header builds a Request slot by slot: a new slot in Request must be added there too.
        from ocitransport.transport.simple import REQUEST_SLOTS

        assert set(REQUEST_SLOTS) == set(Request.__slots__)

    def test_replaces_any_case_and_leaves_the_original(self) -> None:
        import io

        from ocitransport.messages import Timeout
        from ocitransport.transport.simple import set_header

        body = io.BytesIO(b"0123456789")
        body.seek(3)
        req = Request("PUT", "https://r.example/v2/x", [("authorization", "old"), ("X-A", "1"),
                                                       ("AUTHORIZATION", "older")], body,
                      timeout=Timeout(connect=1), stream=True, extensions={"sha256": True})
        new = set_header(req, "Authorization", "Bearer t")
        assert new.headers.items() == [("X-A", "1"), ("Authorization", "Bearer t")]
        assert req.headers.get_all("authorization") == ["old", "older"]
        for slot in ("method", "url", "body", "timeout", "stream", "extensions", "_body_start"):
            assert getattr(new, slot) == getattr(req, slot), slot
        assert new.replayable and new._body_start == 3
        assert set_header(Request("GET", "http://h/"), "User-Agent", "ua").headers.items() == [("User-Agent", "ua")]


class TestLayersOnRequests:
    """The request-rewriting layers over a recording round-tripper (no network needed)."""

    class Recorder(RoundTripper):
        def __init__(self) -> None:
            self.seen: list[Request] = []

        def round_trip(self, request: Request) -> Response:
            self.seen.append(request)
            return Response(200, {}, b"", request=request)

    def test_user_agent_added_once_and_replaced(self) -> None:
        from ocitransport.transport.simple import PRODUCT, UserAgent

        rec = self.Recorder()
        rt = UserAgent(rec, "mytool/1")
        req = Request("GET", "http://h/", {"user-agent": "other"})
        rt.round_trip(req)
        assert rec.seen[-1].headers.get_all("User-Agent") == [f"mytool/1 {PRODUCT}"]
        assert req.headers.get_all("user-agent") == ["other"]  # the caller's request is untouched
        already = Request("GET", "http://h/", {"User-Agent": f"mytool/1 {PRODUCT}"})
        rt.round_trip(already)
        assert rec.seen[-1] is already  # nothing to change: no copy

    def test_basic_follows_rotating_credentials(self) -> None:
        import base64

        from ocitransport.authn import AuthConfig
        from ocitransport.transport.basic import BasicAuth

        class Rotating:
            def __init__(self) -> None:
                self.config = AuthConfig(username="u", password="one")

            def authorization(self) -> AuthConfig:
                return self.config

        auth = Rotating()
        rec = self.Recorder()
        rt = BasicAuth(rec, auth, "r.example")  # type: ignore[arg-type]
        rt.round_trip(Request("GET", "https://r.example/v2/"))
        rt.round_trip(Request("GET", "https://r.example/v2/"))
        auth.config = AuthConfig(username="u", password="two")
        rt.round_trip(Request("GET", "https://r.example/v2/"))
        rt.round_trip(Request("GET", "https://other.example/v2/"))
        sent = [r.headers.get("authorization") for r in rec.seen]
        one = "Basic " + base64.b64encode(b"u:one").decode()
        two = "Basic " + base64.b64encode(b"u:two").decode()
        assert sent == [one, one, two, None]

    def test_host_match_table_is_bounded_and_still_right(self) -> None:
        m = HostMatch("r.example")
        for i in range(HostMatch.MAX_SEEN + 10):
            assert not m(f"https://h{i}.example/v2/")
        assert m("https://r.example/v2/a") and m("https://R.EXAMPLE:443/v2/b")
        assert not m("https://r.example:444/v2/")
        assert len(m._seen) == HostMatch.MAX_SEEN


class TestScopeSet:
    """Registries echo a scope's actions in their own order; the token cache must not see a new grant."""

    def test_action_order_and_list_order_do_not_matter(self) -> None:
        from ocitransport.transport.bearer import _scope_set

        assert _scope_set(["repository:a:push,pull", "registry:catalog:*"]) == _scope_set(
            ["registry:catalog:*", "repository:a:pull,push"])

    def test_different_grants_differ(self) -> None:
        from ocitransport.transport.bearer import _scope_set

        assert _scope_set(["repository:a:pull"]) != _scope_set(["repository:a:pull,push"])
        assert _scope_set(["repository:a:pull"]) != _scope_set(["repository:b:pull"])
        assert _scope_set(["repository:host:5000/a:pull"]) == _scope_set(["repository:host:5000/a:pull"])
        assert _scope_set(["opaque"]) == _scope_set(["opaque"])


class TestRejectedTokenWithStreamedBody:
    """A token the registry rejects early, on a request whose body cannot be sent again."""

    class Registry(RoundTripper):
        """Token endpoint and registry in one: tokens ``t1``, ``t2``...; ``t1`` is rejected."""

        def __init__(self) -> None:
            self.issued = 0
            self.sent: list[str | None] = []

        def round_trip(self, request: Request) -> Response:
            if request.url.startswith("https://auth.example/"):
                self.issued += 1
                return Response(200, {}, f'{{"token": "t{self.issued}", "expires_in": 300}}'.encode(),
                                request=request)
            self.sent.append(request.headers.get("authorization"))
            if request.headers.get("authorization") == "Bearer t1":
                challenge = ('Bearer realm="https://auth.example/token",service="r",'
                             'scope="repository:a:pull,push",error="invalid_token"')
                return Response(401, {"WWW-Authenticate": challenge}, b"{}", request=request)
            return Response(201, {}, b"", request=request)

    def test_caller_gets_the_401_and_the_next_attempt_a_new_token(self) -> None:
        from ocitransport._values import Challenge
        from ocitransport.authn import Basic
        from ocitransport.transport.bearer import BearerAuth

        reg = self.Registry()
        challenge = Challenge("bearer", {"realm": "https://auth.example/token", "service": "r"})
        rt = BearerAuth(reg, registry="r.example", auth=Basic("u", "p"), challenge=challenge,
                        scopes=["repository:a:push,pull"])
        streamed = Request("PUT", "https://r.example/v2/a/blobs/uploads/1", body=iter([b"x"]))
        assert not streamed.replayable
        assert rt.round_trip(streamed).status == 401  # not replayed: the body is gone
        again = Request("PUT", "https://r.example/v2/a/blobs/uploads/1", body=iter([b"x"]))
        assert rt.round_trip(again).status == 201
        assert reg.sent == ["Bearer t1", "Bearer t2"] and reg.issued == 2
        # A replayable request is retried by the layer itself, once, with the token it holds.
        assert rt.round_trip(Request("PUT", "https://r.example/v2/a/manifests/x", body=b"{}")).status == 201
        assert reg.issued == 2
