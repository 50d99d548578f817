"""pytest-benchmark benchmarks for redaction of URLs, headers and token bodies."""

from __future__ import annotations

import json

SIGNED_BLOB_URL = (
    "https://production.cloudflare.docker.com/registry-v2/docker/registry/v2/blobs/sha256/a3/"
    "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4/data"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20240101%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=1200&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)
PLAIN_URL = "https://registry-1.docker.io/v2/library/ubuntu/manifests/latest"
REQUEST_HEADERS = [
    ("Authorization", "Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJhY2Nlc3MiOltdfQ.c2lnbmF0dXJl"),
    ("Accept", "application/vnd.oci.image.manifest.v1+json"),
    ("User-Agent", "ocitransport/0.1.0"),
    ("Content-Length", "0"),
]
TOKEN_BODY = json.dumps({
    "token": "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJhY2Nlc3MiOltdfQ.c2lnbmF0dXJl",
    "access_token": "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJhY2Nlc3MiOltdfQ.c2lnbmF0dXJl",
    "expires_in": 300,
    "issued_at": "2024-01-01T00:00:00.000000000Z",
}).encode()


def test_signed_blob_url(benchmark, impl):
    redact_url = impl.module.redact_url
    url = SIGNED_BLOB_URL

    @benchmark
    def _run():
        for _ in range(100):
            redact_url(url)


def test_plain_url(benchmark, impl):
    redact_url = impl.module.redact_url
    url = PLAIN_URL

    @benchmark
    def _run():
        for _ in range(100):
            redact_url(url)


def test_request_headers(benchmark, impl):
    redact_headers = impl.module.redact_headers
    headers = REQUEST_HEADERS

    @benchmark
    def _run():
        for _ in range(100):
            redact_headers(headers)


def test_token_body(benchmark, impl):
    # Bound by the json module in both twins: expect a ratio near 1.
    redact_token_body = impl.module.redact_token_body
    body = TOKEN_BODY

    @benchmark
    def _run():
        for _ in range(100):
            redact_token_body(body)
