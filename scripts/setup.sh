#!/usr/bin/env bash
# First command of the README: install everything, start the engine, build the
# example images and run the hello workload, then say where it answers.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
say() { printf '==> %s\n' "$*"; }

scripts/install.sh
scripts/engines.sh
if [[ ! -f scripts/build-images.sh ]]; then
  echo "setup.sh: scripts/build-images.sh is missing; cannot build the example images" >&2
  exit 1
fi
bash scripts/build-images.sh

say "portway apply -f examples/hello.yaml"
.venv/bin/portway apply -f examples/hello.yaml

# Endpoints look like "tcp 8080 -> 127.0.0.1:18080"; a wide COLUMNS keeps the
# table from truncating them. Replicas may need a moment to publish their ports.
endpoints=""
for _ in $(seq 1 30); do
  listing=$(COLUMNS=1000 .venv/bin/portway get replicas -o wide)
  endpoints=$(grep -E '\bhello-[0-9]+\b' <<<"$listing" |
    grep -oE 'tcp [0-9]+ -> [^ ,]+:[0-9]+' | sed -E 's/.* -> //; s/^(0\.0\.0\.0|\[::\])/127.0.0.1/' |
    sort -uV | sed 's|^|http://|' | tr '\n' ' ' || true)
  [[ -n $endpoints ]] && break
  sleep 1
done
printf '%s\n' "$listing"
if [[ -z $endpoints ]]; then
  echo "setup.sh: hello publishes no endpoint yet; see: .venv/bin/portway get replicas -o wide" >&2
  exit 1
fi
echo "hello is serving on: ${endpoints% }"
