"""``GET /metrics`` of a real ``portway server``: the same metric names, in
the same units, for replicas on Docker, Podman and containerd; and a replica
the kernel kills for memory counted in ``portway_replica_oom_kills_total``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.integration.e2e import Portway, eventually, free_port_range, http_get, workload_yaml

pytestmark = [pytest.mark.docker, pytest.mark.podman, pytest.mark.containerd]

CONTAINERD = "containerd:///run/containerd/containerd.sock"
TARGETS = {
    "local-docker": None,  # registered on first use
    "local-podman": "podman:///run/podman/podman.sock",
    "local-containerd": CONTAINERD,
}
SERVER = (sys.executable, "-m", "portway", "server")
PER_REPLICA = (
    "portway_replica_cpu_seconds_total",
    "portway_replica_memory_bytes",
    "portway_replica_processes",
    "portway_replica_network_receive_bytes_total",
    "portway_replica_network_transmit_bytes_total",
    "portway_replica_restarts_total",
    "portway_replica_oom_kills_total",
)


class Server:
    def __init__(self, pw: Portway) -> None:
        self.port = free_port_range(1, start=30500)
        self.log_path = pw.home / "server.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*SERVER, "--port", str(self.port), "--stats-interval", "1"],
                env=pw.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        eventually(self.healthy, timeout=30, what="the server to answer")

    def healthy(self) -> bool:
        assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
        return json.loads(http_get(self.port, "/healthz")) == {"status": "ok"}

    def samples(self) -> list[Sample]:
        text = http_get(self.port, "/metrics", timeout=10)
        return [s for family in text_string_to_metric_families(text) for s in family.samples]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@dataclass(frozen=True)
class Served:
    pw: Portway
    server: Server
    #: namespace of a workload whose replica the kernel kills for memory,
    #: applied (without waiting) while the server starts, so it is done early
    oom_namespace: str


def _hog(namespace: str) -> str:
    text = workload_yaml(
        "hog",
        namespace,
        replicas=1,
        restart="never",
        readiness=False,
        # a second first: Docker misses an OOM kill in the first moments
        command=["sh", "-c", "sleep 1; dd if=/dev/zero bs=1M count=64 | tail"],
    ).replace("  replicas: 1\n", "  replicas: 1\n  resources: {memory: 8Mi}\n", 1)
    return _placed(text, "local-docker")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    pw = Portway(tmp_path_factory.mktemp("metrics"))
    pw.run("target", "add", "local-podman", "--address", TARGETS["local-podman"] or "")
    # the rest concurrently (each CLI start costs seconds on a busy machine);
    # the server notices a new target at its next check (1 s)
    oom_namespace = f"oom-{uuid.uuid4().hex[:6]}"
    hog = pw.home / "apply-hog.yaml"
    hog.write_text(_hog(oom_namespace))
    starting = [
        subprocess.Popen(
            [*pw.command(), "target", "add", "local-containerd", "--address", CONTAINERD],
            env=pw.env,
        ),
        subprocess.Popen([*pw.command(), "apply", "-f", str(hog), "--no-wait"], env=pw.env),
    ]
    server = Server(pw)
    for proc in starting:
        assert proc.wait(timeout=120) == 0
    try:
        yield Served(pw, server, oom_namespace)
    finally:
        # every file applied, deleted at once
        deleting = [
            subprocess.Popen(
                [*pw.command(), "delete", "-f", str(path)],
                env=pw.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for path in pw.home.glob("apply-*.yaml")
        ]
        for proc in deleting:
            proc.wait(timeout=180)
        server.stop()


def _placed(text: str, target: str) -> str:
    return text.replace("spec:\n", f"spec:\n  placement: {{targets: [{target}]}}\n", 1)


def _of(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [
        s
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def test_same_metric_names_with_values_on_every_engine(served: Served) -> None:
    pw, server = served.pw, served.server
    namespace = f"met-{uuid.uuid4().hex[:6]}"
    sleeper = ["sh", "-c", "exec sleep 3600"]
    documents = [
        _placed(
            workload_yaml(
                f"s-{target.removeprefix('local-')}",
                namespace,
                replicas=1,
                command=sleeper,
                readiness=False,
            ),
            target,
        )
        for target in TARGETS
    ]
    pw.apply("---\n".join(documents))

    def every_engine_sampled() -> list[Sample] | None:
        samples = server.samples()
        seen = {s.labels["engine"] for s in _of(samples, "portway_replica_memory_bytes")}
        return samples if {"docker", "podman", "containerd"} <= seen else None

    samples = eventually(every_engine_sampled, timeout=30, what="stats of all three engines")
    for target in TARGETS:
        engine = target.removeprefix("local-")
        labels = {"namespace": namespace, "workload": f"s-{engine}", "replica": "0"}
        for metric in PER_REPLICA:
            [sample] = _of(samples, metric, **labels)
            assert sample.labels["target"] == target and sample.labels["engine"] == engine
        [memory] = _of(samples, "portway_replica_memory_bytes", **labels)
        assert 0 < memory.value < 64 * 1024 * 1024, (engine, memory)  # a busybox sleep
        [pids] = _of(samples, "portway_replica_processes", **labels)
        assert pids.value >= 1
        running = _of(samples, "portway_replicas", state="running", target=target)
        assert running and running[0].value >= 1
    # `portway top` reads the same figures from the engines directly
    top = pw.json("top", "-n", namespace, "--interval", "0.5")["items"]
    assert {(i["engine"], i["target"]) for i in top} == {
        (t.removeprefix("local-"), t) for t in TARGETS
    }, top
    for item in top:
        assert item["memoryBytes"] > 0 and item["cpuPercent"] is not None, item
    # a GET of one workload (the API's fast path) is counted under its route template
    token = (pw.home / "admin.token").read_text().strip()
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/v1/namespaces/{namespace}/workloads/s-docker",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    samples = server.samples()
    # the controller's own series and the API's request histogram are there too
    names = {s.name for s in samples}
    assert {
        "portway_reconcile_duration_seconds_count",
        "portway_reconcile_queue_depth",
        "portway_scheduler_latency_seconds_count",
        "portway_api_request_duration_seconds_count",
    } <= names
    routes = {
        (s.labels["route"], s.labels["status"])
        for s in _of(samples, "portway_api_request_duration_seconds_count", method="GET")
    }
    assert ("/v1/namespaces/{namespace}/workloads/{name}", "200") in routes, routes
    assert ("/metrics", "200") in routes, routes


def test_an_oom_killed_replica_is_counted(served: Served) -> None:
    def killed() -> list[Sample] | None:
        samples = served.server.samples()
        found = _of(samples, "portway_replica_oom_kills_total", namespace=served.oom_namespace)
        return found if found and found[0].value >= 1 else None

    [sample] = eventually(killed, timeout=60, what="the OOM kill in /metrics")
    assert sample.value == 1 and sample.labels["engine"] == "docker"
    assert sample.labels["workload"] == "hog" and sample.labels["target"] == "local-docker"
    [restarts] = _of(
        served.server.samples(), "portway_replica_restarts_total", namespace=served.oom_namespace
    )
    assert restarts.value == 0  # restart policy never
    exited = _of(served.server.samples(), "portway_replicas", state="exited", target="local-docker")
    assert exited and exited[0].value >= 1
