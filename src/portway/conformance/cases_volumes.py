"""Volumes: tmpfs (and its size), named volumes that outlive replicas,
read-only mounts, and host directories (binds).

Bind cases mount only a fresh temporary directory the suite made, so they
need the engine to share this host's filesystem (a local engine).
"""

from __future__ import annotations

import uuid
from pathlib import Path

from portway.capabilities.vocabulary import Feature
from portway.snapshots.manifest import FileEntry

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


@case(
    "volumes.per_replica",
    "each replica index keeps its own named volume across destroy and re-create",
    features=(Feature.VOLUMES_NAMED, Feature.VOLUMES_PER_REPLICA),
)
def per_replica(ctx: Context) -> None:
    token = _token()
    volume = {"name": "data", "type": "named", "mountPath": "/data", "perReplica": True}
    writers = [
        ctx.run(
            {"command": ["sh", "-c", f"echo {token}-{i} > /data/id"], "volumes": [volume]},
            index=i,
        )
        for i in (0, 1)
    ]
    for i, writer in enumerate(writers):
        done = ctx.wait_exited(writer)
        expect(done.exit_code == 0, f"index {i} could not write its volume (exit {done.exit_code})")
        ctx.driver.destroy(writer)
    # the indices come back in the other order, as after a scale-down and up
    for i in (1, 0):
        script = f'echo "found: $(cat /data/id)"; [ "$(cat /data/id)" = {token}-{i} ]'
        ctx.expect_exit(
            {"command": ["sh", "-c", script], "volumes": [volume]},
            0,
            f"index {i} re-created (generation 2) reading what index {i} wrote, not the other's",
            index=i,
            generation=2,
        )


@case(
    "volumes.snapshots",
    "a named volume's writer pauses and resumes; the volume exports to a tar whose "
    "files import into a new volume intact",
    features=(Feature.VOLUMES_NAMED, Feature.VOLUMES_SNAPSHOTS),
)
def snapshots(ctx: Context) -> None:
    from portway.drivers.volumes import Pauser, VolumeManager
    from portway.snapshots.manifest import compare, scan_archive

    driver = ctx.driver
    expect(
        isinstance(driver, VolumeManager) and isinstance(driver, Pauser),
        f"the {driver.name} driver declares volumes.snapshots but is not a VolumeManager "
        "and a Pauser",
    )
    assert isinstance(driver, VolumeManager) and isinstance(driver, Pauser)
    token = _token()
    volume = {"name": "data", "type": "named", "mountPath": "/data"}
    script = (
        f"mkdir -p /data/sub && echo {token} > /data/sub/token && "
        "dd if=/dev/zero of=/data/zeros bs=1024 count=64 2>/dev/null && "
        "ln -s sub/token /data/link && touch /data/ready && exec sleep 60"
    )
    writer = ctx.run({"command": ["sh", "-c", script], "volumes": [volume]})
    ctx.wait_running(writer)
    source = f"{ctx.namespace}-w-data"
    ctx.wait_for(
        lambda: any(e.path == "ready" for e in _exported(driver, ctx, source)),
        10,
        "the writer marked its volume ready",
    )
    users = [u.handle.name for u in driver.volume_users(source)]
    expect(writer.name in users, f"volume_users({source}) = {users}, without {writer.name}")
    driver.pause(writer)
    try:
        paused = ctx.inspect(writer)
        expect(paused.state.value == "paused", f"after pause the writer is {paused.state.value}")
        archive = ctx.bind_dir() / "volume.tar"
        driver.export_volume(source, archive)
    finally:
        driver.unpause(writer)
    ctx.wait_running(writer, timeout=5)
    taken = scan_archive(archive)
    by_path = {e.path: e for e in taken}
    expect(
        by_path.get("sub/token") is not None and by_path["sub/token"].size == len(token) + 1,
        f"the archive lacks sub/token or its size is wrong: {sorted(by_path)}",
    )
    expect(by_path.get("link") is not None and by_path["link"].link == "sub/token", "no symlink")
    copy = f"{ctx.namespace}-restored"
    driver.create_volume(copy, {"portway.dev/namespace": ctx.namespace})
    ctx.track_volume(copy)
    driver.import_volume(copy, archive)
    again = scan_archive(_export(driver, ctx, copy))
    check = compare(taken, again)
    expect(check.ok, f"the imported volume differs from the export: {check.describe()}")
    reader = (
        f'[ "$(cat /data/sub/token)" = {token} ] && [ "$(cat /data/link)" = {token} ] && '
        "[ $(wc -c < /data/zeros) -eq 65536 ]"
    )
    ctx.expect_exit(
        {"command": ["sh", "-c", reader], "volumes": [{**volume, "source": copy}]},
        0,
        "a replica reading the imported volume (token, symlink, 64 KiB file)",
        index=1,
    )


def _export(driver: object, ctx: Context, name: str) -> Path:
    from portway.drivers.volumes import VolumeManager

    assert isinstance(driver, VolumeManager)
    archive = ctx.bind_dir() / f"{name}.tar"
    driver.export_volume(name, archive)
    return archive


def _exported(driver: object, ctx: Context, name: str) -> tuple[FileEntry, ...]:
    from portway.snapshots.manifest import scan_archive

    return scan_archive(_export(driver, ctx, name))
