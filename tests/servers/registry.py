"""A real registry (CNCF distribution, Debian's ``docker-registry``) on 127.0.0.1 for tests.

Modes: open (``auth="none"``), Basic (``auth="basic"``: htpasswd with bcrypt cost 4 entries for ``alice``
and ``bob``, random passwords), Bearer (``auth="bearer"``: a :class:`TokenServer` of ours, started and
stopped with the registry unless one is given), TLS (``tls=True``: a ``trustme`` CA; HTTP/2 by ALPN unless
``http2=False``) and mutual TLS (``mtls=True``: client certificates from another ``trustme`` CA required).
Storage is a directory, or with ``s3=S3Server`` a bucket of a local S3 (moto, tests/servers/s3.py) through
distribution's s3 driver with redirects on: blob GET and HEAD answer 307 to a presigned URL on the S3
host, as Docker Hub, ECR, GAR and any distribution on S3 do. ``s3_endpoint`` (default: the S3 server's
URL) is where the registry reaches it, e.g. a :class:`~tests.servers.shaper.LinkShaper` or a
:class:`~tests.servers.proxy.FaultProxy` in front; presigned URLs name that host too.

Standalone: ``python -m tests.servers.registry --auth bearer [--tls] [--mtls]`` prints how to reach it
and runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any, Literal

import bcrypt

from tests.servers import process, tls
from tests.servers.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from tests.servers.token_server import TokenServer

REGISTRY_BINARY = "/usr/bin/docker-registry"
Auth = Literal["none", "basic", "bearer"]


def registry_binary() -> str | None:
    """The registry executable, or ``None`` when it is not installed."""
    if Path(REGISTRY_BINARY).is_file():
        return REGISTRY_BINARY
    return shutil.which("docker-registry") or shutil.which("registry")


class RegistryError(RuntimeError):
    """The registry did not start (the message carries the tail of its log)."""


class RegistryServer(process.ServerProcess):
    """One ``docker-registry serve`` process with its own config, storage, port and credentials.

    Attributes: ``url`` (``http://127.0.0.1:PORT`` or ``https://...``), ``host`` (``127.0.0.1:PORT``),
    ``port``, ``auth``, ``username`` / ``password`` (``alice``, full access; ``None`` when open),
    ``users`` (every user name -> password; ``bob`` may only pull under bearer auth), ``ca_file`` (PEM of
    the server's CA, TLS only), ``client_cert`` / ``client_key`` / ``client_ca_file`` (mTLS only),
    ``token_server`` (bearer only; over HTTPS with the registry's certificate when the registry uses
    TLS), ``root`` (storage directory), ``config_file``, ``log_file``,
    ``service`` and ``realm`` (bearer only), ``bucket`` (S3 storage only).
    """

    NAME = "registry"
    ERROR = RegistryError

    def __init__(
        self,
        *,
        auth: Auth = "none",
        tls_enabled: bool = False,
        mtls: bool = False,
        http2: bool = True,
        token_server: TokenServer | None = None,
        token_server_options: dict[str, Any] | None = None,
        service: str = "registry.test",
        issuer: str = "token-server.test",
        bcrypt_rounds: int = 4,
        start_timeout: float = 10.0,
        extra_config: dict[str, Any] | None = None,
        s3: S3Server | None = None,
        s3_endpoint: str | None = None,
    ) -> None:
        """Configure (not start) a registry; ``mtls`` implies TLS. ``extra_config`` is merged into the
        generated config (nested dicts merge). ``token_server_options`` go to the :class:`TokenServer`
        created for bearer auth when none is given. ``s3``: store blobs in a new bucket of that (started)
        S3 server instead of a directory, reached at ``s3_endpoint`` (default ``s3.url``)."""
        if auth not in ("none", "basic", "bearer"):
            raise ValueError(f"unknown auth mode {auth!r}")
        super().__init__(start_timeout)
        self.auth: Auth = auth
        self.tls = tls_enabled or mtls
        self.mtls = mtls
        self.http2 = http2
        self.service = service
        self.issuer = issuer
        self.bcrypt_rounds = bcrypt_rounds
        self.extra_config = extra_config or {}
        self.s3 = s3
        self.s3_endpoint = s3_endpoint
        self.bucket: str | None = None
        self.token_server = token_server
        self._owns_token_server = token_server is None and auth == "bearer"
        self._token_server_options = token_server_options or {}
        self.username: str | None = None
        self.password: str | None = None
        self.users: dict[str, str] = {}
        self.ca_file: Path | None = None
        self.client_cert: Path | None = None
        self.client_key: Path | None = None
        self.client_ca_file: Path | None = None
        self.directory = Path()
        self.root = Path()
        self.config_file = Path()
        self.log_file = Path()
        self._server_cert: tls.ServerCertificate | None = None

    # ------------------------------------------------------------------ addresses

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def realm(self) -> str | None:
        return self.token_server.realm if self.token_server else None

    def ssl_context(self, client_cert: bool = True) -> ssl.SSLContext | None:
        """A client context trusting this registry's CA (with the client certificate for mTLS unless
        ``client_cert=False``); ``None`` for plain HTTP."""
        if not self.tls:
            return None
        cert = self.client_cert if (self.mtls and client_cert) else None
        return tls.client_context(self.ca_file, cert, self.client_key if cert else None)

    # ------------------------------------------------------------------ config

    def _write_htpasswd(self, path: Path) -> None:
        self.users = {"alice": secrets.token_urlsafe(12), "bob": secrets.token_urlsafe(12)}
        salt = bcrypt.gensalt(rounds=self.bcrypt_rounds)
        lines = [f"{user}:{bcrypt.hashpw(pw.encode(), salt).decode()}" for user, pw in self.users.items()]
        path.write_text("\n".join(lines) + "\n")

    def _config(self) -> dict[str, Any]:
        storage: dict[str, Any] = {"filesystem": {"rootdirectory": str(self.root)}}
        if self.s3 is not None:
            storage = {
                "s3": {"region": REGION, "regionendpoint": self.s3_endpoint or self.s3.url, "bucket": self.bucket,
                       "rootdirectory": "/r", "accesskey": ACCESS_KEY, "secretkey": SECRET_KEY,
                       "secure": False, "v4auth": True},
                "redirect": {"disable": False},
            }
        config: dict[str, Any] = {
            "version": "0.1",
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {**storage, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": self.host, "secret": secrets.token_hex(16)},
            "health": {"storagedriver": {"enabled": False}},
        }
        if self._server_cert is not None:
            server = self._server_cert
            config["http"]["tls"] = {"certificate": str(server.cert_file), "key": str(server.key_file)}
            if self.mtls:
                config["http"]["tls"]["clientcas"] = [str(self.client_ca_file)]
            if not self.http2:
                config["http"]["http2"] = {"disabled": True}
        if self.auth == "basic":
            htpasswd = self.directory / "htpasswd"
            self._write_htpasswd(htpasswd)
            config["auth"] = {"htpasswd": {"realm": "registry.test", "path": str(htpasswd)}}
        elif self.auth == "bearer":
            assert self.token_server is not None
            self.users = dict(self.token_server.users)
            config["auth"] = {"token": {
                "realm": self.token_server.realm, "service": self.token_server.service,
                "issuer": self.token_server.issuer,
                "rootcertbundle": str(self.token_server.signing_cert_file),
            }}
        if self.users:
            self.username = next(iter(self.users))
            self.password = self.users[self.username]
        _merge(config, self.extra_config)
        return config

    # ------------------------------------------------------------------ life cycle

    def _prepare(self) -> None:
        """Certificates, the S3 bucket and the owned token server (the config is written per attempt)."""
        self.binary = registry_binary() or ""
        if not self.binary:
            raise RegistryError("docker-registry is not installed (apt-get install docker-registry)")
        self.directory = self._make_directory("registry-")
        self.root = self.directory / "storage"
        self.root.mkdir()
        self.config_file = self.directory / "config.yml"
        self.log_file = self.directory / "registry.log"
        if self.tls:
            _ca, self._server_cert = tls.server_certificate(self.directory / "tls")
            self.ca_file = self._server_cert.ca_file
            if self.mtls:
                _cca, client = tls.client_certificate(self.directory / "client")
                self.client_cert, self.client_key = client.cert_file, client.key_file
                self.client_ca_file = client.ca_file
        if self.s3 is not None:
            self.bucket = self.s3.create_bucket()
        if self._owns_token_server:
            if self.token_server is None:
                options: dict[str, Any] = {"service": self.service, "issuer": self.issuer}
                if self._server_cert is not None:
                    # An HTTPS registry gets an HTTPS realm (clients refuse an http realm for it),
                    # served with the registry's own certificate: ca_file covers both.
                    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                    context.load_cert_chain(self._server_cert.cert_file, self._server_cert.key_file)
                    options["ssl_context"] = context
                options.update(self._token_server_options)
                (self.directory / "token").mkdir()
                self.token_server = TokenServer(directory=self.directory / "token", **options)
            self.token_server.start()

    def _launch(self) -> subprocess.Popen[bytes]:
        # JSON is YAML: no YAML library needed.
        self.config_file.write_text(json.dumps(self._config(), indent=2))
        # No AWS_* either: the s3 driver reads them, and AWS_CA_BUNDLE makes 2.8 panic at start.
        env = process.clean_env(("REGISTRY_", "AWS_"))
        return process.spawn([self.binary, "serve", str(self.config_file)], self.log_file, env)

    def _log_tail(self) -> str:
        return process.tail(self.log_file)

    def _probe(self) -> bool:
        return process.probe(self.port, "/v2/", (200, 401), self.ssl_context())

    def _stopped(self) -> None:
        if self._owns_token_server and self.token_server is not None:
            self.token_server.stop()

    def log(self) -> str:
        """The registry's log so far (warnings and errors only)."""
        return process.tail(self.log_file, 1 << 20)

    def __repr__(self) -> str:
        storage = f", s3={self.bucket}" if self.s3 is not None else ""
        return f"RegistryServer({self.url}, auth={self.auth}, mtls={self.mtls}{storage})"


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def main(argv: list[str] | None = None) -> int:
    """Run a registry in the foreground and print how to reach it."""
    parser = argparse.ArgumentParser(prog="python -m tests.servers.registry", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--auth", choices=["none", "basic", "bearer"], default="none")
    parser.add_argument("--tls", action="store_true", help="serve HTTPS (trustme CA)")
    parser.add_argument("--mtls", action="store_true", help="require client certificates (implies --tls)")
    parser.add_argument("--no-http2", action="store_true", help="disable HTTP/2 over TLS")
    parser.add_argument("--token-lifetime", type=int, default=300, help="bearer token lifetime (s)")
    args = parser.parse_args(argv)
    options = {"token_lifetime": args.token_lifetime} if args.auth == "bearer" else {}
    stop = process.stop_on_signals()
    with RegistryServer(auth=args.auth, tls_enabled=args.tls, mtls=args.mtls, http2=not args.no_http2,
                        token_server_options=options) as registry:
        if stop.is_set():
            return 0
        print(f"registry:     {registry.url}  (auth={registry.auth})")
        print(f"storage:      {registry.root}")
        for user, password in registry.users.items():
            print(f"user:         {user} / {password}")
        if registry.token_server:
            print(f"token realm:  {registry.token_server.realm}  service={registry.token_server.service}")
        if registry.ca_file:
            print(f"CA file:      {registry.ca_file}")
        if registry.client_cert:
            print(f"client cert:  {registry.client_cert}\nclient key:   {registry.client_key}")
        print("Ctrl-C to stop.", flush=True)
        process.serve_until(stop, lambda: registry.running)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
