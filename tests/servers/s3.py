"""A local S3 server (moto's ``moto_server``) on 127.0.0.1, the object storage of the S3-backed registries.

``S3Server().start()`` runs ``moto_server -H 127.0.0.1 -p PORT``; :meth:`S3Server.create_bucket` makes a
bucket (path-style URLs, any keys: moto checks no signature). Requires ``pip install 'moto[server]'``
(requirements/test.txt).

Standalone: ``python -m tests.servers.s3`` prints its URL and runs until Ctrl-C.
"""

from __future__ import annotations

import http.client
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from tests.servers import process

#: Region and dummy keys every client of the local S3 uses (moto accepts any).
REGION = "us-east-1"
ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"


def moto_binary() -> str | None:
    """The ``moto_server`` executable, or ``None`` when moto[server] is not installed."""
    found = shutil.which("moto_server")
    if found:
        return found
    candidate = Path(sys.executable).with_name("moto_server")
    return str(candidate) if candidate.is_file() else None


class S3Error(RuntimeError):
    """moto did not start, or a bucket could not be made (the message carries the log tail)."""


class S3Server(process.ServerProcess):
    """One ``moto_server`` process: ``url`` (``http://127.0.0.1:PORT``), ``port``, ``log_file``."""

    NAME = "moto_server"
    PORT_TAKEN = "in use"
    ERROR = S3Error

    def __init__(self, *, start_timeout: float = 20.0) -> None:
        super().__init__(start_timeout)
        self.log_file = Path()

    def _prepare(self) -> None:
        self.binary = moto_binary() or ""
        if not self.binary:
            raise S3Error("moto_server is not installed (pip install 'moto[server]')")
        self.log_file = self._make_directory("moto-") / "moto.log"

    def _launch(self) -> subprocess.Popen[bytes]:
        # No AWS_* variables: moto must not pick up a user's profile or endpoints.
        env = process.clean_env(("AWS_", "MOTO_"))
        return process.spawn([self.binary, "-H", process.LOOPBACK, "-p", str(self.port)], self.log_file, env)

    def _log_tail(self) -> str:
        return process.tail(self.log_file)

    def _probe(self) -> bool:
        return process.probe(self.port, "/", (200,), host_header=self.host)

    def _request(self, method: str, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(process.LOOPBACK, self.port, timeout=5)
        try:
            connection.request(method, path, headers={"Host": self.host})
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            return 0, b""
        finally:
            connection.close()

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh random name unless given) and return its name."""
        name = name or f"registry-{secrets.token_hex(4)}"
        status, body = self._request("PUT", f"/{name}")
        if status != 200:
            raise S3Error(f"creating bucket {name}: {status} {body[:200]!r}")
        return name

    def objects(self, bucket: str) -> list[str]:
        """The keys in ``bucket`` (first 1000), for tests that look at what the registry stored."""
        import re

        status, body = self._request("GET", f"/{bucket}?list-type=2")
        if status != 200:
            raise S3Error(f"listing bucket {bucket}: {status}")
        return re.findall(r"<Key>([^<]*)</Key>", body.decode())


def main() -> int:
    stop = process.stop_on_signals()
    with S3Server() as server:
        print(f"S3 (moto): {server.url}  region {REGION}, keys {ACCESS_KEY} / {SECRET_KEY}\nCtrl-C to stop.",
              flush=True)
        process.serve_until(stop, lambda: server.running)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
