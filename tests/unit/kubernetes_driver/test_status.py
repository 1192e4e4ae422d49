"""Pod -> ReplicaStatus, for every phase and condition portway meets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tests.unit.kubernetes_driver.fixtures import load

from portway.drivers.base import PublishedPort, ReplicaState
from portway.drivers.kubernetes.status import pod_view, replica_status


@pytest.mark.parametrize(
    ("fixture", "state", "exit_code", "reason"),
    [
        ("pod-gated", ReplicaState.CREATED, None, ""),
        ("pod-unschedulable", ReplicaState.RESTARTING, None, "Unschedulable"),
        ("pod-container-creating", ReplicaState.RESTARTING, None, "ContainerCreating"),
        ("pod-image-never-pull", ReplicaState.EXITED, None, "ErrImageNeverPull"),
        ("pod-image-pull-backoff", ReplicaState.EXITED, None, "ImagePullBackOff"),
        ("pod-crashloop", ReplicaState.RESTARTING, None, "CrashLoopBackOff"),
        ("pod-running", ReplicaState.RUNNING, None, ""),
        ("pod-succeeded", ReplicaState.EXITED, 0, ""),
        ("pod-failed-error", ReplicaState.EXITED, 3, "Error"),
        ("pod-oomkilled", ReplicaState.EXITED, 137, "OOMKilled"),
        ("pod-evicted", ReplicaState.EXITED, 137, "Evicted"),
        ("pod-deadline-exceeded", ReplicaState.EXITED, 143, "DeadlineExceeded"),
        ("pod-terminating", ReplicaState.REMOVING, None, "Terminating"),
        ("pod-unknown", ReplicaState.UNKNOWN, None, "NodeLost"),
    ],
)
def test_state_exit_code_and_reason(
    fixture: str, state: ReplicaState, exit_code: int | None, reason: str
) -> None:
    view = pod_view(load(fixture))
    assert (view.state, view.exit_code, view.reason) == (state, exit_code, reason)


def test_oom_kill_is_reported_only_for_oomkilled() -> None:
    assert pod_view(load("pod-oomkilled")).oom_killed
    assert not pod_view(load("pod-failed-error")).oom_killed
    assert not pod_view(load("pod-evicted")).oom_killed


def test_running_pod_carries_times_ports_labels_and_handle() -> None:
    status = replica_status(load("pod-running"), "kind")
    assert status.handle.driver == "kubernetes"
    assert status.handle.id == status.handle.name == "pwc0ffee-shop-web-0-g1"
    assert status.handle.target == "kind"
    assert status.started_at == datetime(2026, 12, 6, 5, 0, 3, tzinfo=UTC)
    assert status.created_at == datetime(2026, 12, 6, 5, 0, 1, tzinfo=UTC)
    assert status.finished_at is None
    assert (status.index, status.generation, status.epoch) == (0, 1, 0)
    assert status.workload_key == "shop/web"
    assert status.image == "portway/busybox:latest"
    # hostPort on the hostIP asked for; a port without one at the Pod's IP
    assert status.ports == (
        PublishedPort(8080, "tcp", "127.0.0.1", 18080),
        PublishedPort(9090, "tcp", "10.244.1.7", 9090),
    )


def test_exited_pod_has_start_and_finish_times() -> None:
    status = replica_status(load("pod-failed-error"), "kind")
    assert status.started_at == datetime(2026, 12, 6, 5, 0, 3, tzinfo=UTC)
    assert status.finished_at == datetime(2026, 12, 6, 5, 2, tzinfo=UTC)
    assert status.error == "Error"


def test_messages_say_why() -> None:
    assert "not present with pull policy of Never" in pod_view(load("pod-image-never-pull")).error
    assert "Insufficient memory" in pod_view(load("pod-unschedulable")).error
    assert "low on resource: memory" in pod_view(load("pod-evicted")).error
    crash = pod_view(load("pod-crashloop"))
    assert crash.restarts == 3
    assert crash.finished_at == datetime(2026, 12, 6, 5, 1, 11, tzinfo=UTC)
    assert "back-off 40s" in crash.error


def test_node_and_addresses() -> None:
    view = pod_view(load("pod-running"))
    assert (view.node, view.host_ip, view.pod_ip) == ("kind-worker", "172.18.0.3", "10.244.1.7")


def test_host_port_on_any_address_is_reported_at_the_node() -> None:
    pod = load("pod-running")
    pod["spec"]["containers"][0]["ports"][0]["hostIP"] = "0.0.0.0"
    assert pod_view(pod).ports[0] == PublishedPort(8080, "tcp", "172.18.0.3", 18080)


def test_an_empty_object_is_pending_not_a_crash() -> None:
    view = pod_view({})
    assert view.state is ReplicaState.RESTARTING
    assert view.labels == {}
