"""A token server of ours for the registry's Bearer auth (distribution token spec), on 127.0.0.1.

``GET /token?service=S&scope=...&scope=...[&account=..][&offline_token=true]`` with Basic credentials (or
anonymous, when allowed) and ``POST /token`` with a form (``grant_type=password`` with ``username`` and
``password``, or ``grant_type=refresh_token`` with ``refresh_token``; plus ``client_id``, ``service``
and a space-separated ``scope``) answer JSON with ``token`` and/or ``access_token``, ``expires_in``,
``issued_at`` and, for ``offline_token=true`` or POST grants, ``refresh_token``.

Tokens are real JWTs (ES256 with a raw R||S signature, or RS256), their header naming the signing
certificate by ``x5c`` or by ``kid`` (libtrust key id); ``signing_cert_file`` is the PEM the registry
needs as ``rootcertbundle``. Access is granted per user from an ACL: a dict from a repository-name glob
(``fnmatch``) to actions (``"*"`` = any); a key ``"registry:catalog"`` grants ``registry:catalog:*``.

Test knobs (all reset by :meth:`TokenServer.reset`): ``token_lifetime``, ``expire_early`` (``exp`` 60 s
before the nominal lifetime so that the registry's 60 s leeway ends exactly at ``expires_in``),
``token_fields``, ``anonymous``, ``users``, ``acl``, ``get_status`` / ``post_status`` (answer that status
instead of a token, e.g. 404 or 405 on POST so clients fall back to GET, or 500), ``delay`` (seconds to
wait before answering, to make concurrent token requests overlap), ``claimed_lifetime`` (the
``expires_in`` answered when it should differ from the real one). Observations: ``issued``,
``issued_by[(grant, frozenset(scopes))]``, ``requests`` (never a password or refresh token), and
``issued_tokens`` (every access and refresh token handed out, for tests that prove none leaks).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import fnmatch
import hashlib
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.servers import process

#: The registry's leeway on ``exp`` and ``nbf`` (distribution 2.8).
REGISTRY_LEEWAY = 60

ACL = dict[str, list[str]]
#: The default ACL of anonymous requests: pull on every repository.
PULL_EVERYTHING: ACL = {"*": ["pull"]}
Algorithm = Literal["ES256", "RS256"]
KeyReference = Literal["x5c", "kid"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def libtrust_key_id(public_key: Any) -> str:
    """The libtrust key id of a public key: base32 of the first 240 bits of SHA-256(SPKI DER), in 4s."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a JWT, unverified (for assertions in tests)."""
    head, body, _sig = token.split(".")

    def part(segment: str) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        return value

    return part(head), part(body)


@dataclass(frozen=True)
class Scope:
    """One requested scope ``type:name:actions``."""

    type: str
    name: str
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        parts = text.split(":")
        if len(parts) < 3:
            return None
        return cls(parts[0], ":".join(parts[1:-1]), tuple(a for a in parts[-1].split(",") if a))


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server saw; secrets are never recorded."""

    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    has_credentials: bool
    username: str | None
    grant: str
    scopes: tuple[str, ...]
    status: int
    headers: dict[str, str] = field(default_factory=dict)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_REDACTED_FORM_FIELDS = {"password", "refresh_token"}


class TokenServer:
    """A threaded token server on 127.0.0.1; start with :meth:`start` or ``with TokenServer() as ts``."""

    def __init__(
        self,
        *,
        service: str = "registry.test",
        issuer: str = "token-server.test",
        users: dict[str, str] | None = None,
        acl: dict[str, ACL] | None = None,
        anonymous: ACL | None = PULL_EVERYTHING,
        algorithm: Algorithm = "ES256",
        key_reference: KeyReference = "x5c",
        token_lifetime: int = 300,
        expire_early: bool = False,
        token_fields: tuple[str, ...] = ("token", "access_token"),
        ssl_context: ssl.SSLContext | None = None,
        directory: Path | None = None,
    ) -> None:
        """Configure (not start) a token server.

        ``users`` maps user names to passwords (default: ``alice`` with a random password and full
        access, ``bob`` with a random password and pull-only access); ``acl`` maps user names to ACLs;
        ``anonymous`` is the ACL of requests without credentials (``None``: anonymous requests get 401;
        default: pull on everything). ``directory`` receives ``signing.pem`` (default: a temp dir).
        """
        self.service = service
        self.issuer = issuer
        self.algorithm: Algorithm = algorithm
        self.key_reference: KeyReference = key_reference
        if users is None:
            users = {"alice": secrets.token_urlsafe(12), "bob": secrets.token_urlsafe(12)}
        if acl is None:
            acl = {"alice": {"*": ["*"], "registry:catalog": ["*"]}, "bob": {"*": ["pull"]}}
        self._defaults: dict[str, Any] = {
            "users": users, "acl": acl,
            "anonymous": anonymous,
            "token_lifetime": token_lifetime, "expire_early": expire_early, "token_fields": token_fields,
            "get_status": None, "post_status": None, "delay": 0.0, "claimed_lifetime": None,
        }
        self.users: dict[str, str] = {}
        self.acl: dict[str, ACL] = {}
        self.anonymous: ACL | None = None
        self.token_lifetime = token_lifetime
        self.expire_early = expire_early
        self.token_fields = token_fields
        self.get_status: int | None = None
        self.post_status: int | None = None
        self.delay = 0.0
        #: When set, the ``expires_in`` the server answers instead of ``token_lifetime``: a server that
        #: overstates its tokens' life, so that the registry rejects tokens the client thinks fresh.
        self.claimed_lifetime: int | None = None
        self._lock = threading.RLock()
        self.issued = 0
        self.issued_by: Counter[tuple[str, frozenset[str]]] = Counter()
        self.requests: list[TokenRequest] = []
        self._refresh_tokens: dict[str, str] = {}
        self.reset()

        self._ssl_context = ssl_context
        self._owned_dir = None
        if directory is None:
            import tempfile
            self._owned_dir = tempfile.TemporaryDirectory(prefix="token-server-")
            directory = Path(self._owned_dir.name)
        self.directory = directory
        self._key, self._cert = self._make_signing_key(algorithm)
        self.signing_cert_file = directory / "signing.pem"
        self.signing_cert_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self.key_id = libtrust_key_id(self._cert.public_key())
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ------------------------------------------------------------------ configuration and observation

    @property
    def username(self) -> str:
        """The first configured user (``alice`` by default): full access."""
        return next(iter(self.users))

    @property
    def password(self) -> str:
        return self.users[self.username]

    def reset(self) -> None:
        """Forget every observation and issued refresh token; restore every knob to its initial value."""
        with self._lock:
            for name, value in self._defaults.items():
                setattr(self, name, copy.deepcopy(value))
            self.issued = 0
            self.issued_by = Counter()
            self.requests = []
            self._refresh_tokens = {}
            self.issued_tokens: list[str] = []

    def count(self, grant: str | None = None, scopes: set[str] | frozenset[str] | None = None) -> int:
        """How many tokens were issued, optionally only for a grant (``get``, ``password``,
        ``refresh_token``) and/or exactly this scope set."""
        with self._lock:
            return sum(n for (g, s), n in self.issued_by.items()
                       if (grant is None or g == grant) and (scopes is None or s == frozenset(scopes)))

    def requests_snapshot(self) -> list[TokenRequest]:
        with self._lock:
            return list(self.requests)

    # ------------------------------------------------------------------ tokens

    def _make_signing_key(self, algorithm: Algorithm) -> tuple[Any, x509.Certificate]:
        key: Any
        if algorithm == "ES256":
            key = ec.generate_private_key(ec.SECP256R1())
        elif algorithm == "RS256":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:  # pragma: no cover - guarded by the type
            raise ValueError(f"unsupported algorithm {algorithm!r}")
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{self.issuer} signing key")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    def _sign(self, data: bytes) -> bytes:
        if self.algorithm == "ES256":
            r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return bytes(self._key.sign(data, padding.PKCS1v15(), hashes.SHA256()))

    def grant(self, username: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        """The ``access`` claim for ``username`` (``None``: anonymous) asking for ``scopes``."""
        with self._lock:
            acl = self.anonymous if username is None else self.acl.get(username, {})
        access: list[dict[str, Any]] = []
        for text in scopes:
            scope = Scope.parse(text)
            if scope is None or acl is None:
                continue
            key = scope.name if scope.type == "repository" else f"{scope.type}:{scope.name}"
            allowed: set[str] = set()
            for pattern, actions in acl.items():
                if scope.type != "repository" and not pattern.startswith(f"{scope.type}:"):
                    continue
                if scope.type == "repository" and pattern.startswith("registry:"):
                    continue
                if fnmatch.fnmatchcase(key, pattern):
                    allowed.update(actions)
            granted = list(scope.actions) if "*" in allowed else [a for a in scope.actions if a in allowed]
            if granted:
                access.append({"type": scope.type, "name": scope.name, "actions": granted})
        return access

    def issue_token(self, username: str | None, scopes: list[str], lifetime: int | None = None,
                    access: list[dict[str, Any]] | None = None) -> str:
        """A signed JWT for ``username`` (``None``: anonymous) with what the ACL grants of ``scopes``
        (or exactly ``access`` when given); ``exp`` honours ``token_lifetime`` and ``expire_early``."""
        with self._lock:
            lifetime = self.token_lifetime if lifetime is None else lifetime
            early = REGISTRY_LEEWAY if self.expire_early else 0
        now = int(time.time())
        header: dict[str, Any] = {"typ": "JWT", "alg": self.algorithm}
        if self.key_reference == "x5c":
            header["x5c"] = [base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()]
        else:
            header["kid"] = self.key_id
        claims = {
            "iss": self.issuer, "sub": username or "", "aud": self.service,
            "exp": now + lifetime - early, "nbf": now - 1, "iat": now, "jti": secrets.token_hex(12),
            "access": self.grant(username, scopes) if access is None else access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        return f"{signing_input}.{_b64url(self._sign(signing_input.encode('ascii')))}"

    def _answer(self, grant: str, username: str | None, scopes: list[str], refresh: bool) -> dict[str, Any]:
        token = self.issue_token(username, scopes)
        with self._lock:
            body: dict[str, Any] = dict.fromkeys(self.token_fields, token)
            body["expires_in"] = self.token_lifetime if self.claimed_lifetime is None else self.claimed_lifetime
            body["issued_at"] = dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")
            if refresh and username is not None:
                refresh_token = secrets.token_urlsafe(24)
                self._refresh_tokens[refresh_token] = username
                body["refresh_token"] = refresh_token
                self.issued_tokens.append(refresh_token)
            self.issued_tokens.append(token)
            self.issued += 1
            self.issued_by[(grant, frozenset(scopes))] += 1
        return body

    def _check_password(self, username: str, password: str) -> None:
        with self._lock:
            expected = self.users.get(username)
        if expected is None or not secrets.compare_digest(expected.encode(), password.encode()):
            raise _Refused(401, "invalid username or password")

    def _check_service(self, service: str | None) -> None:
        if service is not None and service != self.service:
            raise _Refused(400, f"unknown service {service!r}")

    def handle_get(self, query: dict[str, list[str]], basic: tuple[str, str] | None) -> dict[str, Any]:
        """Answer a GET: Basic credentials (or anonymous) for the requested scopes."""
        self._check_service(query.get("service", [None])[0])
        scopes = [s for value in query.get("scope", []) for s in value.split()]
        username: str | None = None
        if basic is not None:
            self._check_password(*basic)
            username = basic[0]
        elif self.anonymous is None:
            raise _Refused(401, "authentication required")
        offline = query.get("offline_token", ["false"])[0].lower() == "true"
        return self._answer("get", username, scopes, refresh=offline)

    def handle_post(self, form: dict[str, list[str]]) -> dict[str, Any]:
        """Answer a POST form: ``grant_type=password`` or ``grant_type=refresh_token``."""
        def one(name: str) -> str | None:
            return form.get(name, [None])[0]

        self._check_service(one("service"))
        scopes = (one("scope") or "").split()
        grant = one("grant_type")
        if grant == "password":
            username, password = one("username"), one("password")
            if not username or password is None:
                raise _Refused(400, "username and password are required")
            self._check_password(username, password)
        elif grant == "refresh_token":
            with self._lock:
                username = self._refresh_tokens.get(one("refresh_token") or "")
            if username is None:
                raise _Refused(401, "invalid refresh token")
        else:
            raise _Refused(400, f"unsupported grant_type {grant!r}")
        return self._answer(grant, username, scopes, refresh=True)

    # ------------------------------------------------------------------ server

    @property
    def realm(self) -> str:
        """The token endpoint URL, for the registry's ``auth.token.realm``."""
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{process.LOOPBACK}:{self.port}/token"

    @property
    def url(self) -> str:
        return self.realm

    def start(self) -> TokenServer:
        owner = self

        class Handler(_TokenHandler):
            server_owner = owner

        httpd = ThreadingHTTPServer((process.LOOPBACK, 0), Handler)
        httpd.daemon_threads = True
        if self._ssl_context is not None:
            httpd.socket = self._ssl_context.wrap_socket(httpd.socket, server_side=True,
                                                         do_handshake_on_connect=False)
        self._httpd = httpd
        self.port = int(httpd.server_address[1])
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"token-server-{self.port}", daemon=True)
        self._thread.start()
        process.track(self)
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        process.untrack(self)
        if self._owned_dir is not None:
            self._owned_dir.cleanup()
            self._owned_dir = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _TokenHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    server_owner: TokenServer

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr log
        return

    def _basic(self) -> tuple[str, str] | None:
        value = self.headers.get("Authorization", "")
        scheme, _, data = value.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(data.strip()).decode("utf-8").partition(":")
        except Exception:  # noqa: BLE001
            raise _Refused(400, "malformed Basic credentials") from None
        return user, password

    def _send_json(self, status: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _serve(self, method: str) -> None:
        owner = self.server_owner
        parsed = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        form: dict[str, list[str]] = {}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, 1 << 20)) if length else b""
        if method == "POST":
            form = urllib.parse.parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        status, username, grant, scopes = 200, None, "get" if method == "GET" else "?", []
        has_credentials = bool(self.headers.get("Authorization"))
        reply: tuple[int, dict[str, Any], dict[str, str] | None]
        try:
            if owner.delay:
                time.sleep(min(owner.delay, 30.0))
            if parsed.path != "/token":
                raise _Refused(404, "not found")
            if method == "GET":
                scopes = [s for value in query.get("scope", []) for s in value.split()]
                basic = self._basic()
                username = basic[0] if basic else None
                if owner.get_status is not None:
                    raise _Refused(owner.get_status, "forced failure")
                reply = (200, owner.handle_get(query, basic), None)
            else:
                grant = form.get("grant_type", ["?"])[0]
                scopes = (form.get("scope", [""])[0] or "").split()
                username = form.get("username", [None])[0]
                has_credentials = has_credentials or "password" in form or "refresh_token" in form
                if owner.post_status is not None:
                    raise _Refused(owner.post_status, "forced failure")
                reply = (200, owner.handle_post(form), None)
        except _Refused as refused:
            status = refused.status
            extra = {"WWW-Authenticate": 'Basic realm="token-server"'} if status == 401 else None
            reply = (status, {"errors": [{"code": "DENIED" if status < 500 else "UNKNOWN",
                                          "message": refused.message}]}, extra)
        # Record before answering, so a client that got its answer also sees it in the log.
        safe_form = {k: (["***"] if k in _REDACTED_FORM_FIELDS else v) for k, v in form.items()}
        safe_headers = {k: ("***" if k.lower() == "authorization" else v) for k, v in self.headers.items()}
        with owner._lock:
            owner.requests.append(TokenRequest(method, parsed.path, query, safe_form, has_credentials,
                                               username, grant, tuple(scopes), status, safe_headers))
        self._send_json(*reply)

    def do_GET(self) -> None:  # http.server naming
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")
