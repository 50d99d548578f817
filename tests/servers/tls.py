"""Test certificates from ``trustme``: a CA, a server certificate for loopback, and a client certificate."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

LOOPBACK_IDENTITIES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServerCertificate:
    """PEM files of a server certificate (valid for 127.0.0.1, localhost and ::1) and its CA."""

    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class ClientCertificate:
    """PEM files of a client certificate, the CA that issued it, and its key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def server_certificate(directory: Path, ca: trustme.CA | None = None) -> tuple[trustme.CA, ServerCertificate]:
    """Write a CA (new unless given) and a loopback server certificate into ``directory``."""
    ca = ca or trustme.CA()
    directory.mkdir(parents=True, exist_ok=True)
    issued = ca.issue_cert(*LOOPBACK_IDENTITIES)
    files = ServerCertificate(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    ca.cert_pem.write_to_path(str(files.ca_file))
    # The server presents its full chain (leaf first) so clients need only the CA.
    files.cert_file.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(files.key_file))
    return ca, files


def client_certificate(directory: Path, ca: trustme.CA | None = None,
                       common_name: str = "alice") -> tuple[trustme.CA, ClientCertificate]:
    """Write a client certificate (and its CA, new unless given) into ``directory``."""
    ca = ca or trustme.CA()
    directory.mkdir(parents=True, exist_ok=True)
    issued = ca.issue_cert(f"{common_name}.client.test", common_name=common_name)
    files = ClientCertificate(directory / "client-ca.pem", directory / "client.pem",
                              directory / "client-key.pem")
    ca.cert_pem.write_to_path(str(files.ca_file))
    files.cert_file.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(files.key_file))
    return ca, files


def client_context(ca_file: Path | str | None, cert_file: Path | str | None = None,
                   key_file: Path | str | None = None) -> ssl.SSLContext:
    """An ``ssl`` client context trusting ``ca_file`` and presenting the client certificate if given."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert_file:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return context
