#!/usr/bin/env bash
# Make sure a Docker Engine answers. There is no systemd here, so containerd and
# dockerd are started by hand in the background, logging to /var/log/portway/.
# Idempotent: when `docker info` already works it does nothing.
#
#   scripts/engines.sh              # run it (the usual way)
#   source scripts/engines.sh; portway_engines_up
#                                   # the function runs in a subshell, so sourcing
#                                   # leaves no `set -e` or variables behind

portway_engines_up() (
  set -euo pipefail

  logdir=${PORTWAY_LOG_DIR:-/var/log/portway}
  timeout=${PORTWAY_ENGINE_TIMEOUT:-60}
  ctr_sock=/run/containerd/containerd.sock

  say() { printf '==> %s\n' "$*"; }
  docker_bin=$(command -v docker || true)
  [[ -n $docker_bin ]] || docker_bin=/usr/bin/docker
  engine_up() { "$docker_bin" info >/dev/null 2>&1; }
  containerd_up() {
    [[ -S $ctr_sock ]] && ctr --address "$ctr_sock" version >/dev/null 2>&1
  }
  # setsid keeps the daemons alive when the caller's process group is killed;
  # they run from / (a daemon keeps its working directory, which its caller
  # may delete: conmon then fails with "Failed to get working directory").
  start_bg() {
    local log=$1
    shift
    setsid nohup env --chdir=/ "$@" >>"$log" 2>&1 </dev/null &
  }

  # gVisor as the "runsc" runtime: the sandboxed isolation tier. dockerd
  # reloads its runtimes on SIGHUP, so a running engine picks it up in place.
  daemon_json=${PORTWAY_DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}
  config_changed=false
  if command -v runsc >/dev/null; then
    want_json=$(
      python3 - "$daemon_json" "$(command -v runsc)" <<'PY'
import json, sys
path, runsc = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        config = json.load(f)
except FileNotFoundError:
    config = {}
config.setdefault("runtimes", {})["runsc"] = {"path": runsc, "runtimeArgs": ["--network=host"]}
print(json.dumps(config, indent=2, sort_keys=True))
PY
    )
    if [[ ! -f $daemon_json || "$(cat "$daemon_json")" != "$want_json" ]]; then
      say "write $daemon_json (runtime runsc: gVisor with --network=host)"
      mkdir -p "$(dirname "$daemon_json")"
      printf '%s\n' "$want_json" >"$daemon_json"
      config_changed=true
    fi
  else
    say "runsc not installed: no sandboxed tier on docker (scripts/install.sh installs it)"
  fi

  if engine_up; then
    if $config_changed; then
      say "reload dockerd's configuration (SIGHUP)"
      pkill -HUP -x dockerd || true
      for _ in $(seq 1 20); do
        "$docker_bin" info --format '{{json .Runtimes}}' 2>/dev/null | grep -q runsc && break
        sleep 0.5
      done
    fi
    say "docker engine is up ($("$docker_bin" info --format '{{.ServerVersion}}' 2>/dev/null))"
    return 0
  fi
  for bin in containerd dockerd ctr; do
    command -v "$bin" >/dev/null || {
      echo "engines.sh: $bin not found; run scripts/install.sh first" >&2
      return 1
    }
  done
  mkdir -p "$logdir"

  if containerd_up; then
    say "containerd is up"
  else
    say "start containerd (log: $logdir/containerd.log)"
    start_bg "$logdir/containerd.log" containerd
    deadline=$((SECONDS + timeout))
    until containerd_up; do
      if ((SECONDS >= deadline)); then
        echo "engines.sh: containerd did not answer within ${timeout}s; last 20 log lines:" >&2
        tail -n 20 "$logdir/containerd.log" >&2 || true
        return 1
      fi
      sleep 0.5
    done
  fi

  start_dockerd() {
    # A pid file left by a dockerd that died makes the next one refuse to start.
    local pidfile=/var/run/docker.pid
    if [[ -f $pidfile ]] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      rm -f "$pidfile"
    fi
    say "start dockerd (log: $logdir/dockerd.log)"
    start_bg "$logdir/dockerd.log" dockerd --containerd="$ctr_sock"
  }
  if pgrep -x dockerd >/dev/null; then
    say "dockerd is already running; waiting for it to answer"
  else
    start_dockerd
  fi

  deadline=$((SECONDS + timeout))
  until engine_up; do
    # A dockerd that was shutting down when we looked has gone meanwhile:
    # start a new one rather than wait for an engine that will never answer.
    if ! pgrep -x dockerd >/dev/null; then
      start_dockerd
    fi
    if ((SECONDS >= deadline)); then
      echo "engines.sh: docker engine did not answer within ${timeout}s" >&2
      for log in "$logdir/containerd.log" "$logdir/dockerd.log"; do
        echo "--- last 20 lines of $log" >&2
        tail -n 20 "$log" >&2 2>/dev/null || echo "(no log)" >&2
      done
      return 1
    fi
    sleep 1
  done
  say "docker engine is up ($("$docker_bin" info --format '{{.ServerVersion}}' 2>/dev/null))"
)

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  portway_engines_up
fi
