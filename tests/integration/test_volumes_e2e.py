"""Volumes and snapshots through the real CLI and controller on Docker,
Podman and containerd: a stateful counter keeps its data across restart,
replacement and scale-down/up with per-replica volumes; retention keep vs
delete; ``volume rm`` refuses a volume in use; snapshot, modify, restore,
verified; export on Docker, import on Podman and on containerd, checksums
equal."""

from __future__ import annotations

import contextlib
import json
import tarfile
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from portway.controller.records import CLUSTER_NAMESPACE, KIND_TARGET, KIND_WORKLOAD
from portway.drivers.base import LABEL_NAMESPACE, LABEL_REPLICA, LABEL_WORKLOAD
from portway.drivers.registry import open_driver
from portway.drivers.volumes import VolumeManager
from portway.errors import ConflictError, PortwayError
from portway.service.app import App, Settings
from portway.service.operations import exec_in
from portway.service.snapshots import export_volume, list_snapshots, restore_snapshot
from portway.service.volumes import create_volume, list_volumes, remove_volume
from tests.integration.e2e import Portway, eventually

pytestmark = [pytest.mark.docker, pytest.mark.podman, pytest.mark.containerd]

TARGETS = {
    "local-docker": ("docker", "docker:///var/run/docker.sock"),
    "local-podman": ("podman", "podman:///run/podman/podman.sock"),
    "local-containerd": ("containerd", "containerd:///run/containerd/containerd.sock"),
}

# Counts its starts in its volume. PID 1 is sh (or the engine's init): it
# exits 0 on SIGTERM, so a stop is quick, and when httpd dies it exits too.
COUNTER = (
    "n=$(cat /data/starts 2>/dev/null || echo 0); echo $((n+1)) > /data/starts; "
    "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"
)


@dataclass
class Env:
    """The CLI for what is under test; the service layer in this process for
    set-up and reading (each CLI call costs a Python start-up)."""

    cli: Portway
    app: App


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    portway = Portway(tmp_path)
    app = App(Settings(home=tmp_path, store_url="", local_wasm=False))
    for name, (driver, address) in TARGETS.items():
        if app.store.get(KIND_TARGET, CLUSTER_NAMESPACE, name) is None:
            app.store.create(KIND_TARGET, CLUSTER_NAMESPACE, name, target_spec(driver, address))
    yield Env(portway, app)
    portway.kill_controllers()
    for record in app.store.list(KIND_WORKLOAD):
        portway.run("delete", record.name, "-n", record.namespace, check=False)
    for view in list_volumes(app, None):
        with contextlib.suppress(PortwayError):
            remove_volume(app, view.namespace, view.name, force=True)
    app.close()


def target_spec(driver: str, address: str) -> dict[str, Any]:
    return {"driver": driver, "address": address, "labels": {"portway.dev/local": "true"}}


def workload(
    name: str, namespace: str, target: str, replicas: int, volumes: str, command: str
) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: portway.dev/v1
        kind: Workload
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          placement: {{targets: [{target}]}}
          image: portway/busybox:latest
          command: ["sh", "-c", {json.dumps(command)}]
          replicas: {replicas}
          restart: {{policy: always, initialBackoffSeconds: 0.2, maxBackoffSeconds: 1}}
          ports: [{{containerPort: 8080}}]
          probes: {{readiness: {{http: {{port: 8080}}, periodSeconds: 0.5}}}}
          volumes:
        """
    ) + textwrap.indent(textwrap.dedent(volumes), "    ")


def run_in(env: Env, namespace: str, name: str, index: int, script: str) -> tuple[int, str]:
    done = exec_in(env.app, namespace, name, index, ["sh", "-c", script], 30)
    return done.exit_code, done.output.decode().strip()


def read(env: Env, namespace: str, name: str, index: int, path: str) -> str:
    code, text = run_in(env, namespace, name, index, f"cat {path}")
    assert code == 0, text
    return text


def starts(env: Env, namespace: str, index: int) -> int:
    return int(read(env, namespace, "counter", index, "/data/starts"))


def starts_now(env: Env, namespace: str, index: int) -> int | None:
    """``starts`` while the replica may be between two containers (None then)."""
    try:
        return starts(env, namespace, index)
    except (PortwayError, AssertionError):
        return None


def volumes(env: Env, namespace: str) -> dict[str, dict[str, Any]]:
    return {v.name: v.to_json() for v in list_volumes(env.app, namespace)}


def replace_behind_portways_back(target: str, namespace: str, index: int) -> None:
    """Remove the replica's container on the engine, as a crash of the host would."""
    driver_name, address = TARGETS[target]
    driver = open_driver(target, driver_name, address)
    owned = driver.list_owned(
        {LABEL_NAMESPACE: namespace, LABEL_WORKLOAD: "counter", LABEL_REPLICA: str(index)}
    )
    assert owned, f"no container of counter/{index} on {target}"
    for status in owned:
        driver.destroy(status.handle)
    close(driver)


def close(driver: object) -> None:
    closer = getattr(driver, "close", None)
    if callable(closer):
        closer()


@pytest.mark.parametrize("target", list(TARGETS))
def test_stateful_counter_keeps_its_data_and_retention_decides_on_delete(
    env: Env, target: str
) -> None:
    pw = env.cli
    namespace = f"vol-{uuid.uuid4().hex[:6]}"
    pw.wait_for_lease(pw.start_controller())
    spec = """\
        - {name: data, type: named, mountPath: /data, perReplica: true}
        - {name: cache, type: named, mountPath: /cache, retention: delete}
    """
    pw.apply(workload("counter", namespace, target, 2, spec, COUNTER))
    assert (starts(env, namespace, 0), starts(env, namespace, 1)) == (1, 1)
    found = volumes(env, namespace)
    assert {"counter-data-0", "counter-data-1", "counter-cache"} <= set(found), found
    assert all(v["target"] == target for v in found.values()), found

    # restart in place: the process dies, the controller starts the container again
    run_in(env, namespace, "counter", 0, "kill -9 $(pidof httpd)")
    eventually(lambda: starts_now(env, namespace, 0) == 2, timeout=30, what="index 0 restarted")
    # replacement: the container is gone, the controller makes a new one
    replace_behind_portways_back(target, namespace, 1)
    eventually(lambda: starts_now(env, namespace, 1) == 2, timeout=30, what="index 1 replaced")

    # scale down keeps index 1's volume; scale up gives it back to index 1
    pw.apply(workload("counter", namespace, target, 1, spec, COUNTER))
    kept = volumes(env, namespace)["counter-data-1"]
    assert kept["inUseBy"] == [], kept
    pw.apply(workload("counter", namespace, target, 2, spec, COUNTER))
    assert (starts(env, namespace, 0), starts(env, namespace, 1)) == (2, 3)

    refused = pw.run("volume", "rm", "counter-data-0", "-n", namespace, "--force", check=False)
    assert refused.returncode != 0
    assert f"volume {namespace}/counter-data-0 is in use by counter/0" in refused.stderr

    pw.run("delete", "counter", "-n", namespace)
    left = volumes(env, namespace)
    assert set(left) == {"counter-data-0", "counter-data-1"}, left  # cache: retention delete
    assert remove_volume(env.app, namespace, "counter-data-0").engine_removed
    assert set(volumes(env, namespace)) == {"counter-data-1"}


NOTES = (
    "[ -f /data/a ] || { echo v1 > /data/a; mkdir -p /data/d; seq 1 2000 > /data/d/b; }; "
    "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"
)


def test_snapshot_modify_restore_verified_on_docker(env: Env) -> None:
    pw = env.cli
    namespace = f"snap-{uuid.uuid4().hex[:6]}"
    pw.run("volume", "create", "notes", "-n", namespace, "--target", "local-docker")
    claim = "- {name: data, type: named, mountPath: /data, claim: notes}\n"
    pw.apply(workload("notes", namespace, "local-docker", 1, claim, NOTES))
    taken = pw.run("volume", "snapshot", "notes", "-n", namespace, "--name", "before")
    assert "snapshot/before of volume/notes: 2 files" in taken.stdout
    assert "consistency: paused (pw" in taken.stdout  # the running writer was frozen
    listed = list_snapshots(env.app, namespace, "notes")
    assert [(m.name, m.consistency.value, len(m.files)) for m in listed] == [
        ("before", "paused", 2)
    ]
    assert read(env, namespace, "notes", 0, "/data/a") == "v1"  # thawed: it answers

    run_in(env, namespace, "notes", 0, "echo v2 > /data/a; rm /data/d/b; echo new > /data/c")
    with pytest.raises(ConflictError, match="scale the workload to 0"):
        restore_snapshot(env.app, namespace, "notes", "before")
    with pytest.raises(ConflictError, match="is in use by notes/0"):
        remove_volume(env.app, namespace, "notes")

    pw.apply(workload("notes", namespace, "local-docker", 0, claim, NOTES))
    restored = pw.run("volume", "restore", "notes", "-n", namespace, "--from", "before")
    assert "archive: verified 2 files" in restored.stdout, restored.stdout
    assert "volume after restore: verified 2 files" in restored.stdout, restored.stdout
    pw.apply(workload("notes", namespace, "local-docker", 1, claim, NOTES))
    assert read(env, namespace, "notes", 0, "/data/a") == "v1"
    assert read(env, namespace, "notes", 0, "/data/d/b").splitlines()[-1] == "2000"
    assert run_in(env, namespace, "notes", 0, "test -e /data/c")[0] == 1


def manifest_files(path: Path) -> list[dict[str, Any]]:
    with tarfile.open(path) as bundle:
        stream = bundle.extractfile("manifest.json")
        assert stream is not None
        files: list[dict[str, Any]] = json.loads(stream.read())["files"]
    return files


def test_export_on_docker_imports_on_podman_and_containerd_with_equal_checksums(
    env: Env, tmp_path: Path
) -> None:
    pw = env.cli
    namespace = f"move-{uuid.uuid4().hex[:6]}"
    create_volume(env.app, namespace, "src", "local-docker", {})
    seed = tmp_path / "seed"
    (seed / "deep/er").mkdir(parents=True)
    (seed / "deep/er/random.bin").write_bytes(uuid.uuid4().bytes * 4096)
    (seed / "hello.txt").write_text("hello\n")
    (seed / "link").symlink_to("hello.txt")
    with tarfile.open(tmp_path / "seed.tar", "w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(seed, arcname=".")
    docker = open_driver("local-docker", *TARGETS["local-docker"])
    assert isinstance(docker, VolumeManager)
    docker.import_volume(f"{namespace}-src", tmp_path / "seed.tar")
    close(docker)

    exported = tmp_path / "src.tar"
    out = pw.run("volume", "export", "src", "-n", namespace, "-o", str(exported))
    assert "consistency: none" in out.stdout  # nothing mounts it
    hops = {"local-podman": "on-podman", "local-containerd": "on-containerd"}
    for target, name in hops.items():
        done = pw.run(
            "volume", "import", str(exported), "--name", name, "-n", namespace, "--target", target
        )
        assert f"volume/{name} imported on {target}" in done.stdout
        assert "volume after restore: verified 3 files" in done.stdout, done.stdout
    original = manifest_files(exported)
    assert {f["path"] for f in original} == {"deep/er/random.bin", "hello.txt", "link"}
    for name in hops.values():
        again = tmp_path / f"{name}.tar"
        export_volume(env.app, namespace, name, None, again)
        assert manifest_files(again) == original, name
