#!/usr/bin/env bash
# Install what portway needs on Debian 12: the Docker Engine from Debian's own
# packages (no other registry is reachable) and the project's venv.
# Idempotent: a second run changes nothing and only says so.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

say() { printf '==> %s\n' "$*"; }

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install.sh: run as root (or install sudo)" >&2; exit 1; }
  sudo=(sudo)
fi

# --- system packages --------------------------------------------------------
# docker.io, containerd, runc: the engines; busybox-static: test images;
# containernetworking-plugins, iptables, tini: the containerd driver's networking
# and init; podman: the Podman driver; runsc: gVisor, the sandboxed isolation tier;
# haproxy: the ingress data plane; wrk: the ingress benchmark's load generator;
# postgresql: the shared store of several servers (scripts/engines-postgres.sh);
# chromium: the web dashboard's browser tests (driven headless by Playwright).
packages=(docker.io containerd runc busybox-static docker-compose iproute2 curl python3-venv
  containernetworking-plugins iptables tini podman catatonit netavark aardvark-dns runsc
  haproxy wrk postgresql chromium)
missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  say "apt-get update"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  say "apt-get install ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  say "system packages present (${packages[*]})"
fi

# --- python -----------------------------------------------------------------
# The first interpreter >= 3.11 that can make a venv: PYTHON if set, then
# python3 on PATH (pyenv here), then Debian's own.
python_ok() {
  "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}
python=""
for candidate in ${PYTHON:-} python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null && python_ok "$candidate"; then
    python=$candidate
    break
  fi
done
[[ -n $python ]] || { echo "install.sh: no python3 >= 3.11 with venv found" >&2; exit 1; }

venv=$root/.venv
if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  say "create .venv with $("$python" --version 2>&1) ($(command -v "$python"))"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
else
  say ".venv present ($("$venv/bin/python" --version 2>&1))"
fi

# Reinstall only when the dependency list changed since the last install.
stamp=$venv/.portway-install-stamp
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
if [[ $want != "$have" ]] || [[ ! -x $venv/bin/portway ]]; then
  say "pip install -e '.[dev]'"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]'
  printf '%s\n' "$want" >"$stamp"
else
  say "python dependencies up to date (pyproject.toml unchanged)"
fi
# An editable install leaves our modules uncompiled, and with
# PYTHONDONTWRITEBYTECODE set (as on this machine) every CLI call compiled
# them again: 0.15 s of each `portway` command. Stale files are rebuilt here
# and ignored by Python anyway (it checks the source's mtime).
"$venv/bin/python" -m compileall -q src >/dev/null || say "compileall failed (the CLI only starts slower)"
