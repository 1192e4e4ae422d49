#!/usr/bin/env bash
# Make sure the Podman API service answers at /run/podman/podman.sock and the
# local test images exist in Podman's store. There is no systemd here, so the
# service is started by hand in the background, logging to /var/log/portway/.
# Idempotent: what is already installed, configured or running is left alone.
#
#   scripts/engines-podman.sh
#
# Environment: PORTWAY_PODMAN_SOCKET (default /run/podman/podman.sock),
# PORTWAY_PODMAN_SUBNET (default 10.89.0.0/24), PORTWAY_LOG_DIR (default
# /var/log/portway), PORTWAY_ENGINE_TIMEOUT (default 60).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
socket=${PORTWAY_PODMAN_SOCKET:-/run/podman/podman.sock}
# Podman's default network is 10.88.0.0/16, which the containerd driver's
# bridge (portway0) also uses by default: two routes for one subnet break
# published ports. Podman's containers get their own subnet instead.
subnet=${PORTWAY_PODMAN_SUBNET:-10.89.0.0/24}
pidfile=/run/podman/portway-service.pid
logdir=${PORTWAY_LOG_DIR:-/var/log/portway}
timeout=${PORTWAY_ENGINE_TIMEOUT:-60}
log=$logdir/podman.log
conf_dir=/etc/containers/containers.conf.d
conf=$conf_dir/portway.conf

say() { printf '==> %s\n' "$*"; }
die() {
  printf 'engines-podman.sh: %s\n' "$*" >&2
  exit 1
}

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || die "run as root (or install sudo)"
  sudo=(sudo)
fi

# --- packages -----------------------------------------------------------------
# podman 4.3 from Debian 12. runc is the runtime (crun fails on this host's
# hybrid cgroup v1 hierarchy); catatonit is the init process behind --init;
# netavark + aardvark-dns are the network stack (port publishing);
# busybox-static is what scripts/build-images.sh makes the test images from.
packages=(podman runc catatonit netavark aardvark-dns iptables busybox-static curl runsc)
missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  apt_install() {
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
      apt-get install -y -qq --no-install-recommends "${missing[@]}"
  }
  say "apt-get install ${missing[*]}"
  if ! apt_install; then
    say "apt-get update (package lists missing or stale)"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_install
  fi
else
  say "podman packages present ($(podman --version))"
fi

# --- configuration --------------------------------------------------------------
# gVisor for the sandboxed tier: Podman takes a runtime binary, so it gets the
# wrapper that adds runsc's --network=host (see scripts/gvisor.sh).
runsc_wrapper=$(bash "$root/scripts/gvisor.sh")
# Written only when it differs, so a running service is not surprised.
want_conf=$(
  cat <<EOF
# Written by portway's scripts/engines-podman.sh: what makes Podman work on a
# host without systemd, with cgroup v1 (hybrid) and low hard ulimits.
[containers]
# Podman's default raises nofile/nproc to 1048576 and fails where the host's
# hard limits are lower.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
# --init runs this (Debian's catatonit package).
init_path = "/usr/bin/catatonit"

[engine]
# crun cannot create containers on this cgroup v1 (hybrid) hierarchy.
runtime = "runc"
# No systemd here: plain cgroupfs, and events go to a file, not journald.
cgroup_manager = "cgroupfs"
events_logger = "file"

[engine.runtimes]
# The sandboxed isolation tier (gVisor); portway asks for it by this name.
runsc = ["$runsc_wrapper"]

[network]
network_backend = "netavark"
# not 10.88.0.0/16: see PORTWAY_PODMAN_SUBNET in scripts/engines-podman.sh
default_subnet = "$subnet"
EOF
)
conf_changed=false
if [[ -f $conf && "$(cat "$conf")" == "$want_conf" ]]; then
  say "podman configuration present ($conf)"
else
  say "write $conf"
  "${sudo[@]}" mkdir -p "$conf_dir"
  printf '%s\n' "$want_conf" | "${sudo[@]}" tee "$conf" >/dev/null
  conf_changed=true
fi

# --- the API service --------------------------------------------------------------
service_up() {
  [[ -S $socket ]] &&
    curl -fsS --max-time 5 --unix-socket "$socket" http://d/_ping >/dev/null 2>&1
}

# pid of the service this script started, if it still runs
our_service() {
  local pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [[ -n $pid && "$(cat "/proc/$pid/comm" 2>/dev/null)" == podman ]] && echo "$pid"
}

if $conf_changed && service_up; then
  # The service reads containers.conf when it starts: restart the one this
  # script started (containers keep running under conmon).
  if pid=$(our_service); then
    say "configuration changed: restart the podman API service (pid $pid)"
    "${sudo[@]}" kill "$pid"
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  else
    echo "engines-podman.sh: warning: $conf changed but the running podman API service" \
      "was not started by this script; restart it to apply the change" >&2
  fi
fi

if service_up; then
  say "podman API service is up ($socket)"
else
  mkdir -p "$logdir" "$(dirname "$socket")" "$(dirname "$pidfile")"
  # a socket file left by a service that died would make the new one refuse
  if [[ -S $socket ]] && ! pgrep -f "podman system service.*$socket" >/dev/null; then
    rm -f "$socket"
  fi
  say "start podman system service (log: $log)"
  # setsid keeps the service alive when the caller's process group is killed;
  # from / because a deleted working directory (a test's, a CI clone's) makes
  # every conmon it starts fail ("write child: broken pipe")
  setsid nohup env --chdir=/ podman system service --time=0 "unix://$socket" >>"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  deadline=$((SECONDS + timeout))
  until service_up; do
    if ((SECONDS >= deadline)); then
      echo "engines-podman.sh: the podman API service did not answer within ${timeout}s;" \
        "last 20 lines of $log:" >&2
      tail -n 20 "$log" >&2 2>/dev/null || echo "(no log)" >&2
      exit 1
    fi
    sleep 0.5
  done
  say "podman API service is up ($socket)"
fi

# --- the sandbox service -------------------------------------------------------------
# Podman's API cannot choose a container's runtime (it ignores oci_runtime,
# Podman issue 28429), so portway creates sandboxed replicas through a second
# service of the same Podman whose default runtime is gVisor's runsc, at
# NAME-sandboxed.sock next to the main socket (portway.drivers.podman
# sandbox_socket). Both share the store; the main service runs the rest.
sandbox_socket=${socket%.sock}-sandboxed.sock
sandbox_pidfile=/run/podman/portway-sandboxed-service.pid
sandbox_log=$logdir/podman-sandboxed.log

sandbox_up() {
  [[ -S $sandbox_socket ]] &&
    curl -fsS --max-time 5 --unix-socket "$sandbox_socket" http://d/_ping >/dev/null 2>&1
}

if ! grep -q '^runsc = ' "$conf"; then
  say "no runsc runtime in $conf: no sandbox service (the sandboxed tier stays off)"
elif $conf_changed && sandbox_up && pid=$(cat "$sandbox_pidfile" 2>/dev/null) &&
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == podman ]]; then
  say "configuration changed: restart the podman sandbox service (pid $pid)"
  "${sudo[@]}" kill "$pid"
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
fi
if grep -q '^runsc = ' "$conf"; then
  if sandbox_up; then
    say "podman sandbox service is up ($sandbox_socket, runtime runsc)"
  else
    if [[ -S $sandbox_socket ]] && ! pgrep -f "podman.*system service.*$sandbox_socket" >/dev/null; then
      rm -f "$sandbox_socket"
    fi
    say "start podman --runtime runsc system service (log: $sandbox_log)"
    setsid nohup env --chdir=/ podman --runtime runsc system service --time=0 "unix://$sandbox_socket" \
      >>"$sandbox_log" 2>&1 </dev/null &
    echo $! >"$sandbox_pidfile"
    deadline=$((SECONDS + timeout))
    until sandbox_up; do
      if ((SECONDS >= deadline)); then
        echo "engines-podman.sh: the podman sandbox service did not answer within ${timeout}s;" \
          "last 20 lines of $sandbox_log:" >&2
        tail -n 20 "$sandbox_log" >&2 2>/dev/null || echo "(no log)" >&2
        exit 1
      fi
      sleep 0.5
    done
    say "podman sandbox service is up ($sandbox_socket, runtime runsc)"
  fi
fi

# --- test images ----------------------------------------------------------------------
# build-images.sh itself rebuilds only what changed; skip it when both exist.
if podman image exists portway/busybox:latest && podman image exists portway/busybox:v2; then
  say "test images present in podman (portway/busybox:latest, :v2)"
else
  say "build test images in podman"
  PORTWAY_ENGINE_CLI=podman bash "$root/scripts/build-images.sh"
fi
