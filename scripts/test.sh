#!/usr/bin/env bash
# Run the whole test suite twice: against the compiled twins, then against the pure-Python twins.
# Assumes the project and requirements/test.txt are installed (see README.md); builds the extensions
# in place first so a checkout tests what it contains.
set -euo pipefail
cd "$(dirname "$0")/.."

OCITRANSPORT_REQUIRE_EXTENSIONS=1 python3 setup.py -q build_ext --inplace >/dev/null

echo "== compiled twins (OCITRANSPORT_REQUIRE_EXTENSIONS=1) =="
OCITRANSPORT_REQUIRE_EXTENSIONS=1 python3 -m pytest -q -p no:cacheprovider "$@"

echo "== pure-Python twins (OCITRANSPORT_NO_EXTENSIONS=1) =="
OCITRANSPORT_NO_EXTENSIONS=1 python3 -m pytest -q -p no:cacheprovider "$@"
