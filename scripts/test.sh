#!/usr/bin/env bash
# Run the whole test suite twice: against the compiled twins, then against the pure-Python twins.
#
# Assumes requirements/test.txt is installed (see README.md). By default both runs test this checkout:
# the extensions are built in place and src/ is put first on the path. With OCITRANSPORT_TEST_PYTHON set to
# the python of an environment where the built wheel is installed (.ci/run does this), the compiled run
# tests that installed package instead, as a user gets it. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

installed="${OCITRANSPORT_TEST_PYTHON:-}"
if [ -z "$installed" ]; then
  OCITRANSPORT_REQUIRE_EXTENSIONS=1 python3 setup.py -q build_ext --inplace >/dev/null
fi

echo "== compiled twins (OCITRANSPORT_REQUIRE_EXTENSIONS=1) =="
if [ -n "$installed" ]; then
  # From the repository root without src/ on the path, `import ocitransport` finds the installed wheel.
  "$installed" -c 'import ocitransport, sys; print("testing the installed package at", ocitransport.__file__)
sys.exit(0 if "site-packages" in ocitransport.__file__ else 1)'
  env -u PYTHONPATH OCITRANSPORT_REQUIRE_EXTENSIONS=1 "$installed" -m pytest -q -p no:cacheprovider "$@"
else
  PYTHONPATH="$PWD/src" OCITRANSPORT_REQUIRE_EXTENSIONS=1 python3 -m pytest -q -p no:cacheprovider "$@"
fi

echo "== pure-Python twins (OCITRANSPORT_NO_EXTENSIONS=1) =="
PYTHONPATH="$PWD/src" OCITRANSPORT_NO_EXTENSIONS=1 python3 -m pytest -q -p no:cacheprovider "$@"
