#!/usr/bin/env bash
# Run requests', httpx's and oras-py's own test suites (from their pinned sdists) twice: stock, and with
# our adapters mounted by default (tests/peers/ocitransport_peers.py). Fails on any test that passes stock
# and fails ours, except those tests/peers/excused.py lists with a reason. Loopback only: the tests that
# contact any other address are deselected below, before the first run, and the plugin's guard refuses
# any non-loopback host in both runs (a missed one then fails on both sides, and is listed at the end).
#
#   bash scripts/peer-suites.sh            # needs PyPI for the sdists, and requirements/test.txt
#   PEER_SUITES_DIR=/tmp/peers bash scripts/peer-suites.sh   # keep (and reuse) the downloads
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

REQUESTS_VERSION=2.34.2
HTTPX_VERSION=0.29.0
ORAS_VERSION=0.2.43

WORK=${PEER_SUITES_DIR:-$(mktemp -d -t ocitransport-peers.XXXXXX)}
[ -n "${PEER_SUITES_DIR:-}" ] || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"

for spec in "requests==$REQUESTS_VERSION" "httpx==$HTTPX_VERSION" "oras==$ORAS_VERSION"; do
  name=${spec%%==*}; version=${spec##*==}
  if [ ! -d "$WORK/$name-$version" ]; then
    python3 -m pip download -q --disable-pip-version-check --no-binary :all: --no-deps -d "$WORK" "$spec"
    tar -xzf "$WORK/$name-$version.tar.gz" -C "$WORK"
  fi
done

# Test dependencies that would change every other pytest run, or requests and httpx themselves, go into
# directories of their own instead of site-packages: pytest-httpbin (its plugin loads into every pytest
# run) and httpbin (it pulls in brotlicffi, which adds "br" to requests' Accept-Encoding) for requests'
# suite; chardet (requests would prefer it to charset_normalizer), zstandard and brotli (add "zstd", "br")
# for httpx's.
# uvicorn, trio and pytest-mock are in requirements/test.txt.
SITE_REQUESTS=$WORK/site-requests
SITE_HTTPX=$WORK/site-httpx
if [ ! -d "$SITE_REQUESTS/pytest_httpbin" ]; then
  python3 -m pip install -q --disable-pip-version-check --target "$SITE_REQUESTS" \
    "pytest-httpbin==2.1.0" "httpbin==0.10.4"
fi
if [ ! -d "$SITE_HTTPX/chardet" ]; then
  python3 -m pip install -q --disable-pip-version-check --no-deps --target "$SITE_HTTPX" \
    "chardet==5.2.0" "zstandard==0.25.0" "brotli==1.2.1"
fi

BLOCKED=$WORK/blocked.txt
: >"$BLOCKED"
status=0

# run SUITE MODE SOURCE_ROOT PYTHON_PATH [pytest args...]: one run, junit XML in $WORK/SUITE-MODE.xml.
# The sdist's own package comes first on the path, so its tests run against the pinned version.
run() {
  local suite=$1 mode=$2 root=$3 path=$4
  shift 4
  (cd "$root" && OCITRANSPORT_PEERS=$mode OCITRANSPORT_PEERS_BLOCKED=$BLOCKED OCITRANSPORT_PEERS_REPO=$REPO \
     PYTHONPATH="$path:$REPO/src:$REPO/tests/peers" PYTHONDONTWRITEBYTECODE=1 \
     timeout 600 python3 -m pytest -q -p no:cacheprovider -p ocitransport_peers -o addopts="" \
       --junitxml="$WORK/$suite-$mode.xml" "$@" >"$WORK/$suite-$mode.log" 2>&1) || true
  echo "  $suite ($mode): $(tail -n 1 "$WORK/$suite-$mode.log")"
}

compare() {
  python3 "$REPO/tests/peers/compare.py" "$1" "$WORK/$1-stock.xml" "$WORK/$1-ours.xml" || status=1
}

# --- requests: its tests serve on loopback (pytest-httpbin, tests/testserver). Deselected: the connect
# timeout tests dial 10.255.255.1; test_errors[doesnotexist.google.com] and test_proxy_error resolve
# public names.
R=$WORK/requests-$REQUESTS_VERSION
REQUESTS_ARGS=(
  --deselect "tests/test_requests.py::TestTimeout::test_connect_timeout"
  --deselect "tests/test_requests.py::TestTimeout::test_total_timeout_connect"
  --deselect "tests/test_requests.py::TestRequests::test_errors[http://doesnotexist.google.com-ConnectionError]"
  --deselect "tests/test_requests.py::TestRequests::test_proxy_error"
  tests
)
echo "requests $REQUESTS_VERSION"
# The two runs share nothing (random ports): side by side on two cores.
# (pytest-httpbin's plugin loads by its entry point, found in $SITE_REQUESTS.)
run requests stock "$R" "$R/src:$SITE_REQUESTS" "${REQUESTS_ARGS[@]}" &
run requests ours "$R" "$R/src:$SITE_REQUESTS" "${REQUESTS_ARGS[@]}"
wait
compare requests

# --- httpx: its uvicorn test server listens on 127.0.0.1:8000 (one run at a time). Deselected: the
# tests httpx marks "network" (10.255.255.1, example.com through a proxy).
H=$WORK/httpx-$HTTPX_VERSION
echo "httpx $HTTPX_VERSION"
run httpx stock "$H" "$H:$SITE_HTTPX" -m "not network" tests
run httpx ours "$H" "$H:$SITE_HTTPX" -m "not network" tests
compare httpx

# --- oras-py against our docker-registry fixtures: open (plain HTTP), Basic auth over TLS (its with_auth
# tests), then Bearer over TLS (our token server; its token auth backend; the two tests that choose
# auth_backend="basic" fail stock and ours alike there, as the registry asks for a token). Deselected: four tests that contact ghcr.io, and test_chunked_push, which pushes and
# pulls a 16 GiB file (minutes and 16 GiB of registry storage).
O=$WORK/oras-$ORAS_VERSION
ORAS_ARGS=(
  --deselect oras/tests/test_oras.py::test_get_many_tags
  --deselect oras/tests/test_oras.py::test_ssl_no_verify
  --deselect oras/tests/test_oras.py::test_ssl_verify_fails_if_bad_ca
  --deselect oras/tests/test_oras.py::test_ssl_verify_fails_fast_if_bad_ca
  --deselect oras/tests/test_provider.py::test_chunked_push
  oras/tests
)
for registry in open basic-tls bearer-tls; do
  echo "oras $ORAS_VERSION (registry: $registry)"
  export OCITRANSPORT_PEERS_REGISTRY=$registry
  run "oras-$registry" stock "$O" "$O" "${ORAS_ARGS[@]}"
  run "oras-$registry" ours "$O" "$O" "${ORAS_ARGS[@]}"
  unset OCITRANSPORT_PEERS_REGISTRY
  compare "oras-$registry"
done

if [ -s "$BLOCKED" ]; then
  echo "The loopback guard refused these (test, host); deselect them here:"
  sort -u "$BLOCKED" | sed 's/^/  /'
  status=1
fi
[ "$status" = 0 ] && echo "peer suites: no test passes stock and fails ours (beyond tests/peers/excused.py)"
exit "$status"
