#!/usr/bin/env bash
# Regenerate docs/dashboard.png: the browser test (tests/integration/
# test_dashboard_browser.py) runs a real server with workloads on Docker and
# Podman and saves the workload page it checked. Needs both engines and
# Debian's chromium (or PORTWAY_CHROMIUM=/path/to/chromium).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export PORTWAY_SCREENSHOT="$root/docs/dashboard.png"
export PORTWAY_REQUIRE_ENGINES=1
PYTHONPATH=src .venv/bin/python -m pytest -q -p no:cacheprovider \
  tests/integration/test_dashboard_browser.py "$@"
echo "wrote $PORTWAY_SCREENSHOT"
