#!/usr/bin/env bash
# First run on a fresh machine, offline: install what is missing (Debian's docker-registry and this
# project), then mirror sample images between two local registries it starts on 127.0.0.1.
#
# The project goes into the script's own virtual environment (OCITRANSPORT_DEMO_VENV, default .venv-demo
# in the checkout): Debian 12's system Python refuses pip installs (PEP 668, "externally managed").
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v docker-registry >/dev/null 2>&1 && [ ! -x /usr/bin/docker-registry ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
  # Debian's package may start a system-wide registry; the demo starts its own instances.
  $SUDO pkill -f '/usr/bin/docker-registry serve /etc/docker/registry' 2>/dev/null || true
fi

VENV="${OCITRANSPORT_DEMO_VENV:-.venv-demo}"
if [ ! -x "$VENV/bin/python" ]; then
  # --system-site-packages: a pycurl (or rich, pyyaml) the system already has is used, not rebuilt.
  if ! python3 -m venv --system-site-packages "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    # Debian splits ensurepip out of python3: python3-venv brings it.
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv --system-site-packages "$VENV"
  fi
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check ".[cli]"
"$VENV/bin/python" -m ocitransport demo "$@"
