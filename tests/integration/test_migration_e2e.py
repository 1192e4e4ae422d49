"""``portway migrate`` through the real CLI on Docker, Podman and containerd:
a stateful workload (a per-replica volume and a shared one) hops Docker →
Podman → containerd → Docker with every file's checksum read in the running
replica equal at every hop; then the migration is killed after each of its
steps in turn (``PORTWAY_MIGRATE_CRASH_AFTER``) and resumed: the data is
intact, never more than one copy runs across the three engines, exactly one
after the resume, and the old volumes go only at the end."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from portway.controller.records import CLUSTER_NAMESPACE, KIND_TARGET, KIND_WORKLOAD, cluster_id
from portway.drivers.base import LABEL_CLUSTER, LABEL_NAMESPACE, LABEL_WORKLOAD, ReplicaState
from portway.drivers.registry import open_driver
from portway.drivers.volumes import VolumeManager
from portway.errors import PortwayError
from portway.service.app import App, Settings
from portway.service.migration_steps import CRASH_AFTER_ENV, ORDER, Step
from portway.service.volumes import list_volumes, remove_volume
from tests.integration.test_volumes_e2e import TARGETS, Env, close, run_in, target_spec, workload

pytestmark = [pytest.mark.docker, pytest.mark.podman, pytest.mark.containerd]

# Counts its starts in its per-replica volume; serves /www.
STATEFUL = (
    "n=$(cat /data/starts 2>/dev/null || echo 0); echo $((n+1)) > /data/starts; "
    "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"
)
VOLUMES = """\
    - {name: data, type: named, mountPath: /data, perReplica: true}
    - {name: conf, type: named, mountPath: /conf}
"""
WRITE = (
    "dd if=/dev/urandom of=/data/blob bs=1024 count=512 2>/dev/null && "
    "mkdir -p /conf/d && seq 1 3000 > /conf/d/list && ln -sf d/list /conf/link"
)
CHECKSUMS = "cd / && sha256sum data/blob conf/d/list && readlink conf/link"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    from tests.integration.e2e import Portway

    portway = Portway(tmp_path)
    app = App(Settings(home=tmp_path, store_url="", local_wasm=False))
    for name, (driver, address) in TARGETS.items():
        if app.store.get(KIND_TARGET, CLUSTER_NAMESPACE, name) is None:
            app.store.create(KIND_TARGET, CLUSTER_NAMESPACE, name, target_spec(driver, address))
    yield Env(portway, app)
    for record in app.store.list(KIND_WORKLOAD):
        portway.run("delete", record.name, "-n", record.namespace, check=False)
    for view in list_volumes(app, None):
        with contextlib.suppress(PortwayError):
            remove_volume(app, view.namespace, view.name, force=True, target=view.target)
    app.close()


def copies(env: Env, namespace: str) -> dict[str, int]:
    """Running containers of the workload on each engine, by its labels."""
    counts: dict[str, int] = {}
    selector = {
        LABEL_CLUSTER: cluster_id(env.app.store),
        LABEL_NAMESPACE: namespace,
        LABEL_WORKLOAD: "keeper",
    }
    for target, (driver_name, address) in TARGETS.items():
        driver = open_driver(target, driver_name, address)
        try:
            owned = driver.list_owned(selector)
        finally:
            close(driver)
        running = [s for s in owned if s.state is ReplicaState.RUNNING]
        if running:
            counts[target] = len(running)
    return counts


def volumes_on(target: str, namespace: str) -> set[str]:
    driver_name, address = TARGETS[target]
    driver = open_driver(target, driver_name, address)
    try:
        assert isinstance(driver, VolumeManager)
        return {v.name for v in driver.list_volumes({LABEL_NAMESPACE: namespace})}
    finally:
        close(driver)


def checksums(env: Env, namespace: str) -> str:
    code, text = run_in(env, namespace, "keeper", 0, CHECKSUMS)
    assert code == 0, text
    return text


def starts(env: Env, namespace: str) -> int:
    code, text = run_in(env, namespace, "keeper", 0, "cat /data/starts")
    assert code == 0, text
    return int(text)


def migrate(env: Env, namespace: str, *args: str, crash: str = "") -> tuple[int, str]:
    env.cli.env.pop(CRASH_AFTER_ENV, None)
    if crash:
        env.cli.env[CRASH_AFTER_ENV] = crash
    try:
        done = env.cli.run("migrate", "keeper", "-n", namespace, *args, check=False)
    finally:
        env.cli.env.pop(CRASH_AFTER_ENV, None)
    return done.returncode, done.stdout + done.stderr


def set_up(env: Env, target: str) -> tuple[str, str]:
    namespace = f"mig-{uuid.uuid4().hex[:6]}"
    env.cli.apply(workload("keeper", namespace, target, 1, VOLUMES, STATEFUL))
    code, text = run_in(env, namespace, "keeper", 0, WRITE)
    assert code == 0, text
    return namespace, checksums(env, namespace)


def engine_names(namespace: str) -> set[str]:
    return {f"{namespace}-keeper-data-0", f"{namespace}-keeper-conf"}


def test_hops_docker_podman_containerd_docker_with_checksums(env: Env) -> None:
    namespace, written = set_up(env, "local-docker")
    assert copies(env, namespace) == {"local-docker": 1}
    for args, code, message in [
        (("--to", "nowhere"), 3, "--to nowhere: no such target"),
        (("--to", "local-docker"), 2, "already runs on local-docker"),
        (("--resume",), 3, "no migration of"),
        (("--resume", "--abort"), 2, "give one of them"),
    ]:
        refused, text = migrate(env, namespace, *args)
        assert (refused, message in text) == (code, True), text
    assert copies(env, namespace) == {"local-docker": 1}  # nothing was touched
    hops = ["local-podman", "local-containerd", "local-docker"]
    source = "local-docker"
    for hop, target in enumerate(hops, start=1):
        code, text = migrate(env, namespace, "--to", target)
        assert code == 0, text
        assert "[9/9] done" in text and f"runs on {target}" in text, text
        # nothing wrote to either volume after the pre-copy: a listing proves
        # it, and no stopped snapshot is taken (docs/volumes.md, snapshotted)
        assert text.count("unchanged since the pre-copy: no snapshot needed") == 2, text
        assert checksums(env, namespace) == written, f"hop {hop} to {target}"
        assert starts(env, namespace) == hop + 1  # the counter came along and counted on
        assert copies(env, namespace) == {target: 1}
        assert engine_names(namespace) <= volumes_on(target, namespace)
        assert not engine_names(namespace) & volumes_on(source, namespace), "old copy left"
        source = target

    # the file still placing it where it no longer has its data is refused
    stale = env.cli.apply(
        workload("keeper", namespace, "local-podman", 1, VOLUMES, STATEFUL), check=False
    )
    assert stale.returncode != 0, stale.stdout
    assert "was migrated to local-docker with its volumes" in stale.stderr, stale.stderr

    # apply is refused while a migration is in progress; --abort gives the
    # workload back to its old target, intact, and removes the new copy
    code, text = migrate(env, namespace, "--to", "local-podman", crash="restored")
    assert code == 137, text
    assert copies(env, namespace) == {}
    refused = env.cli.apply(
        workload("keeper", namespace, "local-docker", 1, VOLUMES, STATEFUL), check=False
    )
    assert refused.returncode != 0 and "is being migrated" in refused.stderr
    # and so is delete: it would leave the half-made copy and its volumes behind
    kept = env.cli.run("delete", "keeper", "-n", namespace, check=False)
    assert kept.returncode != 0 and "--abort`, then delete it" in kept.stderr, kept.stderr
    code, text = migrate(env, namespace, "--abort")
    assert code == 0, text
    from tests.integration.e2e import eventually

    eventually(lambda: copies(env, namespace) == {"local-docker": 1}, timeout=60, what="abort")
    eventually(lambda: checksums(env, namespace) == written, timeout=30, what="data after abort")
    assert not engine_names(namespace) & volumes_on("local-podman", namespace)


def test_killed_after_each_step_then_resumed(env: Env) -> None:
    """One workload, one migration per step, each killed right after that
    step and finished by ``--resume``; the destination cycles through the
    three engines."""
    namespace, written = set_up(env, "local-docker")
    cycle = ["local-podman", "local-containerd", "local-docker"]
    source = "local-docker"
    for number, step in enumerate(s for s in ORDER if s is not Step.DONE):
        target = cycle[number % 3]
        code, text = migrate(env, namespace, "--to", target, crash=step.value)
        assert code == 137, f"after {step.value}: {text}"
        running = copies(env, namespace)
        if step.position < Step.SWITCHED.position:
            # before the switch: the old target is the workload; it is quiesced
            # (or, after plan, still running), never the new one
            assert set(running) <= {source}, (step, running)
            assert engine_names(namespace) <= volumes_on(source, namespace), step
        else:
            assert set(running) <= {target}, (step, running)
        assert sum(running.values()) <= 1, (step, running)
        if step is Step.PRECOPIED:
            # the old copy still serves and writes after the pre-copy: the
            # final snapshot differs, so the restore must write it all again
            code, text = run_in(env, namespace, "keeper", 0, "echo late >> /conf/d/list")
            assert code == 0, text
            changed = checksums(env, namespace)
            assert changed != written
            written = changed

        code, text = migrate(env, namespace, "--resume")
        assert code == 0, f"resume after {step.value}: {text}"
        assert copies(env, namespace) == {target: 1}, step
        assert checksums(env, namespace) == written, f"data after a kill after {step.value}"
        if step is Step.PRECOPIED:  # /conf changed after the pre-copy, /data did not
            assert "(1 unchanged since the pre-copy)" in text, text
            assert text.count("no snapshot needed") == 1, text  # /conf's listing differs
        elif step.position < Step.RESTORED.position:
            assert "(2 unchanged since the pre-copy)" in text, text
        assert not engine_names(namespace) & volumes_on(source, namespace), step
        source = target
