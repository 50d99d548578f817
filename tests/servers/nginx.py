"""Debian's nginx on 127.0.0.1 serving static files: a server that costs almost nothing per request.

Benchmarks compare clients against it (a registry spends ~1 ms of CPU per request; nginx far less).
It serves ``/small`` (512 bytes), ``/big`` (``big_mib`` MiB, made on demand: one random 1 MiB block
repeated) when asked for, and ``/v2/`` (200 ``{}`` with ``Docker-Distribution-API-Version``); optionally
over TLS with HTTP/2 (ALPN) from a ``trustme`` CA.

Standalone: ``python -m tests.servers.nginx [--big-mib 256] [--tls] [--http2] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import ssl
import subprocess
from pathlib import Path

from tests.servers import process, tls

NGINX_BINARY = "/usr/sbin/nginx"
SMALL_SIZE = 512


def nginx_binary() -> str | None:
    """The nginx executable, or ``None`` when it is not installed."""
    if Path(NGINX_BINARY).is_file():
        return NGINX_BINARY
    return shutil.which("nginx")


class NginxError(RuntimeError):
    """nginx did not start (the message carries the tail of its error log)."""


def write_big_file(path: Path, mib: int) -> None:
    """``mib`` MiB of real (not sparse) bytes: one random 1 MiB block written ``mib`` times."""
    block = os.urandom(1 << 20)
    with open(path, "wb") as out:
        for _ in range(mib):
            out.write(block)


class NginxServer(process.ServerProcess):
    """One nginx instance with its own prefix, config, document root and port.

    Attributes: ``url``, ``host``, ``port``, ``root`` (document root), ``small_url`` / ``big_url``,
    ``small_size``, ``big_size`` (bytes; 0 without ``/big``), ``ca_file`` (TLS only), ``http2``.
    """

    NAME = "nginx"
    PORT_TAKEN = "Address already in use"
    ERROR = NginxError

    def __init__(self, *, big_mib: int = 0, tls_enabled: bool = False, http2: bool = False,
                 workers: int = 1, master_process: bool = True, start_timeout: float = 10.0) -> None:
        """Configure (not start); ``http2`` implies TLS (browsers and curl negotiate h2 by ALPN)."""
        super().__init__(start_timeout)
        self.big_mib = big_mib
        self.tls = tls_enabled or http2
        self.http2 = http2
        self.workers = workers
        self.master_process = master_process
        self.ca_file: Path | None = None
        self.prefix = Path()
        self.root = Path()
        self.error_log = Path()

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def small_url(self) -> str:
        return f"{self.url}/small"

    @property
    def big_url(self) -> str:
        return f"{self.url}/big"

    @property
    def small_size(self) -> int:
        return SMALL_SIZE

    @property
    def big_size(self) -> int:
        return self.big_mib << 20

    def ssl_context(self) -> ssl.SSLContext | None:
        return tls.client_context(self.ca_file) if self.tls else None

    def _config(self) -> str:
        p = self.prefix
        user = ""
        if os.geteuid() == 0:  # workers would otherwise switch to "nobody" and not read our 0700 dirs
            user = f"user {pwd.getpwuid(0).pw_name};"
        listen = f"listen {self.host}" + (" ssl" if self.tls else "") + (" http2" if self.http2 else "") + ";"
        tls_lines = ""
        if self.tls:
            _ca, cert = tls.server_certificate(p / "tls")
            self.ca_file = cert.ca_file
            tls_lines = (f"ssl_certificate {cert.cert_file}; ssl_certificate_key {cert.key_file};"
                         " ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:1m;")
        temp = "\n".join(f"    {name}_temp_path {p}/tmp/{name};"
                         for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        return f"""
{user}
worker_processes {self.workers};
master_process {"on" if self.master_process else "off"};
pid {p}/nginx.pid;
error_log {self.error_log} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000;
    keepalive_timeout 75s;
    http2_max_requests 100000;
{temp}
    default_type application/octet-stream;
    server {{
        {listen}
        server_name localhost;
        {tls_lines}
        root {self.root};
        location = /v2/ {{
            default_type application/json;
            add_header Docker-Distribution-API-Version registry/2.0 always;
            return 200 '{{}}';
        }}
        location / {{ }}
    }}
}}
"""

    def _prepare(self) -> None:
        self.binary = nginx_binary() or ""
        if not self.binary:
            raise NginxError("nginx is not installed (apt-get install nginx-light or nginx)")
        self.prefix = self._make_directory("nginx-")
        self.root = self.prefix / "html"
        for sub in ("html", "logs", "tmp"):
            (self.prefix / sub).mkdir()
        self.error_log = self.prefix / "logs" / "error.log"
        (self.root / "small").write_bytes(os.urandom(SMALL_SIZE))
        if self.big_mib:
            write_big_file(self.root / "big", self.big_mib)

    def _launch(self) -> subprocess.Popen[bytes]:
        conf = self.prefix / "nginx.conf"
        conf.write_text(self._config())
        argv = [self.binary, "-p", f"{self.prefix}/", "-c", str(conf), "-e", str(self.error_log), "-g", "daemon off;"]
        return process.spawn(argv, self.prefix / "logs" / "stdout.log")

    def _log_tail(self) -> str:
        return process.tail(self.error_log) + process.tail(self.prefix / "logs" / "stdout.log")

    def _probe(self) -> bool:
        return process.probe(self.port, "/small", (200,), self.ssl_context())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.servers.nginx", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-mib", type=int, default=0, help="also serve /big of this many MiB")
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--http2", action="store_true", help="HTTP/2 over TLS (implies --tls)")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    stop = process.stop_on_signals()
    with NginxServer(big_mib=args.big_mib, tls_enabled=args.tls, http2=args.http2,
                     workers=args.workers) as server:
        if stop.is_set():
            return 0
        print(f"nginx:   {server.url}  small={server.small_url}" + (f"  big={server.big_url}" if args.big_mib else ""))
        if server.ca_file:
            print(f"CA file: {server.ca_file}")
        print("Ctrl-C to stop.", flush=True)
        process.serve_until(stop, lambda: server.running)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
