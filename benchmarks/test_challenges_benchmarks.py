"""pytest-benchmark benchmarks for WWW-Authenticate challenge parsing."""

from __future__ import annotations

DOCKER_HUB = (
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
    'scope="repository:library/ubuntu:pull"'
)
INSUFFICIENT_SCOPE = (
    'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
    'scope="repository:samalba/my-app:pull,push",error="insufficient_scope"'
)
MULTI = 'Basic realm="https://registry.example.com/", Bearer realm="https://auth.example.com/token",service="z"'


def test_docker_hub_bearer(benchmark, impl):
    parse_challenges = impl.module.parse_challenges
    value = DOCKER_HUB

    @benchmark
    def _run():
        for _ in range(100):
            parse_challenges(value)


def test_header_list_as_the_engine_passes_it(benchmark, impl):
    parse_challenges = impl.module.parse_challenges
    values = [INSUFFICIENT_SCOPE]

    @benchmark
    def _run():
        for _ in range(100):
            parse_challenges(values)


def test_basic_and_bearer_in_one_value(benchmark, impl):
    parse_challenges = impl.module.parse_challenges
    value = MULTI

    @benchmark
    def _run():
        for _ in range(100):
            parse_challenges(value)
