"""Volumes: tmpfs (and its size), named volumes that outlive replicas,
read-only mounts, and host directories (binds).

Bind cases mount only a fresh temporary directory the suite made, so they
need the engine to share this host's filesystem (a local engine).
"""

from __future__ import annotations

import uuid

from portway.capabilities.vocabulary import Feature

from .case import Context, case
from .failures import expect


def _token() -> str:
    return uuid.uuid4().hex[:12]


@case(
    "volumes.tmpfs",
    "a tmpfs volume is mounted at its path as tmpfs and is writable",
    features=(Feature.VOLUMES_TMPFS,),
)
def tmpfs(ctx: Context) -> None:
    script = (
        "grep ' /scratch ' /proc/mounts; "
        "grep -q ' /scratch tmpfs ' /proc/mounts || { echo 'not a tmpfs'; exit 2; }; "
        'echo data > /scratch/file && [ "$(cat /scratch/file)" = data ]'
    )
    ctx.expect_exit(
        {
            "command": ["sh", "-c", script],
            "volumes": [{"name": "scratch", "type": "tmpfs", "mountPath": "/scratch"}],
        },
        0,
        "tmpfs at /scratch, writable (exit 2: not a tmpfs)",
    )


@case(
    "volumes.tmpfs_size",
    "a tmpfs sizeLimit is enforced: 512KiB fit in 1MiB, 2MiB do not",
    features=(Feature.VOLUMES_TMPFS, Feature.VOLUMES_TMPFS_SIZE),
)
def tmpfs_size(ctx: Context) -> None:
    script = (
        "grep ' /scratch ' /proc/mounts; "
        "dd if=/dev/zero of=/scratch/small bs=1024 count=512 || exit 3; rm /scratch/small; "
        "dd if=/dev/zero of=/scratch/big bs=1024 count=2048 && exit 4; exit 0"
    )
    ctx.expect_exit(
        {
            "command": ["sh", "-c", script],
            "volumes": [
                {"name": "scratch", "type": "tmpfs", "mountPath": "/scratch", "sizeLimit": "1Mi"}
            ],
        },
        0,
        "tmpfs sizeLimit 1Mi (exit 3: 512KiB did not fit; exit 4: 2MiB fit)",
    )


@case(
    "volumes.named_persists",
    "a named volume keeps its data when its replica is destroyed and another made",
    features=(Feature.VOLUMES_NAMED,),
)
def named_persists(ctx: Context) -> None:
    token = _token()
    volume = {"name": "data", "type": "named", "mountPath": "/data"}
    writer = ctx.run(
        {"command": ["sh", "-c", f"echo {token} > /data/keep"], "volumes": [volume]},
        generation=1,
    )
    first = ctx.wait_exited(writer)
    expect(first.exit_code == 0, f"writing to the named volume failed (exit {first.exit_code})")
    ctx.driver.destroy(writer)
    script = f'echo "found: $(cat /data/keep)"; [ "$(cat /data/keep)" = {token} ]'
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "volumes": [volume]},
        0,
        "a new replica (generation 2) reading what the destroyed one wrote",
        generation=2,
    )


@case(
    "volumes.named_read_only",
    "a read-only named volume can be read but not written",
    features=(Feature.VOLUMES_NAMED, Feature.VOLUMES_READ_ONLY),
)
def named_read_only(ctx: Context) -> None:
    token = _token()
    volume = {"name": "data", "type": "named", "mountPath": "/data"}
    ctx.expect_exit(
        {"command": ["sh", "-c", f"echo {token} > /data/keep"], "volumes": [volume]},
        0,
        "writing to the volume while it is writable",
    )
    script = (
        f'[ "$(cat /data/keep)" = {token} ] || exit 3; '
        "touch /data/new 2>&1 && exit 4; echo 'data' > /data/keep && exit 5; exit 0"
    )
    ctx.expect_exit(
        {"command": ["sh", "-c", script], "volumes": [{**volume, "readOnly": True}]},
        0,
        "the same volume read-only (exit 3: unreadable; 4 or 5: writable)",
        generation=2,
    )


@case(
    "volumes.bind",
    "a bind volume shows a host directory, and writes reach the host",
    features=(Feature.VOLUMES_BIND,),
)
def bind(ctx: Context) -> None:
    host = ctx.bind_dir()
    token = _token()
    (host / "from-host").write_text(token + "\n")
    script = (
        f'[ "$(cat /host/from-host)" = {token} ] || exit 3; '
        "echo container > /host/from-container || exit 4; chmod 666 /host/from-container"
    )
    ctx.expect_exit(
        {
            "command": ["sh", "-c", script],
            "volumes": [
                {"name": "host", "type": "bind", "mountPath": "/host", "source": str(host)}
            ],
        },
        0,
        f"bind of {host} (exit 3: host file not seen; 4: not writable)",
    )
    written = host / "from-container"
    expect(written.exists(), f"the replica's file is not in {host}")
    expect(
        written.read_text().strip() == "container",
        f"{written} holds {written.read_text()!r}",
    )


@case(
    "volumes.bind_read_only",
    "a read-only bind volume can be read but not written",
    features=(Feature.VOLUMES_BIND, Feature.VOLUMES_READ_ONLY),
)
def bind_read_only(ctx: Context) -> None:
    host = ctx.bind_dir()
    token = _token()
    (host / "from-host").write_text(token + "\n")
    script = (
        f'[ "$(cat /host/from-host)" = {token} ] || exit 3; touch /host/new 2>&1 && exit 4; exit 0'
    )
    ctx.expect_exit(
        {
            "command": ["sh", "-c", script],
            "volumes": [
                {
                    "name": "host",
                    "type": "bind",
                    "mountPath": "/host",
                    "source": str(host),
                    "readOnly": True,
                }
            ],
        },
        0,
        f"read-only bind of {host} (exit 3: host file not seen; 4: writable)",
    )
    expect(not (host / "new").exists(), f"a file appeared in {host} through a read-only bind")
