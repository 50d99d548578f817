"""pytest-benchmark benchmarks for registry error bodies."""

from __future__ import annotations

import json

from ocitransport._values import Diagnostic

THREE_ERRORS = json.dumps({"errors": [
    {"code": "UNAUTHORIZED", "message": "authentication required",
     "detail": [{"Type": "repository", "Class": "", "Name": "library/ubuntu", "Action": "pull"}]},
    {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {"Tag": "latest", "Size": 1000000}},
    {"code": "TOOMANYREQUESTS", "message": "You have reached your pull rate limit."},
]}).encode()
URL = "https://registry.example/v2/library/ubuntu/manifests/latest"


def test_decode_and_format_three_errors(benchmark, impl):
    decode = impl.module.decode_error_body
    format_error = impl.module.format_error
    body = THREE_ERRORS

    @benchmark
    def _run():
        for _ in range(100):
            format_error("GET", URL, 401, decode(body), body)


def test_format_diagnostic_with_detail(benchmark, impl):
    format_diagnostic = impl.module.format_diagnostic
    d = Diagnostic("MANIFEST_UNKNOWN", "manifest unknown", {"Tag": "latest", "Size": 1234567, "Ratio": 0.25})

    @benchmark
    def _run():
        for _ in range(100):
            format_diagnostic(d)
