#!/usr/bin/env bash
# Second command of the README (and what CI runs): install, start the engine,
# build the images, lint, then the whole test suite with CI strictness.
# Extra arguments go to pytest, e.g. scripts/test.sh -k store -x
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
say() { printf '==> %s\n' "$*"; }

# Tests that need an engine fail instead of skipping (see tests/conftest.py).
export PORTWAY_REQUIRE_ENGINES=1

failed=()
step() {
  local name=$1
  shift
  say "$name"
  "$@" || { failed+=("$name"); return 1; }
}

step install scripts/install.sh || { echo "test.sh: install failed; stopping" >&2; exit 1; }
if step engines scripts/engines.sh; then
  step build-images bash scripts/build-images.sh
  # containerd's images are exported from docker's, so this comes after.
  step engines-containerd bash scripts/engines-containerd.sh
else
  failed+=("build-images (skipped: no engine)")
fi
step engines-podman bash scripts/engines-podman.sh
# the shared-store tests' PostgreSQL (PORTWAY_TEST_PG_URL)
step engines-postgres bash scripts/engines-postgres.sh
step lint scripts/lint.sh

# --durations: the slowest tests in the CI log, to keep the suite under its time budget
pytest_phase() {
  local name=$1
  shift
  say "$name: pytest $*"
  .venv/bin/pytest --durations=30 "$@"
  local rc=$?
  case $rc in
    0) ;;
    5) failed+=("$name (no tests collected)") ;;
    *) failed+=("$name (exit $rc)") ;;
  esac
}

# Without arguments: the tests wait on engines far more than on the CPU, so
# all but the `serial` ones run in parallel on PORTWAY_TEST_WORKERS xdist
# workers (one module per worker at a time, see tests/parallel.py), then the
# `serial` ones (they kill or restart a shared engine) alone. With arguments,
# or PORTWAY_TEST_WORKERS=0: one plain serial pytest. See docs/testing.md.
workers=${PORTWAY_TEST_WORKERS:-4}
if [[ $# -gt 0 || $workers == 0 ]]; then
  pytest_phase pytest "$@"
else
  pytest_phase "pytest (parallel)" -m "not serial" -n "$workers" --dist loadgroup
  pytest_phase "pytest (serial)" -m serial
fi

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "test.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
say "all steps passed"
