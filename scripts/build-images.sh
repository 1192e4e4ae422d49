#!/usr/bin/env bash
# Build the local test images portway/busybox:latest and portway/busybox:v2.
#
# No registry is reachable, so the images are made with `<engine> import` from
# a tiny root filesystem: Debian's static busybox plus a few files. Idempotent:
# an image is rebuilt only when its `portway.dev/build-hash` label differs from
# the hash of this script and of the busybox binary.
#
# Usage: scripts/build-images.sh [ENGINE_CLI]   (or PORTWAY_ENGINE_CLI=podman)
set -euo pipefail

ENGINE="${1:-${PORTWAY_ENGINE_CLI:-docker}}"
REPO="portway/busybox"
BUSYBOX=/usr/bin/busybox
APPLETS=(sh httpd nc sleep wget cat echo ls id env ps kill true false mkdir touch printf
  head tail date hostname grep sed dd ln rm whoami seq yes tr wc uname awk)

log() { printf 'build-images: %s\n' "$*" >&2; }

if ! command -v "$ENGINE" >/dev/null 2>&1; then
  log "container engine CLI '$ENGINE' not found"
  exit 1
fi

is_static() {
  [[ -x "$BUSYBOX" ]] || return 1
  # ldd exits non-zero and says "not a dynamic executable" for static binaries
  ! ldd "$BUSYBOX" >/dev/null 2>&1
}

if ! is_static; then
  log "installing busybox-static (a static $BUSYBOX is needed)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends busybox-static >/dev/null ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends busybox-static >/dev/null; }
  is_static || { log "$BUSYBOX is still missing or not static"; exit 1; }
fi

script_path="${BASH_SOURCE[0]}"
build_hash="$(cat "$script_path" "$BUSYBOX" | sha256sum | cut -c1-16)"

current_hash() {
  "$ENGINE" image inspect --format '{{ index .Config.Labels "portway.dev/build-hash" }}' "$1" \
    2>/dev/null || true
}

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

# build_image TAG INDEX_TEXT
build_image() {
  local tag="$1" text="$2" ref="$REPO:$1"
  if [[ "$(current_hash "$ref")" == "$build_hash" ]]; then
    log "$ref is up to date (build-hash $build_hash)"
    return 0
  fi
  local rootfs="$workdir/$tag" old_id
  old_id="$("$ENGINE" image inspect --format '{{ .Id }}' "$ref" 2>/dev/null || true)"
  mkdir -p "$rootfs"/{bin,etc,tmp,www,root,usr/bin,sbin,usr/sbin}
  install -m 0755 "$BUSYBOX" "$rootfs/bin/busybox"
  local applet
  for applet in "${APPLETS[@]}"; do
    ln -s busybox "$rootfs/bin/$applet"
  done
  chmod 1777 "$rootfs/tmp"
  chmod 0700 "$rootfs/root"
  printf '%s\n' \
    'root:x:0:0:root:/root:/bin/sh' \
    'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$rootfs/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' >"$rootfs/etc/group"
  printf '%s\n' "$text" >"$rootfs/www/index.html"
  chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/www/index.html"

  log "building $ref (build-hash $build_hash)"
  tar --numeric-owner --owner=0 --group=0 --sort=name --mtime='2000-01-01 00:00:00Z' \
    -C "$rootfs" -cf - . |
    "$ENGINE" import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'WORKDIR /' \
      --change 'EXPOSE 8080/tcp' \
      --change 'CMD ["httpd","-f","-p","8080","-h","/www"]' \
      --change "LABEL portway.dev/build-hash=$build_hash" \
      --message "portway test image ($tag)" \
      - "$ref" >/dev/null
  if [[ -n "$old_id" && "$old_id" != "$("$ENGINE" image inspect --format '{{ .Id }}' "$ref")" ]]; then
    # drop the previous build unless a container still uses it or it has other tags
    "$ENGINE" image rm "$old_id" >/dev/null 2>&1 || true
  fi
}

build_image latest "hello from portway"
build_image v2 "hello from portway v2"
log "done: $REPO:latest $REPO:v2"
