"""The driver against a fake API server on 127.0.0.1: proves the client calls
(server-side apply content type, fieldManager, force, owner labels, the
scheduling gate, the stop deadline, deletes, list+watch with re-list on 410,
logs, exec over the websocket channels). The cluster's own behaviour is the
live suite's job (tests/live_kubernetes)."""

from __future__ import annotations

import gc
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.kubernetes_driver.fake_api import (
    NAMESPACE,
    TOKEN,
    FakeCluster,
    fake_api_server,
    write_kubeconfig,
)

from portway.drivers.base import Health, ReplicaRequest, ReplicaState
from portway.drivers.kubernetes.address import format_address
from portway.drivers.kubernetes.driver import KubernetesDriver
from portway.drivers.kubernetes.status import START_GATE
from portway.drivers.kubernetes.watch import PodCache
from portway.drivers.registry import open_driver
from portway.errors import ImageNotFoundError, PermanentDriverError, ReplicaGoneError
from portway.spec.model import WorkloadSpec


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """A leaked socket is reported by the test that leaked it, not a later one."""
    yield
    gc.collect()


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeCluster, Path]]:
    with fake_api_server() as (cluster, port):
        config = write_kubeconfig(tmp_path_factory.mktemp("kube") / "config", port)
        yield cluster, config


@pytest.fixture
def cluster(fake: tuple[FakeCluster, Path]) -> FakeCluster:
    return fake[0]


@pytest.fixture
def driver(fake: tuple[FakeCluster, Path]) -> Iterator[KubernetesDriver]:
    address = format_address("fake-ctx", str(fake[1]))
    opened = open_driver("kind", "kubernetes", address)
    assert isinstance(opened, KubernetesDriver)
    yield opened
    opened.close()


def _request(image: str = "portway/busybox:latest", **spec: Any) -> ReplicaRequest:
    model = WorkloadSpec.model_validate({"image": image, "command": ["sleep", "600"], **spec})
    return ReplicaRequest(
        namespace="shop",
        workload=f"w{uuid.uuid4().hex[:6]}",
        index=1,
        generation=2,
        template_hash=model.template_hash(),
        spec=model,
        cluster="c0ffee12",
    )


def _wait(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_fingerprint_reads_the_cluster_with_the_kubeconfig_token(
    driver: KubernetesDriver, cluster: FakeCluster
) -> None:
    fp = driver.fingerprint()
    assert fp.health is Health.HEALTHY, fp.detail
    assert fp.attributes["context"] == "fake-ctx"
    assert fp.attributes["namespace"] == NAMESPACE  # the context's namespace
    assert fp.attributes["container_runtimes"] == "containerd://1.7.18,cri-o://1.30.4"
    assert driver.capabilities().isolation_tiers == {"standard", "sandboxed", "microvm"}
    version = cluster.requests_to("GET", "/version")[-1]
    assert version.headers["authorization"] == f"Bearer {TOKEN}"


def test_create_applies_a_gated_pod_server_side(
    driver: KubernetesDriver, cluster: FakeCluster
) -> None:
    request = _request(isolation="sandboxed")
    handle = driver.create(request)
    assert (handle.driver, handle.id, handle.name) == ("kubernetes", request.name, request.name)
    [apply] = cluster.requests_to("PATCH", f"/pods/{request.name}")
    assert apply.path == f"/api/v1/namespaces/{NAMESPACE}/pods/{request.name}"
    assert apply.headers["content-type"] == "application/apply-patch+yaml"
    assert apply.query["fieldManager"] == ["portway"]
    assert apply.query["force"] == ["true"]
    assert apply.body["metadata"]["labels"] == request.labels("kind")
    assert apply.body["spec"]["schedulingGates"] == [{"name": START_GATE}]
    assert apply.body["spec"]["runtimeClassName"] == "gvisor"  # from the RuntimeClass list
    assert driver.inspect(handle).state is ReplicaState.CREATED
    # idempotent: a second create finds the Pod and applies nothing
    assert driver.create(request) == handle
    assert len(cluster.requests_to("PATCH", f"/pods/{request.name}")) == 1


def test_start_stop_restart_destroy(driver: KubernetesDriver, cluster: FakeCluster) -> None:
    request = _request()
    handle = driver.create(request)
    driver.start(handle)
    applies = cluster.requests_to("PATCH", f"/pods/{request.name}")
    assert len(applies) == 2
    assert "schedulingGates" not in applies[1].body["spec"]
    assert applies[1].query["fieldManager"] == ["portway"]
    running = driver.inspect(handle)
    assert running.state is ReplicaState.RUNNING
    driver.start(handle)  # running: nothing to do
    assert len(cluster.requests_to("PATCH", f"/pods/{request.name}")) == 2

    driver.stop(handle, 2.0)
    stop = cluster.requests_to("PATCH", f"/pods/{request.name}")[-1]
    assert stop.headers["content-type"] == "application/merge-patch+json"
    assert stop.query["fieldManager"] == ["portway-stop"]
    assert stop.body == {"spec": {"activeDeadlineSeconds": 1}}
    stopped = driver.inspect(handle)
    assert (stopped.state, stopped.exit_code) == (ReplicaState.EXITED, 143)
    assert stopped.error.startswith("DeadlineExceeded")
    driver.stop(handle, 2.0)  # exited: nothing to do
    assert len(cluster.requests_to("PATCH", f"/pods/{request.name}")) == 3

    driver.start(handle)  # a restart: a new Pod of the same name
    [delete] = cluster.requests_to("DELETE", f"/pods/{request.name}")
    assert delete.body["preconditions"]["uid"]
    assert delete.query["gracePeriodSeconds"] == ["0"]
    again = driver.inspect(handle)
    assert (again.state, again.handle) == (ReplicaState.RUNNING, handle)

    driver.destroy(handle)
    with pytest.raises(ReplicaGoneError, match="not found"):
        driver.inspect(handle)
    assert driver.recover(handle) is None
    driver.destroy(handle)  # gone already: fine


def test_list_owned_comes_from_list_then_watch(
    driver: KubernetesDriver, cluster: FakeCluster
) -> None:
    request = _request()
    before = len(cluster.requests_to("GET", "/pods"))
    owned = driver.list_owned({"portway.dev/workload": request.workload})
    assert owned == []
    handle = driver.create(request)
    _wait(lambda: len(driver.list_owned({"portway.dev/workload": request.workload})) == 1)
    [status] = driver.list_owned({"portway.dev/workload": request.workload})
    assert (status.handle, status.state) == (handle, ReplicaState.CREATED)
    new = cluster.requests_to("GET", "/pods")[before:]
    lists = [r for r in new if r.path.endswith("/pods") and "watch" not in r.query]
    watches = [r for r in new if r.query.get("watch") == ["true"]]
    # the cache lists every portway Pod once (a caller that cannot wait for
    # that first list, on a slow machine, lists its own selector directly)
    assert [r.query["labelSelector"] for r in lists].count(["portway.dev/managed=true"]) == 1
    assert watches and watches[0].query["allowWatchBookmarks"] == ["true"]
    assert watches[0].query["resourceVersion"][0]  # from the list, not "" (which means "now")
    driver.destroy(handle)
    assert driver.list_owned({"portway.dev/workload": request.workload}) == []


def test_watch_relists_after_410_gone(driver: KubernetesDriver, cluster: FakeCluster) -> None:
    api = driver.api()
    cluster.expire_next_watch = True
    errors: list[BaseException] = []

    class Source:
        def list_pods(self, selector: str) -> tuple[list[dict[str, Any]], str]:
            return api.list_pods(selector)

        def watch_pods(self, selector: str, version: str, seconds: int) -> Any:
            return api.watch_pods(selector, version, seconds)

    cache = PodCache(Source(), "portway.dev/managed=true", on_error=errors.append)
    cache.start()
    try:
        _wait(lambda: cache.lists >= 2)
        request = _request()
        driver.create(request)
        _wait(lambda: cache.get(request.name) is not None)
    finally:
        cache.close()
    assert not errors


def test_missing_image_is_refused_before_anything_is_made(
    driver: KubernetesDriver, cluster: FakeCluster
) -> None:
    request = _request(image="portway/missing:1")
    assert not driver.image_present("portway/missing:1")
    assert driver.image_present("portway/busybox:latest")
    with pytest.raises(ImageNotFoundError, match="never pulls"):
        driver.create(request)
    assert not cluster.requests_to("PATCH", f"/pods/{request.name}")


def test_what_is_not_claimed_is_refused_at_create(driver: KubernetesDriver) -> None:
    named = _request(volumes=[{"name": "data", "type": "named", "mountPath": "/data"}])
    with pytest.raises(PermanentDriverError, match="named volumes"):
        driver.create(named)
    bind = _request(volumes=[{"name": "h", "type": "bind", "source": "/srv", "mountPath": "/h"}])
    with pytest.raises(PermanentDriverError, match="hostPath on whichever node"):
        driver.create(bind)


def test_a_foreign_pod_of_that_name_is_not_adopted(
    driver: KubernetesDriver, cluster: FakeCluster
) -> None:
    request = _request()
    other = _request()
    driver.create(other)
    with cluster.lock:
        pod = cluster.pods[other.name]
        cluster.pods[request.name] = {**pod, "metadata": {**pod["metadata"], "name": request.name}}
    with pytest.raises(PermanentDriverError, match=r"labels differ: portway\.dev/workload"):
        driver.create(request)


def test_logs_tail_and_follow(driver: KubernetesDriver, cluster: FakeCluster) -> None:
    handle = driver.create(_request())
    cluster.logs[:] = [f"2026-12-06T05:00:0{i}.123456789Z line-{i}" for i in range(5)]
    cluster.follow_lines[:] = ["2026-12-06T05:00:09Z later"]
    lines = list(driver.logs(handle))
    assert [line.text for line in lines] == [f"line-{i}" for i in range(5)]
    assert lines[0].timestamp is not None and lines[0].timestamp.microsecond == 123456
    assert [line.text for line in driver.logs(handle, tail=2)] == ["line-3", "line-4"]
    log_request = cluster.requests_to("GET", f"/pods/{handle.id}/log")[-1]
    assert log_request.query["timestamps"] == ["true"]
    assert log_request.query["tailLines"] == ["2"]
    stop = threading.Event()
    seen: list[str] = []

    def follow() -> None:
        for line in driver.logs(handle, follow=True, tail=0, stop=stop):
            seen.append(line.text)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    _wait(lambda: seen == ["later"])
    stop.set()
    reader.join(timeout=5)
    assert not reader.is_alive(), "follow did not end after stop was set"


def test_exec_over_the_websocket_channels(driver: KubernetesDriver) -> None:
    request = _request()
    handle = driver.create(request)
    with pytest.raises(PermanentDriverError, match="container not found"):
        driver.exec(handle, ["true"])  # created, not running
    driver.start(handle)
    ok = driver.exec(handle, ["echo", "hi"])
    assert (ok.exit_code, ok.output) == (0, b"echo hi\n")
    failed = driver.exec(handle, ["sh", "-c", "exit 3"])
    assert failed.exit_code == 3
    assert failed.output == b"bye\noops\n"
    started = time.monotonic()
    slow = driver.exec(handle, ["sleep", "forever"], timeout=0.5)
    assert slow.exit_code == 124 and slow.output == b"sleeping\n"
    assert time.monotonic() - started < 8  # the fake answers after 10 s
    with pytest.raises(ReplicaGoneError):
        driver.exec(driver._handle("no-such-pod"), ["true"])


def test_events_follow_the_watch(driver: KubernetesDriver) -> None:
    stop = threading.Event()
    events: list[Any] = []
    request = _request()

    def read() -> None:
        for event in driver.events(stop):
            events.append(event)
            if event.handle_id == request.name and event.action == "start":
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert driver._pod_cache().wait_synced(5)
    handle = driver.create(request)
    driver.start(handle)
    reader.join(timeout=5)
    stop.set()
    mine = [e for e in events if e.handle_id == request.name]
    assert [e.action for e in mine] == ["create", "start"]
    assert mine[0].labels["portway.dev/workload"] == request.workload


def test_bad_context_and_unreachable_server(tmp_path: Path, fake: tuple[FakeCluster, Path]) -> None:
    wrong = KubernetesDriver("kind", format_address("nope", str(fake[1])))
    fp = wrong.fingerprint()
    assert fp.health is Health.UNHEALTHY
    assert "has no context 'nope'" in fp.detail and "fake-ctx" in fp.detail
    missing = KubernetesDriver("kind", format_address("x", str(tmp_path / "absent")))
    assert "cannot load kubeconfig" in missing.fingerprint().detail
    dead = write_kubeconfig(tmp_path / "dead", 9)  # nothing listens on port 9
    down = KubernetesDriver("kind", format_address("fake-ctx", str(dead)))
    fp = down.fingerprint()
    assert fp.health is Health.UNDETECTED
    assert "not reachable" in fp.detail
    with pytest.raises(PermanentDriverError, match="unknown option"):
        KubernetesDriver("kind", "kubernetes://x?bad=1")
