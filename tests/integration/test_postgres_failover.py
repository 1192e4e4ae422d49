"""Two ``portway server`` processes (each with its controller) share one
PostgreSQL store with Docker as the target: one leads, the other stands by.
Killing the leader (SIGKILL) or freezing it (SIGSTOP, the case that only
fencing makes safe) hands the lease over within a bound, and the workload
never gets two reconcilers at once: exactly the desired replicas, one
container per index, and the passes and store writes of the two holders
never overlap in time."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from portway.store import Store
from tests.integration.e2e import (
    by_label,
    containers,
    eventually,
    free_port_range,
    http_get,
    workload_yaml,
)

pytestmark = [pytest.mark.docker, pytest.mark.postgres]

LEASE_TTL = 5.0
#: a dead leader on this host is noticed at the standby's next poll (1 s); one
#: that is merely frozen, or on another host, after the TTL
KILL_FAILOVER_BOUND = 3.0
FREEZE_FAILOVER_BOUND = LEASE_TTL + 3.0
PASS_LINE = re.compile(r"pass (\S+) by (\S+): ([\d.]+)-([\d.]+)")
NAME = "web"
DEBUG = ["--log-level", "debug"]


class Controller:
    """One ``portway server`` (debug log: it shows each reconcile pass), with
    a home and a log file of its own, as on a host of its own."""

    def __init__(self, tmp_path: Path, env: dict[str, str], label: str) -> None:
        home = tmp_path / label
        home.mkdir()
        self.log_path = tmp_path / f"server-{label}.log"
        self.port = free_port_range(1)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "portway", "server", "--port", str(self.port), *DEBUG],
                env=dict(env, PORTWAY_HOME=str(home)),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.marker = f":{self.proc.pid}:"
        eventually(self.healthy, timeout=30, what=f"server {label} to answer")

    def healthy(self) -> bool:
        assert self.proc.poll() is None, self.log()[-3000:]
        return json.loads(http_get(self.port, "/healthz")) == {"status": "ok"}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def passes(self) -> list[tuple[float, float]]:
        return [
            (float(m[3]), float(m[4]))
            for m in PASS_LINE.finditer(self.log())
            if self.marker in m[2] and m[1].endswith(f"/{NAME}")
        ]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture
def env(tmp_path: Path, pg_url: str) -> dict[str, str]:
    return dict(
        os.environ,
        PORTWAY_HOME=str(tmp_path),
        PORTWAY_STORE=pg_url,
        PORTWAY_CONTROLLER_LEASE_TTL=str(LEASE_TTL),
        PYTHONUNBUFFERED="1",
    )


@pytest.fixture
def controllers(namespace: str) -> Iterator[list[Controller]]:
    """Killed before the namespace's containers are removed."""
    started: list[Controller] = []
    yield started
    for controller in started:
        controller.stop()


def apply(tmp_path: Path, env: dict[str, str], namespace: str, replicas: int) -> None:
    path = tmp_path / f"web-{replicas}-{time.monotonic_ns()}.yaml"
    path.write_text(workload_yaml(NAME, namespace, replicas=replicas, readiness=False))
    result = subprocess.run(
        [sys.executable, "-m", "portway", "apply", "-f", str(path), "--no-wait"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def converged(client: docker.DockerClient, namespace: str, count: int) -> bool:
    """Exactly one running container per index 0..count-1 and nothing else."""
    items = [c for c in containers(client, namespace) if c["Labels"].get("portway.dev/workload")]
    indices = by_label(items, "portway.dev/replica")
    return sorted(indices) == sorted(str(i) for i in range(count)) and all(
        len(group) == 1 and group[0]["State"] == "running" for group in indices.values()
    )


def wait_for_holder(store: Store, controller: Controller, timeout: float) -> float:
    """Wait until ``controller`` holds the lease; returns when it was seen."""

    def holds() -> bool:
        lease = store.lease("controller")
        return lease is not None and controller.marker in lease.holder

    eventually(holds, timeout=timeout, interval=0.05, what=f"{controller.marker} to lead")
    return time.time()


def writes_by(store: Store, controller: Controller) -> list[float]:
    return [c.ts for c in store.changes(limit=100_000) if controller.marker in c.writer]


def assert_no_overlap(store: Store, old: Controller, new: Controller, cut: float) -> None:
    """Everything ``old`` did (passes, fenced writes) ended before ``new``
    started doing anything, and ``new`` did nothing before ``cut``."""
    old_passes = old.passes()
    new_passes = eventually(new.passes, timeout=30, what="a pass by the new leader")
    assert old_passes, old.log()[-3000:]
    new_start = min(start for start, _ in new_passes)
    assert new_start >= cut
    assert max(end for _, end in old_passes) < new_start
    old_writes, new_writes = writes_by(store, old), writes_by(store, new)
    assert new_writes, "the new leader wrote nothing"
    assert min(new_writes) >= cut
    assert not old_writes or max(old_writes) < min(new_writes)


def wait_until_quiet(controller: Controller, seconds: float = 1.0) -> None:
    """Wait until ``controller`` has not run a pass of the workload for ``seconds``."""

    def quiet() -> bool:
        passes = controller.passes()
        return bool(passes) and time.time() - max(end for _, end in passes) > seconds

    eventually(quiet, timeout=30, interval=0.1, what="the leader to be idle")


def test_leader_killed_or_frozen_is_replaced_without_double_reconciliation(
    tmp_path: Path,
    env: dict[str, str],
    pg_url: str,
    client: docker.DockerClient,
    namespace: str,
    controllers: list[Controller],
) -> None:
    """(The servers run with separate homes, as on separate hosts.)"""
    store = Store(pg_url)
    try:
        first = Controller(tmp_path, env, "first")
        controllers.append(first)
        wait_for_holder(store, first, timeout=30)
        second = Controller(tmp_path, env, "second")
        controllers.append(second)

        apply(tmp_path, env, namespace, replicas=3)
        eventually(lambda: converged(client, namespace, 3), timeout=60, what="3 replicas")

        # SIGKILL the leader in the middle of a scale-up
        apply(tmp_path, env, namespace, replicas=5)
        time.sleep(0.1)
        killed_at = time.time()
        first.proc.kill()
        first.proc.wait(timeout=10)
        took_over = wait_for_holder(store, second, timeout=30)
        kill_failover = took_over - killed_at
        eventually(lambda: converged(client, namespace, 5), timeout=60, what="5 replicas")
        apply(tmp_path, env, namespace, replicas=4)  # work that only the new leader can do
        eventually(lambda: converged(client, namespace, 4), timeout=60, what="4 replicas")
        assert_no_overlap(store, first, second, killed_at)

        # SIGSTOP the new leader: alive but silent, so only the TTL frees the
        # lease; when it wakes up it must notice and stop without writing.
        # (Frozen while idle: a pass frozen half-way would resume its engine
        # calls, which no store can fence; its store writes would be refused.)
        third = Controller(tmp_path, env, "third")
        controllers.append(third)
        wait_until_quiet(second)
        os.kill(second.proc.pid, signal.SIGSTOP)
        frozen_at = time.time()
        apply(tmp_path, env, namespace, replicas=2)
        took_over = wait_for_holder(store, third, timeout=30)
        freeze_failover = took_over - frozen_at
        eventually(lambda: converged(client, namespace, 2), timeout=60, what="2 replicas")
        os.kill(second.proc.pid, signal.SIGCONT)

        def stood_down() -> bool:  # stops reconciling and stands by again
            log = second.log()
            stops = re.search(r"controller \S+ stops: ", log)
            return stops is not None and "standing by" in log[stops.end() :]

        eventually(stood_down, timeout=LEASE_TTL * 2, what="the old leader to stand by")
        assert second.healthy()  # its API still serves
        assert_no_overlap(store, second, third, frozen_at)
        assert converged(client, namespace, 2)

        print(
            f"\nfailover after SIGKILL: {kill_failover:.2f}s, after SIGSTOP: {freeze_failover:.2f}s"
        )
        assert kill_failover < KILL_FAILOVER_BOUND
        assert LEASE_TTL * 0.5 < freeze_failover < FREEZE_FAILOVER_BOUND
    finally:
        store.close()
