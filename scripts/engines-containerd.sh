#!/usr/bin/env bash
# Make containerd ready for portway's containerd driver. Idempotent.
#
#  - containerd answers on /run/containerd/containerd.sock (started in the
#    background with setsid/nohup when it does not: there is no systemd here;
#    log: /var/log/portway/containerd.log);
#  - the CNI plugins (Debian: containernetworking-plugins) are in /usr/lib/cni,
#    and runc, iproute2, iptables and tini (tini-static: each replica's init);
#  - net.ipv4.conf.all.route_localnet=1, so that the portmap plugin's DNAT
#    rules also apply to connections to 127.0.0.1:hostPort (without it the
#    kernel drops packets DNAT-ed from the loopback address);
#  - the test images portway/busybox:latest and :v2 are imported from Docker
#    into containerd's "portway" namespace and unpacked for overlayfs;
#  - gVisor's runsc wrapper (scripts/gvisor.sh) is installed when runsc is,
#    so the driver offers the sandboxed tier (the runc shim runs the wrapper).
#
# It never touches the "moby" namespace (Docker's own).
#
#   scripts/engines-containerd.sh
set -euo pipefail

logdir=${PORTWAY_LOG_DIR:-/var/log/portway}
timeout=${PORTWAY_ENGINE_TIMEOUT:-60}
sock=${PORTWAY_CONTAINERD_SOCKET:-/run/containerd/containerd.sock}
ns=portway
images=(portway/busybox:latest portway/busybox:v2)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

say() { printf '==> %s\n' "$*"; }
die() { printf 'engines-containerd.sh: %s\n' "$*" >&2; exit 1; }
up() { [[ -S $sock ]] && ctr --address "$sock" version >/dev/null 2>&1; }
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "$@" >/dev/null ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends "$@" >/dev/null; }
}

command -v containerd >/dev/null && command -v ctr >/dev/null ||
  { say "install containerd"; apt_install containerd; }
command -v runc >/dev/null || { say "install runc"; apt_install runc; }
command -v ip >/dev/null || { say "install iproute2"; apt_install iproute2; }
command -v iptables >/dev/null || { say "install iptables"; apt_install iptables; }
# the driver runs tini-static as each replica's PID 1 (forwards SIGTERM, reaps zombies)
[[ -x /usr/bin/tini-static ]] || { say "install tini"; apt_install tini; }
if [[ ! -x /usr/lib/cni/bridge || ! -x /usr/lib/cni/portmap ]]; then
  say "install containernetworking-plugins"
  apt_install containernetworking-plugins
fi

# the sandboxed tier: the wrapper adds --network=host (see scripts/gvisor.sh);
# without runsc the target simply offers the standard tier only
if command -v runsc >/dev/null; then
  say "runsc wrapper for the sandboxed tier: $(bash "$here/gvisor.sh")"
else
  say "runsc is not installed: no sandboxed tier (scripts/install.sh installs it)"
fi

mkdir -p "$logdir"
if up; then
  say "containerd is up"
else
  say "start containerd (log: $logdir/containerd.log)"
  # from /: a daemon keeps its working directory, which its caller may delete
  setsid nohup env --chdir=/ containerd >>"$logdir/containerd.log" 2>&1 </dev/null &
  deadline=$((SECONDS + timeout))
  until up; do
    if ((SECONDS >= deadline)); then
      echo "engines-containerd.sh: containerd did not answer within ${timeout}s:" >&2
      tail -n 20 "$logdir/containerd.log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
fi

say "sysctl net.ipv4.conf.all.route_localnet=1 and net.ipv4.ip_forward=1"
sysctl -qw net.ipv4.conf.all.route_localnet=1
sysctl -qw net.ipv4.ip_forward=1

# The images come from Docker (no registry is reachable). Importing again is
# cheap (the content is deduplicated) and also unpacks any missing overlayfs
# snapshot, so it is done every time Docker is there.
if command -v docker >/dev/null && { docker info >/dev/null 2>&1 || bash "$here/engines.sh"; }; then
  bash "$here/build-images.sh" docker
  say "import ${images[*]} into containerd namespace $ns (unpacked for overlayfs)"
  docker save "${images[@]}" |
    ctr --address "$sock" -n "$ns" images import --snapshotter overlayfs - >/dev/null
else
  for image in "${images[@]}"; do
    ctr --address "$sock" -n "$ns" images ls -q | grep -qx "docker.io/$image" ||
      die "docker is needed to provide the test image $image"
  done
  say "docker is not available; keeping the images already in namespace $ns"
fi
say "containerd ready: namespace $ns has $(ctr --address "$sock" -n "$ns" images ls -q | tr '\n' ' ')"
