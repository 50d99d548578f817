#!/usr/bin/env bash
# First run on a fresh machine, offline: install what is missing (Debian's docker-registry and this
# project), then mirror sample images between two local registries it starts on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker-registry >/dev/null 2>&1 && [ ! -x /usr/bin/docker-registry ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
  # Debian's package may start a system-wide registry; the demo starts its own instances.
  $SUDO pkill -f '/usr/bin/docker-registry serve /etc/docker/registry' 2>/dev/null || true
fi
python3 -m pip install -q --disable-pip-version-check ".[cli]"
python3 -m ocitransport demo "$@"
