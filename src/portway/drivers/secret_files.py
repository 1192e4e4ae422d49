"""Secret values as files on a host tmpfs, for the engine drivers to
bind-mount read-only into a replica.

Layout: ``<root>/<driver>.<target>/<container name>/<n>``, one file per delivered
value, directories 0700, files with the mode the spec asks, owned by the
replica's numeric user when the spec names one. ``root`` is
``PORTWAY_SECRETS_DIR`` or ``/run/portway/secrets``; it must be a tmpfs
(values must never reach a disk), so portway mounts a small private tmpfs
there when the host's /run is not one (as in containers and some VMs).

The engine sees only a host path in the mount list; the value never
passes through its API, so it is not in inspect output, env or labels.
This needs the engine on this host (a unix socket): a remote engine
cannot see the file, and those drivers do not declare ``secrets.files``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from portway.errors import PermanentDriverError

DEFAULT_ROOT = Path("/run/portway/secrets")
#: room for the values of every replica on this host (a tmpfs only uses what it holds)
TMPFS_SIZE = "64m"
#: a directory younger than this is spared by the sweep: its container may be
#: in the middle of being created
SWEEP_GRACE_SECONDS = 120.0

_mount_lock = threading.Lock()


@dataclass(frozen=True)
class SecretFile:
    """One value to place at ``mount_path`` in a replica. ``repr`` hides it."""

    mount_path: str
    data: bytes = field(repr=False)
    mode: int = 0o400
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True)
class Scope:
    """Whose files: one driver's target. The driver is part of the directory
    name so that two installations on one host that give one target name to
    different engines never sweep each other's files."""

    driver: str
    target: str

    @property
    def dirname(self) -> str:
        return f"{self.driver}.{self.target}"


@dataclass(frozen=True)
class SecretMount:
    """A host file to bind-mount read-only at ``mount_path``."""

    host_path: str
    mount_path: str


def secrets_root() -> Path:
    return Path(os.environ.get("PORTWAY_SECRETS_DIR", str(DEFAULT_ROOT)))


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding ``path`` (from /proc/self/mounts:
    the longest mount point that contains it)."""
    resolved = str(path.resolve())
    best, kind = "", ""
    with Path("/proc/self/mounts").open(encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) < 3:
                continue
            point = fields[1].replace("\\040", " ")
            inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, kind = point, fields[2]
    return kind


def ensure_tmpfs(root: Path, target: str) -> None:  # target: for the error only
    """Make ``root`` a tmpfs unless it is one; refuse rather than write a
    secret to a disk."""
    with _mount_lock:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if filesystem_type(root) == "tmpfs":
            return
        options = f"mode=0700,size={TMPFS_SIZE},nosuid,nodev,noexec"
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "portway-secrets", str(root)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or filesystem_type(root) != "tmpfs":
            raise PermanentDriverError(
                target,
                f"{root} is not on tmpfs and mounting one there failed "
                f"({result.stderr.strip() or 'no tmpfs after mount'}); secrets are never "
                "written to disk: mount a tmpfs there or set PORTWAY_SECRETS_DIR to one",
            )


def host_dir(scope: Scope, container: str) -> Path:
    """Where the container's secret files live on the host."""
    name = scope.dirname
    if "/" in name or "/" in container or container in ("", ".", ".."):
        raise ValueError(f"unsafe directory name {name!r}/{container!r}")
    return secrets_root() / name / container


def materialize(scope: Scope, container: str, files: Sequence[SecretFile]) -> list[SecretMount]:
    """Write each value under the container's directory; returns what to
    mount where. Rewrites what an earlier attempt left (create is idempotent)."""
    if not files:
        return []
    target = scope.target
    root = secrets_root()
    directory = host_dir(scope, container)
    ensure_tmpfs(root, target)
    try:
        directory.parent.mkdir(mode=0o700, exist_ok=True)
        directory.mkdir(mode=0o700, exist_ok=True)
        mounts = []
        for n, item in enumerate(files):
            path = directory / str(n)
            path.unlink(missing_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(item.data)
            if item.uid is not None:
                os.chown(path, item.uid, item.gid if item.gid is not None else item.uid)
            path.chmod(item.mode)
            mounts.append(SecretMount(str(path), item.mount_path))
    except OSError as exc:
        remove(scope, container)
        raise PermanentDriverError(
            target, f"{container}: cannot write its secret files under {root}: {exc.strerror}"
        ) from None
    return mounts


def remove(scope: Scope, container: str) -> None:
    """Forget the container's secret files (nothing to do if there are none)."""
    with contextlib.suppress(ValueError):
        shutil.rmtree(host_dir(scope, container), ignore_errors=True)


def has_files(scope: Scope) -> bool:
    return (secrets_root() / scope.dirname).is_dir()


def sweep(scope: Scope, live: Iterable[str], now: float | None = None) -> list[str]:
    """Remove the directories of ``scope`` whose container no longer exists
    (``live``: every container name the engine has). Returns what went."""
    base = secrets_root() / scope.dirname
    if not base.is_dir():
        return []
    keep = set(live)
    now = time.time() if now is None else now
    removed = []
    for entry in base.iterdir():
        if entry.name in keep:
            continue
        with contextlib.suppress(OSError):
            if now - entry.stat().st_mtime < SWEEP_GRACE_SECONDS:
                continue
            shutil.rmtree(entry)
            removed.append(entry.name)
    return removed


def numeric_owner(user: str | None) -> tuple[int | None, int | None]:
    """(uid, gid) of a ``uid`` or ``uid:gid`` user; (None, None) for a user
    name, which only the image's /etc/passwd can resolve (the file then stays
    root's: give a numeric user to read a 0400 file as non-root)."""
    if not user:
        return None, None
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        return None, None
    return int(uid), int(gid) if gid else None
