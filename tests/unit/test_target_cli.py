"""The target commands in-process (typer's runner) on a private SQLite store,
with targets served by the fake driver: add/set with labels, capacity and
taints; cordon, uncordon, drain and remove; the columns of ``get targets``
and ``get replicas -o wide``. No controller runs: replicas are records
written by the test, and "moving" one is rewriting its record."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import FakeDriver
from typer.testing import CliRunner

from portway.cli.main import app
from portway.controller.records import (
    CLUSTER_NAMESPACE,
    KIND_REPLICA,
    KIND_TARGET,
    KIND_WORKLOAD,
    ReplicaView,
)
from portway.drivers import registry
from portway.drivers.base import Fingerprint, Health
from portway.service import targets as svc
from portway.service.app import App, Settings

DRIVER = "tclifake"
GI = 2**30


class TopologyFake(FakeDriver):
    """A healthy engine with 8 cores and 16 GiB, as its fingerprint says."""

    name = DRIVER

    def __init__(self, target: str, address: str) -> None:
        super().__init__(target)

    def fingerprint(self) -> Fingerprint:
        return Fingerprint(
            Health.HEALTHY,
            detail="fake engine",
            version="1.0",
            attributes={"cpus": "8", "memory": str(16 * GI)},
        )


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """The store the CLI uses (it opens its own App on the same file)."""
    registry.register(DRIVER, f"{__name__}:TopologyFake")
    monkeypatch.setenv("PORTWAY_HOME", str(tmp_path))
    monkeypatch.setenv("PORTWAY_DOCKER_SOCKET", str(tmp_path / "no-docker.sock"))
    monkeypatch.setenv("PORTWAY_LOCAL_WASM", "0")
    monkeypatch.delenv("PORTWAY_STORE", raising=False)
    application = App(Settings(home=tmp_path))
    yield application
    application.close()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def pw(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(app, list(args))


def add(runner: CliRunner, name: str, *flags: str) -> None:
    result = pw(runner, "target", "add", name, "--address", f"{DRIVER}://{name}", *flags)
    assert result.exit_code == 0, result.output


def target_spec(service: App, name: str) -> dict[str, Any]:
    return dict(service.store.require(KIND_TARGET, CLUSTER_NAMESPACE, name).spec)


def place(service: App, name: str, target: str, namespace: str = "default", **status: Any) -> None:
    """Record replica ``name`` (workload-index) on ``target``, as the controller would."""
    workload, _, index = name.rpartition("-")
    view = ReplicaView(workload=workload, index=int(index), target=target, state="running")
    service.store.create(
        KIND_REPLICA, namespace, name, {}, {**view.to_status(), "ready": True, **status}
    )


def move(service: App, namespace: str, name: str, target: str) -> None:
    record = service.store.require(KIND_REPLICA, namespace, name)
    service.store.update_status(record, {**record.status, "target": target})


def row_of(output: str, first: str) -> str:
    [line] = [line for line in output.splitlines() if line.split()[:1] == [first]]
    return line


# --- add -------------------------------------------------------------------------------


def test_add_stores_labels_capacity_and_taints(runner: CliRunner, service: App) -> None:
    result = pw(
        runner,
        "target",
        "add",
        "gpu-a",
        "--address",
        f"{DRIVER}://engine",
        "--label",
        "region=eu",
        "-l",
        "zone=a",
        "--capacity",
        "cpu=1.5,memory=4Gi",
        "--taint",
        "dedicated=gpu:NoSchedule",
        "--taint",
        "spot:PreferNoSchedule",
    )
    assert result.exit_code == 0, result.output
    assert f"target/gpu-a added ({DRIVER} at {DRIVER}://engine, healthy: fake engine)" in (
        result.output
    )
    assert target_spec(service, "gpu-a") == {
        "driver": DRIVER,
        "address": f"{DRIVER}://engine",
        "labels": {"region": "eu", "zone": "a"},
        "capacity": {"cpu": 1.5, "memory": 4 * GI},
        "taints": [
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
            {"key": "spot", "value": "", "effect": "PreferNoSchedule"},
        ],
    }
    view = service.targets.view("gpu-a")
    assert view is not None and view.healthy  # health was checked on add


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("cpu=2", {"cpu": 2.0}),
        ("cpu=500m", {"cpu": 0.5}),
        ("memory=512Mi", {"memory": 512 * 2**20}),
        ("memory=2G", {"memory": 2 * 10**9}),
        ("memory=1Ki,cpu=1.5", {"memory": 1024, "cpu": 1.5}),
    ],
)
def test_capacity_quantities(given: str, expected: dict[str, float]) -> None:
    assert svc.parse_capacity([given]) == expected


def test_several_targets_share_a_driver_and_an_address(runner: CliRunner, service: App) -> None:
    for name, zone in (("engine-a", "a"), ("engine-b", "b")):
        result = pw(
            runner, "target", "add", name, "--address", f"{DRIVER}://shared", "-l", f"zone={zone}"
        )
        assert result.exit_code == 0, result.output
    views = {v.name: v for v in service.target_views()}
    assert views["engine-a"].address == views["engine-b"].address == f"{DRIVER}://shared"
    assert (views["engine-a"].labels["zone"], views["engine-b"].labels["zone"]) == ("a", "b")


def test_add_without_address_uses_the_drivers_local_socket(
    runner: CliRunner, service: App, tmp_path: Path
) -> None:
    result = pw(runner, "target", "add", "docker-eu", "--driver", "docker", "-l", "region=eu")
    assert result.exit_code == 0, result.output
    # PORTWAY_DOCKER_SOCKET points nowhere: added all the same, and not healthy
    assert target_spec(service, "docker-eu")["address"] == f"docker://{tmp_path}/no-docker.sock"
    view = service.targets.view("docker-eu")
    assert view is not None and not view.healthy


@pytest.mark.parametrize(
    ("driver", "address"),
    [
        ("podman", "podman:///run/podman/podman.sock"),
        ("containerd", "containerd:///run/containerd/containerd.sock"),
        (DRIVER, None),
    ],
)
def test_default_addresses(service: App, driver: str, address: str | None) -> None:
    assert svc.default_address(service, driver) == address


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--capacity", "cpu=lots"], "--capacity 'cpu=lots': 'lots' is not a CPU amount"),
        (["--capacity", "cpu=0"], "--capacity 'cpu=0': cpu must be more than 0"),
        (["--capacity", "memory=4Gb"], "--capacity 'memory=4Gb': '4Gb' is not a size"),
        (["--capacity", "memory=0"], "--capacity 'memory=0': memory must be more than 0"),
        (["--capacity", "gpu=1"], "--capacity 'gpu=1': expected cpu=CORES and/or memory=SIZE"),
        (["--capacity", "cpu-"], "--capacity 'cpu-': expected cpu=CORES"),
        (["--taint", "gpu=yes:NoExecute"], "effect 'NoExecute' is not one of NoSchedule, "),
        (["--taint", "gpu=yes"], "--taint 'gpu=yes': expected KEY[=VALUE]:EFFECT"),
        (["--taint", "gpu=a b:NoSchedule"], "value 'a b' is not a label value"),
        (["--label", "region"], "--label 'region': expected KEY=VALUE"),
        (["--label", "-x=1"], "key '-x' is not a label key"),
        (["--driver", "nosuch"], "--driver nosuch: no such driver; known drivers are "),
        (["--driver", "docker"], f"--address {DRIVER}://t is for driver '{DRIVER}', not --driver"),
    ],
)
def test_add_refuses_bad_flags_and_writes_nothing(
    runner: CliRunner, service: App, flags: list[str], message: str
) -> None:
    result = pw(runner, "target", "add", "t", "--address", f"{DRIVER}://t", *flags)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert service.target_views() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["t", "--address", "nosuch:///x"], "no driver named 'nosuch' (the address scheme)"),
        (["t"], "give --driver (e.g. --driver docker) or --address URL"),
        (["t", "--driver", DRIVER], f"--driver {DRIVER} has no default address"),
        (["Bad_Name", "--driver", "docker"], "target name 'Bad_Name': use at most 63 lowercase"),
    ],
)
def test_add_refuses_what_it_cannot_resolve(
    runner: CliRunner, service: App, args: list[str], message: str
) -> None:
    result = pw(runner, "target", "add", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_add_refuses_a_duplicate_name(runner: CliRunner, service: App) -> None:
    add(runner, "a", "-l", "zone=a")
    again = pw(runner, "target", "add", "a", "--address", f"{DRIVER}://other")
    assert again.exit_code == 2
    assert "target a already exists; change it with `portway target set a`" in again.output
    assert target_spec(service, "a")["address"] == f"{DRIVER}://a"  # untouched


# --- set -------------------------------------------------------------------------------


def test_set_changes_labels_capacity_and_taints(runner: CliRunner, service: App) -> None:
    add(
        runner,
        "a",
        "-l",
        "region=eu",
        "-l",
        "zone=a",
        "--capacity",
        "cpu=2,memory=4Gi",
        "--taint",
        "dedicated=gpu:NoSchedule",
        "--taint",
        "dedicated=gpu:PreferNoSchedule",
    )
    result = pw(
        runner,
        "target",
        "set",
        "a",
        "--label",
        "zone=b",
        "--label",
        "region-",
        "--capacity",
        "memory-,cpu=4",
        "--taint",
        "dedicated:PreferNoSchedule-",
        "--taint",
        "spot=yes:PreferNoSchedule",
    )
    assert result.exit_code == 0, result.output
    spec = target_spec(service, "a")
    assert spec["labels"] == {"zone": "b"}
    assert spec["capacity"] == {"cpu": 4.0}
    assert spec["taints"] == [
        {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
        {"key": "spot", "value": "yes", "effect": "PreferNoSchedule"},
    ]
    assert "capacity 4 cpu (given), 16Gi (fingerprint)" in result.output

    cleared = pw(runner, "target", "set", "a", "--taint", "dedicated-", "--taint", "spot-")
    assert cleared.exit_code == 0, cleared.output
    assert "taints" not in target_spec(service, "a")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["a"], 2, "nothing to change: give --label, --capacity or --taint"),
        (["a", "--taint", "nosuch-"], 2, "--taint 'nosuch-': the target has no taint 'nosuch'"),
        (["a", "--taint", "x=y:Never"], 2, "effect 'Never' is not one of"),
        (["a", "--capacity", "cpu=-1"], 2, "--capacity 'cpu=-1'"),
        (["nowhere", "-l", "x=y"], 3, "target nowhere not found; known targets: a"),
    ],
)
def test_set_refuses_bad_changes(
    runner: CliRunner, service: App, args: list[str], code: int, message: str
) -> None:
    add(runner, "a", "-l", "zone=a")
    before = target_spec(service, "a")
    result = pw(runner, "target", "set", *args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert target_spec(service, "a") == before


# --- cordon / uncordon / drain ------------------------------------------------------------


def test_cordon_uncordon_and_drain_set_the_flags(runner: CliRunner, service: App) -> None:
    add(runner, "a")

    def flags() -> tuple[bool, bool]:
        spec = target_spec(service, "a")
        return bool(spec.get("cordoned")), bool(spec.get("draining"))

    def status() -> str:
        return row_of(pw(runner, "get", "targets").output, "a").split()[3]

    assert status() == "Ready"
    assert "target/a cordoned" in pw(runner, "target", "cordon", "a").output
    assert flags() == (True, False)
    assert status() == "Ready,SchedulingDisabled"
    assert "target/a already cordoned" in pw(runner, "target", "cordon", "a").output

    drained = pw(runner, "target", "drain", "a", "--no-wait")
    assert drained.exit_code == 0, drained.output
    assert "target/a drained" in drained.output  # nothing was on it
    assert flags() == (True, True)
    assert status() == "Draining"
    view = service.targets.view("a")
    assert view is not None and view.cordoned and view.draining

    assert "target/a uncordoned" in pw(runner, "target", "uncordon", "a").output
    assert flags() == (False, False)
    assert status() == "Ready"
    assert "already uncordoned" in pw(runner, "target", "uncordon", "a").output

    reasons = [e.reason for e in service.store.events(kind=KIND_TARGET, name="a")]
    assert reasons[-3:] == ["TargetCordoned", "TargetDraining", "TargetUncordoned"]
    assert pw(runner, "target", "cordon", "nowhere").exit_code == 3


@pytest.fixture
def no_embedded_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests play the controller themselves (records moved by hand)."""
    import contextlib

    from portway.service import workloads

    monkeypatch.setattr(workloads, "controller_running", lambda app: contextlib.nullcontext())


@pytest.mark.usefixtures("no_embedded_controller")
def test_drain_times_out_and_says_which_replicas_remain_and_why(
    runner: CliRunner, service: App
) -> None:
    add(runner, "a")
    add(runner, "b")
    place(service, "web-0", "a")
    place(service, "web-1", "a", message="waiting for a target")
    place(service, "web-2", "b")
    place(service, "db-0", "a", namespace="team")
    service.store.create(
        KIND_WORKLOAD,
        "default",
        "web",
        {},
        {"message": "0/2 targets available: 1 cordoned, 1 insufficient memory"},
    )

    result = pw(runner, "target", "drain", "a", "--timeout", "0")
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[:4] == [
        "target/a cordoned",
        "evicting workload/web-0",
        "evicting workload/web-1",
        "evicting workload/db-0 (namespace team)",
    ]
    assert "error: target/a not drained after 0s: 3 replica(s) still on it" in result.output
    assert (
        "  workload/web-1: running; waiting for a target; workload default/web: "
        "0/2 targets available: 1 cordoned, 1 insufficient memory"
    ) in lines
    assert "  workload/db-0 (namespace team): running" in lines
    assert target_spec(service, "a")["draining"] is True  # the drain stays asked for


@pytest.mark.usefixtures("no_embedded_controller")
def test_drain_reports_each_replica_as_it_leaves(
    runner: CliRunner, service: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    add(runner, "a")
    add(runner, "b")
    place(service, "web-0", "a")
    place(service, "web-1", "a")
    # what the controller would do between two polls: one replica per poll
    steps: Iterator[Callable[[], None]] = iter(
        [
            lambda: move(service, "default", "web-1", "b"),
            lambda: service.store.delete(service.store.require(KIND_REPLICA, "default", "web-0")),
        ]
    )
    slept: list[float] = []

    def controller_step(seconds: float) -> None:
        slept.append(seconds)
        next(steps)()

    real = svc.wait_drained
    monkeypatch.setattr(svc, "wait_drained", functools.partial(real, sleep=controller_step))
    result = pw(runner, "target", "drain", "a", "--timeout", "60")
    assert result.exit_code == 0, result.output
    tail = result.output.splitlines()[-3:]
    assert tail == [
        "workload/web-1 evicted (now on b)",
        "workload/web-0 removed",
        "target/a drained",
    ]
    assert slept == [0.5, 0.5]


def test_wait_drained_gives_up_at_the_deadline(service: App) -> None:
    service.store.create(
        KIND_TARGET, CLUSTER_NAMESPACE, "a", {"driver": DRIVER, "address": "x://", "labels": {}}
    )
    place(service, "web-0", "a")
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    left = svc.wait_drained(service, "a", 2.0, poll=0.5, clock=lambda: now[0], sleep=sleep)
    assert [r.key for r in left] == ["default/web-0"]
    assert now[0] == 2.0


def test_drain_rejects_a_negative_timeout(runner: CliRunner, service: App) -> None:
    add(runner, "a")
    result = pw(runner, "target", "drain", "a", "--timeout", "-1")
    assert result.exit_code == 2
    assert "--timeout -1: expected seconds, 0 or more" in result.output
    assert "draining" not in target_spec(service, "a")


# --- remove -------------------------------------------------------------------------------


def test_remove_refuses_while_replicas_are_on_it_unless_forced(
    runner: CliRunner, service: App
) -> None:
    add(runner, "a")
    place(service, "web-0", "a")
    refused = pw(runner, "target", "remove", "a")
    assert refused.exit_code == 2
    assert "target a still has 1 replica(s) (default/web-0); drain it first: " in refused.output
    assert "portway target drain a" in refused.output
    assert service.targets.view("a") is not None

    forced = pw(runner, "target", "remove", "a", "--force")
    assert forced.exit_code == 0, forced.output
    assert "target/a removed" in forced.output
    assert "1 replica(s) were recorded on it (default/web-0); the controller reschedules" in (
        forced.output
    )
    assert service.targets.view("a") is None
    assert pw(runner, "target", "remove", "a").exit_code == 3


def test_remove_of_an_empty_target_needs_no_force(runner: CliRunner, service: App) -> None:
    add(runner, "a")
    place(service, "web-0", "b")
    result = pw(runner, "target", "remove", "a")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "target/a removed"


def test_uncordon_is_refused_for_an_unknown_target(runner: CliRunner, service: App) -> None:
    result = pw(runner, "target", "uncordon", "ghost")
    assert result.exit_code == 3
    assert "target ghost not found; known targets: none" in result.output


# --- get targets / get replicas --------------------------------------------------------------


def test_get_targets_shows_status_capacity_labels_and_taints(
    runner: CliRunner, service: App
) -> None:
    add(runner, "a", "-l", "zone=a", "--capacity", "cpu=2,memory=4Gi", "--taint", "gpu:NoSchedule")
    add(runner, "b", "-l", "zone=b")
    pw(runner, "target", "cordon", "a")

    table = pw(runner, "get", "targets")
    assert table.exit_code == 0, table.output
    assert table.output.split()[:5] == ["NAME", "DRIVER", "HEALTH", "STATUS", "VERSION"]
    row = ["a", DRIVER, "healthy", "Ready,SchedulingDisabled", "1.0"]
    assert row_of(table.output, "a").split() == row

    wide = pw(runner, "get", "targets", "-o", "wide").output
    header = wide.splitlines()[0]
    for column in ("CAPACITY", "LABELS", "TAINTS"):
        assert column in header
    assert "2 cpu, 4Gi (given)" in row_of(wide, "a")
    assert "zone=a" in row_of(wide, "a") and "gpu:NoSchedule" in row_of(wide, "a")
    assert "8 cpu, 16Gi (fingerprint)" in row_of(wide, "b")
    assert "<none>" in row_of(wide, "b")  # no taints

    items = {
        t["name"]: t for t in json.loads(pw(runner, "get", "targets", "-o", "json").output)["items"]
    }
    assert items["a"]["status"] == "Ready,SchedulingDisabled"
    assert (items["a"]["cordoned"], items["a"]["draining"]) == (True, False)
    assert items["a"]["capacity"] == {
        "cpu": {"value": 2.0, "source": "given"},
        "memory": {"value": 4 * GI, "source": "given"},
    }
    assert items["a"]["taints"] == [{"key": "gpu", "value": "", "effect": "NoSchedule"}]
    assert items["b"]["capacity"]["memory"] == {"value": 16 * GI, "source": "fingerprint"}
    assert items["b"]["labels"] == {"zone": "b"}


def test_get_replicas_wide_shows_region_zone_and_why_placed(
    runner: CliRunner, service: App
) -> None:
    add(runner, "eu-a", "-l", "region=eu", "-l", "zone=eu-a")
    add(runner, "us-b", "-l", "topology.kubernetes.io/region=us", "-l", "zone=us-b")
    place(service, "web-0", "eu-a", placement_reason="least-allocated; spread zone 1/2")
    place(service, "web-1", "us-b", placement_reason="least-allocated; spread zone 2/2")
    place(service, "web-2", "gone")  # its target was removed with --force

    wide = pw(runner, "get", "replicas", "-o", "wide")
    assert wide.exit_code == 0, wide.output
    header = wide.output.splitlines()[0].split()
    assert header[:8] == [
        "NAMESPACE",
        "REPLICA",
        "STATE",
        "READY",
        "RESTARTS",
        "TARGET",
        "REGION",
        "ZONE",
    ]
    assert "PLACED" in header and "BECAUSE" in header and header[-1] == "MESSAGE"
    rows = [line.split() for line in wide.output.splitlines()[1:]]
    assert [r[5:8] for r in rows] == [
        ["eu-a", "eu", "eu-a"],
        ["us-b", "us", "us-b"],
        ["gone", "-", "-"],
    ]
    assert "least-allocated; spread zone 2/2" in wide.output.splitlines()[2]

    plain = pw(runner, "get", "replicas").output.splitlines()[0].split()
    assert plain == ["NAMESPACE", "REPLICA", "STATE", "READY", "RESTARTS", "TARGET"]

    items = json.loads(pw(runner, "get", "replicas", "-o", "json").output)["items"]
    assert [(i["target"], i["region"], i["zone"]) for i in items] == [
        ("eu-a", "eu", "eu-a"),
        ("us-b", "us", "us-b"),
        ("gone", "", ""),
    ]
    assert items[0]["placement_reason"] == "least-allocated; spread zone 1/2"
