"""pytest-benchmark benchmarks for token scopes and the token query."""

from __future__ import annotations

# A push to one repository after a 401 asked for two more resources, with a catalog scope held already.
NEW = ["repository:library/ubuntu:push", "repository:library/alpine:pull"]
OLD = ["repository:library/ubuntu:pull", "repository:myorg/app:push,pull", "registry:catalog:*"]
SCOPES = ["repository:library/ubuntu:pull", "repository:library/alpine:pull"]


def test_merge_five_scopes(benchmark, impl):
    merge_scopes = impl.module.merge_scopes
    new, old = NEW, OLD

    @benchmark
    def _run():
        for _ in range(100):
            merge_scopes(new, old)


def test_token_query_two_scopes(benchmark, impl):
    token_query = impl.module.token_query
    scopes = SCOPES

    @benchmark
    def _run():
        for _ in range(100):
            token_query("registry.docker.io", scopes)


def test_token_query_realm_with_query(benchmark, impl):
    token_query = impl.module.token_query
    scopes = SCOPES[:1]

    @benchmark
    def _run():
        for _ in range(100):
            token_query("ghcr.io", scopes, "client_id=ocitransport&scope=stale")


def test_parse_scope(benchmark, impl):
    parse_scope = impl.module.parse_scope

    @benchmark
    def _run():
        for _ in range(100):
            parse_scope("repository:localhost:5000/team/app:push,pull")
