"""Peer tests excused from the "passes stock, fails ours" rule, each with its reason (docs/deviations.md,
adapters section). Keys: the suite (``oras`` covers ``oras-open``, ``oras-basic-tls`` and ``oras-bearer-tls``), then an
``fnmatch`` pattern over ``classname::name`` as pytest's junit XML writes it. Tests that read stock
internals; and the two documented deviations whose tests depend on them."""

from __future__ import annotations

_POOLMANAGER = ("reads HTTPAdapter.poolmanager (urllib3's pools); RequestsAdapter has no urllib3 pool: "
                "one libcurl multi handle per client")

EXCUSED: dict[str, dict[str, str]] = {
    "requests": {
        "tests.test_requests.TestPreparingURLs::test_different_connection_pool_for_tls_settings_*": _POOLMANAGER,
        "tests.test_requests.TestRequests::test_session_close_proxy_clear":
            "patches HTTPAdapter.proxy_manager (urllib3's proxy pools), which RequestsAdapter does not have",
    },
    "httpx": {
        "tests.client.test_proxies::test_proxies_environ[[]*":
            "reads transport._pool._proxy_url (httpcore's pool); HTTPXTransport keeps its proxy in libcurl",
        "tests.test_api::test_httpcore_lazy_loading":
            "asserts that the first request imports httpcore (stock's transport is httpcore; ours is not)",
        "tests.test_timeouts::test_write_timeout[[]*":
            "the server answers without reading the 100 MB body: libcurl reads the answer while sending "
            "and the transport returns it, where httpcore sends the whole body first and times out "
            "(docs/deviations.md); a write timeout itself is honoured "
            "(tests/adapters/test_httpx_conformance.py::test_write_timeout_with_a_longer_read_timeout)",
        "tests.test_timeouts::test_pool_timeout[[]*":
            "a connection slot is the transfer's, freed once the body has arrived, not when the response "
            "is closed: the held stream's tiny body frees its slot first (docs/deviations.md)",
    },
    "oras": {},
}
