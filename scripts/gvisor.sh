#!/usr/bin/env bash
# gVisor (Debian's runsc) as the sandboxed isolation tier, for every engine.
#
# On this kind of host runsc works only with its network in host mode, i.e.
# using the network namespace the engine made for the container instead of
# gVisor's own netstack. Docker takes that as "runtimeArgs"; Podman and the
# containerd runc shim take a runtime *binary*, so they get a wrapper that adds
# the flag:  /usr/local/lib/portway/runsc-hostnet
#
#   scripts/gvisor.sh            # install the wrapper (idempotent)
#   source scripts/gvisor.sh; portway_gvisor_wrapper   # prints its path

PORTWAY_RUNSC_WRAPPER=${PORTWAY_RUNSC_WRAPPER:-/usr/local/lib/portway/runsc-hostnet}

portway_gvisor_wrapper() (
  set -euo pipefail
  runsc_bin=$(command -v runsc || true)
  if [[ -z $runsc_bin ]]; then
    echo "gvisor.sh: runsc not found; run scripts/install.sh first" >&2
    return 1
  fi
  want=$(printf '#!/bin/sh\n# Written by portway scripts/gvisor.sh: runsc with host-mode networking.\nexec %s --network=host "$@"\n' "$runsc_bin")
  if [[ ! -x $PORTWAY_RUNSC_WRAPPER || "$(cat "$PORTWAY_RUNSC_WRAPPER")" != "$want" ]]; then
    mkdir -p "$(dirname "$PORTWAY_RUNSC_WRAPPER")"
    printf '%s\n' "$want" >"$PORTWAY_RUNSC_WRAPPER"
    chmod 0755 "$PORTWAY_RUNSC_WRAPPER"
  fi
  echo "$PORTWAY_RUNSC_WRAPPER"
)

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  portway_gvisor_wrapper
fi
