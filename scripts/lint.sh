#!/usr/bin/env bash
# Every static check, all of them even when one fails; non-zero if any failed.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bin=$root/.venv/bin
[[ -x $bin/ruff ]] || { echo "lint.sh: no .venv with dev tools; run scripts/install.sh" >&2; exit 1; }

failed=()
check() {
  printf '==> %s\n' "$*"
  "$bin/$1" "${@:2}" || failed+=("$*")
}

check ruff check src tests bench
check ruff format --check src tests bench
check mypy
check lint-imports

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "lint.sh: ${#failed[@]} check(s) failed:" >&2
  printf '  - %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "==> lint: all checks passed"
