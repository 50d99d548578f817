"""pytest-benchmark benchmarks for response heads."""

from __future__ import annotations

DIGEST = b"sha256:" + b"6d4ab6b3c5e1f7d2a9b8c0e4f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4"
MANIFEST_HEAD = [
    b"HTTP/1.1 200 OK\r\n",
    b"Content-Type: application/vnd.oci.image.manifest.v1+json\r\n",
    b"Content-Length: 1574\r\n",
    b"Docker-Content-Digest: " + DIGEST + b"\r\n",
    b"Docker-Distribution-Api-Version: registry/2.0\r\n",
    b'Etag: "' + DIGEST + b'"\r\n',
    b"X-Content-Type-Options: nosniff\r\n",
    b"Date: Tue, 04 Mar 2025 10:00:00 GMT\r\n",
    b"Strict-Transport-Security: max-age=31536000\r\n",
    b"Connection: keep-alive\r\n",
    b"Server: nginx\r\n",
    b"\r\n",
]
CONTINUE_HEAD = [
    b"HTTP/1.1 100 Continue\r\n",
    b"\r\n",
    b"HTTP/1.1 201 Created\r\n",
    b"Content-Length: 0\r\n",
    b"Docker-Content-Digest: " + DIGEST + b"\r\n",
    b"Docker-Distribution-Api-Version: registry/2.0\r\n",
    b"Location: /v2/library/ubuntu/blobs/" + DIGEST + b"\r\n",
    b"Date: Tue, 04 Mar 2025 10:00:00 GMT\r\n",
    b"\r\n",
]


def test_registry_manifest_head(benchmark, impl):
    parse_head = impl.module.parse_head
    lines = MANIFEST_HEAD

    @benchmark
    def _run():
        for _ in range(100):
            parse_head(lines)


def test_continue_then_created_head(benchmark, impl):
    parse_head = impl.module.parse_head
    lines = CONTINUE_HEAD

    @benchmark
    def _run():
        for _ in range(100):
            parse_head(lines)
