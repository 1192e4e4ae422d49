"""The foundation's "Must show" list, against the real dockerd, through the
real CLI and controller processes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from typing import Any

import docker
import pytest

from tests.integration.e2e import (
    IMAGE_V2,
    REPO,
    Portway,
    by_label,
    containers,
    eventually,
    free_port_range,
    http_get,
    listening,
    workload_yaml,
)

pytestmark = pytest.mark.docker


def replicas(pw: Portway, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = pw.json("get", "replicas", "-n", namespace)["items"]
    return items


def assert_converged(
    client: docker.DockerClient, namespace: str, name: str, count: int
) -> list[dict[str, Any]]:
    """Exactly one running container per index, all of one generation."""
    items = [
        c for c in containers(client, namespace) if c["Labels"].get("portway.dev/workload") == name
    ]
    indices = by_label(items, "portway.dev/replica")
    assert sorted(indices) == sorted(str(i) for i in range(count)), indices.keys()
    for index, group in indices.items():
        assert len(group) == 1, f"replica {index} has {len(group)} containers"
        assert group[0]["State"] == "running", group[0]["Status"]
    generations = {c["Labels"]["portway.dev/generation"] for c in items}
    assert len(generations) <= 1, generations
    return items


def test_apply_scale_update_delete(
    pw: Portway, client: docker.DockerClient, namespace: str
) -> None:
    port = free_port_range(4)
    applied = pw.apply(workload_yaml("web", namespace, replicas=2, host_port=port))
    assert "workload/web created" in applied.stdout
    assert f"127.0.0.1:{port}" in applied.stdout  # tells the user where to reach it
    first = assert_converged(client, namespace, "web", 2)
    assert http_get(port).strip() == "hello from portway"
    assert http_get(port + 1).strip() == "hello from portway"
    ids_before = {c["Labels"]["portway.dev/replica"]: c["Id"] for c in first}

    # scale up: new indices only, existing replicas untouched
    pw.apply(workload_yaml("web", namespace, replicas=4, host_port=port))
    scaled = assert_converged(client, namespace, "web", 4)
    ids_after = {c["Labels"]["portway.dev/replica"]: c["Id"] for c in scaled}
    assert ids_after["0"] == ids_before["0"] and ids_after["1"] == ids_before["1"]
    assert http_get(port + 3).strip() == "hello from portway"

    # scale down
    pw.apply(workload_yaml("web", namespace, replicas=1, host_port=port))
    assert_converged(client, namespace, "web", 1)
    with pytest.raises(OSError):
        http_get(port + 1, timeout=1)

    # change the image: rolling replacement, old generation removed
    pw.apply(workload_yaml("web", namespace, replicas=2, image=IMAGE_V2, host_port=port))
    updated = assert_converged(client, namespace, "web", 2)
    assert {c["Labels"]["portway.dev/generation"] for c in updated} == {"2"}
    assert http_get(port).strip() == "hello from portway v2"
    assert http_get(port + 1).strip() == "hello from portway v2"

    # change the environment: another rollout
    pw.apply(
        workload_yaml(
            "web", namespace, replicas=2, image=IMAGE_V2, host_port=port, env={"COLOR": "blue"}
        )
    )
    rolled = assert_converged(client, namespace, "web", 2)
    assert {c["Labels"]["portway.dev/generation"] for c in rolled} == {"3"}
    inspected = client.api.inspect_container(rolled[0]["Id"])
    assert "COLOR=blue" in inspected["Config"]["Env"]

    # re-applying the same file changes nothing
    again = pw.apply(
        workload_yaml(
            "web", namespace, replicas=2, image=IMAGE_V2, host_port=port, env={"COLOR": "blue"}
        )
    )
    assert "unchanged" in again.stdout
    assert {c["Id"] for c in assert_converged(client, namespace, "web", 2)} == {
        c["Id"] for c in rolled
    }

    # delete: nothing of the workload remains
    deleted = pw.run("delete", "web", "-n", namespace)
    assert "deleted" in deleted.stdout
    assert containers(client, namespace) == []
    assert pw.json("get", "workloads", "-n", namespace)["items"] == []
    assert replicas(pw, namespace) == []


def test_events_and_describe_tell_the_story(
    pw: Portway, client: docker.DockerClient, namespace: str
) -> None:
    pw.apply(workload_yaml("story", namespace, replicas=1))
    described = pw.run("describe", "workload", "story", "-n", namespace).stdout
    for word in ("Scheduled", "Started", "Phase:         Ready", "tcp 8080 -> 127.0.0.1:"):
        assert word in described, described


def test_killed_replica_is_restarted(
    pw: Portway, client: docker.DockerClient, namespace: str
) -> None:
    port = free_port_range(1)
    pw.apply(workload_yaml("crashy", namespace, replicas=1, host_port=port))
    pw.start_controller()
    [container] = assert_converged(client, namespace, "crashy", 1)
    client.api.kill(container["Id"])

    def restarted() -> bool:
        [replica] = replicas(pw, namespace)
        return replica["restart_count"] >= 1 and replica["state"] == "running"

    eventually(restarted, timeout=30, what="the killed replica to be restarted")
    eventually(lambda: http_get(port).strip() == "hello from portway", timeout=15)
    [after] = assert_converged(client, namespace, "crashy", 1)
    assert after["Id"] == container["Id"]  # restarted in place: same container, logs kept
    events = pw.json("get", "events", "crashy", "-n", namespace)["items"]
    reasons = [e["reason"] for e in events]
    assert "Crashed" in reasons and "Restarted" in reasons
    exited = next(e for e in events if e["reason"] == "Crashed")
    assert "137" in exited["message"]


def test_reapplying_after_the_engine_lost_the_replica_waits_until_it_runs_again(
    pw: Portway, client: docker.DockerClient, namespace: str
) -> None:
    """No controller runs between two commands, so the Ready the first apply
    stored says nothing of a container removed since; re-applying the same
    file must wait for a pass that looked at the engine again, and for the
    new replica's readiness (its server listens only after 2 s here)."""
    port = free_port_range(1)
    slow = ["sh", "-c", "sleep 2; exec httpd -f -p 8080 -h /www"]
    document = workload_yaml("lost", namespace, replicas=1, host_port=port, command=slow)
    pw.apply(document)
    [container] = assert_converged(client, namespace, "lost", 1)
    client.api.remove_container(container["Id"], force=True)
    assert containers(client, namespace) == []
    again = pw.apply(document)
    assert "unchanged" in again.stdout
    # checked as apply returns, with no waiting here: it was ready then
    [workload] = pw.json("get", "workloads", "-n", namespace)["items"]
    assert workload["status"]["phase"] == "Ready", workload["status"]
    [fresh] = assert_converged(client, namespace, "lost", 1)
    assert fresh["Id"] != container["Id"]
    assert http_get(port).strip() == "hello from portway"


def test_policy_never_leaves_replica_exited_and_reported(
    pw: Portway, client: docker.DockerClient, namespace: str
) -> None:
    pw.apply(workload_yaml("once", namespace, replicas=1, restart="never"))
    pw.start_controller()
    [container] = assert_converged(client, namespace, "once", 1)
    client.api.kill(container["Id"])

    def reported() -> dict[str, Any] | None:
        [replica] = replicas(pw, namespace)
        return replica if replica["state"] == "exited" else None

    replica = eventually(reported, timeout=30, what="the exit to be reported")
    assert replica["restart_count"] == 0
    assert replica["last_exit_code"] == 137
    assert replica["last_reason"] == "Error"
    time.sleep(3)  # several reconcile passes later it is still not restarted
    [still] = containers(client, namespace)
    assert still["State"] == "exited" and still["Id"] == container["Id"]
    [workload] = pw.json("get", "workloads", "-n", namespace)["items"]
    assert workload["status"]["phase"] == "Degraded"
    assert "exit code 137" in workload["status"]["message"]


def test_bad_input_changes_nothing(
    pw: Portway, client: docker.DockerClient, namespace: str
) -> None:
    port = free_port_range(2)
    pw.apply(workload_yaml("keep", namespace, replicas=1, host_port=port))
    [before] = assert_converged(client, namespace, "keep", 1)

    typo = workload_yaml("keep", namespace, replicas=3, host_port=port).replace(
        "containerPort", "contianerPort"
    )
    result = pw.apply(typo, check=False)
    assert result.returncode == 2
    assert "did you mean 'containerPort'" in result.stderr
    assert "spec.ports[0]" in result.stderr

    missing = pw.apply(
        workload_yaml("keep", namespace, replicas=1, host_port=port, image="portway/nope:1"),
        check=False,
    )
    assert missing.returncode != 0
    assert "portway/nope:1 is not present" in missing.stderr

    with listening(port + 1):
        busy = pw.apply(workload_yaml("keep", namespace, replicas=2, host_port=port), check=False)
    assert busy.returncode != 0
    assert f"127.0.0.1:{port + 1}/tcp is already in use" in busy.stderr

    # the previous desired state and its running replica are untouched
    [after] = assert_converged(client, namespace, "keep", 1)
    assert after["Id"] == before["Id"]
    [workload] = pw.json("get", "workloads", "-n", namespace)["items"]
    assert workload["spec"]["replicas"] == 1
    assert http_get(port).strip() == "hello from portway"


def _converge_or_gone(
    pw: Portway, client: docker.DockerClient, namespace: str, name: str, want: int | None
) -> None:
    """After a crash: wait for convergence (want replicas) or full removal (None)."""

    def check() -> bool:
        items = [
            c
            for c in containers(client, namespace)
            if c["Labels"].get("portway.dev/workload") == name
        ]
        if want is None:
            return not items
        try:
            assert_converged(client, namespace, name, want)
        except AssertionError:
            return False
        return True

    eventually(check, timeout=60, interval=0.3, what=f"{name} to converge to {want}")


CRASH_RUNS = int(os.environ.get("PORTWAY_CRASH_RUNS", "20"))


def test_controller_sigkill_at_random_points(
    pw: Portway, client: docker.DockerClient, namespace: str
) -> None:
    """Kill the controller with SIGKILL mid-apply, mid-scale and mid-delete;
    after a restart there is no orphan and no duplicate, and it converges."""
    rng = random.Random(int(os.environ.get("PORTWAY_CRASH_SEED", "1234")))
    name = "crash"
    replicas_now: int | None = None
    image = "portway/busybox:latest"
    port = free_port_range(6)
    for run in range(CRASH_RUNS):
        operation = rng.choice(["scale", "scale", "image", "delete"] if replicas_now else ["apply"])
        if operation == "delete":
            replicas_now = None
        else:
            replicas_now = rng.randint(1, 5) if operation != "image" else replicas_now
            if operation == "image":
                image = IMAGE_V2 if image.endswith("latest") else "portway/busybox:latest"
        controller = pw.start_controller()
        pw.wait_for_lease(controller)
        if replicas_now is None:
            pw.run("delete", name, "-n", namespace, "--no-wait")
        else:
            pw.apply(
                workload_yaml(
                    name,
                    namespace,
                    replicas=replicas_now,
                    image=image,
                    host_port=port,
                    readiness=False,
                ),
                "--no-wait",
            )
        time.sleep(rng.uniform(0.0, 1.2))
        controller.kill()
        controller.wait()
        pw.controllers.remove(controller)
        pw.start_controller()
        try:
            _converge_or_gone(pw, client, namespace, name, replicas_now)
        except AssertionError as exc:
            raise AssertionError(
                f"run {run} ({operation}, replicas={replicas_now}): {exc}\n"
                f"controller log:\n{pw.controller_log()[-4000:]}"
            ) from exc
        pw.kill_controllers(signal.SIGTERM)
    names = [c["Names"][0] for c in containers(client, namespace)]
    assert len(names) == len(set(names))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# stops and restarts dockerd under every other test
@pytest.mark.serial
def test_dockerd_restart_marks_target_unhealthy_then_converges(
    pw: Portway, client: docker.DockerClient, namespace: str
) -> None:
    port = free_port_range(2)
    pw.apply(workload_yaml("survivor", namespace, replicas=2, host_port=port))
    pw.start_controller()
    assert_converged(client, namespace, "survivor", 2)
    pid = int(subprocess.check_output(["pidof", "dockerd"]).split()[0])
    os.kill(pid, 15)

    def unhealthy() -> int | None:
        events = pw.json("get", "events", "--limit", "200")["items"]
        ids = [e["id"] for e in events if e["reason"] == "TargetUnhealthy"]
        return ids[-1] if ids else None

    try:
        went_down = eventually(unhealthy, timeout=60, what="the target to be reported unhealthy")
        targets = pw.json("get", "targets")["items"]
        assert targets[0]["health"] != "healthy"
    finally:
        # dockerd stops answering before it has finished shutting down
        eventually(lambda: not _alive(pid), timeout=60, what="the old dockerd to exit")
        subprocess.run(["bash", str(REPO / "scripts" / "engines.sh")], check=True, timeout=120)

    def healthy_again() -> bool:
        events = pw.json("get", "events", "--limit", "200")["items"]
        return any(e["reason"] == "TargetHealthy" and e["id"] > went_down for e in events)

    eventually(healthy_again, timeout=60, what="the target to be healthy again")
    _converge_or_gone(pw, client, namespace, "survivor", 2)
    eventually(lambda: http_get(port).strip() == "hello from portway", timeout=30)
    eventually(lambda: http_get(port + 1).strip() == "hello from portway", timeout=30)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # 100 kill-and-recover rounds: longer than the suite's 300 s default
def test_controller_sigkill_stress(
    pw: Portway, client: docker.DockerClient, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same as above with 100 kills and another seed (run with --run-stress)."""
    monkeypatch.setenv("PORTWAY_CRASH_SEED", os.environ.get("PORTWAY_STRESS_SEED", "98765"))
    monkeypatch.setattr(f"{__name__}.CRASH_RUNS", int(os.environ.get("PORTWAY_STRESS_RUNS", "100")))
    test_controller_sigkill_at_random_points(pw, client, namespace)


def test_logs_and_exec_through_the_cli(
    pw: Portway, client: docker.DockerClient, namespace: str
) -> None:
    talker = [
        "sh",
        "-c",
        "echo out-$HOSTNAME-line; echo err-line >&2; exec httpd -f -p 8080 -h /www",
    ]
    pw.apply(workload_yaml("talker", namespace, replicas=2, command=talker))
    both = pw.run("logs", "talker", "-n", namespace)
    assert both.stdout.count("out-") == 2
    assert "[talker-0 local-docker] out-" in both.stdout
    assert "[talker-1 local-docker] out-" in both.stdout
    assert "err-line" in both.stderr and "err-line" not in both.stdout
    one = pw.run("logs", "talker", "-n", namespace, "--replica", "1")
    assert one.stdout.count("out-") == 1 and "[talker-" not in one.stdout

    ran = pw.run(
        "exec",
        "talker",
        "-n",
        namespace,
        "--replica",
        "1",
        "--",
        "sh",
        "-c",
        "echo hi; exit 3",
        check=False,
    )
    assert ran.returncode == 3
    assert ran.stdout.strip() == "hi"
    missing = pw.run("exec", "talker", "-n", namespace, "--replica", "7", "--", "true", check=False)
    assert missing.returncode == 3
    assert "no replica 7" in missing.stderr


def test_apply_stops_waiting_when_a_replica_failed_for_good(
    pw: Portway, client: docker.DockerClient, namespace: str
) -> None:
    started = time.monotonic()
    result = pw.apply(
        workload_yaml(
            "doomed",
            namespace,
            replicas=1,
            restart="never",
            readiness=True,  # never ready: without a probe, running at all is "ready"
            command=["sh", "-c", "exit 7"],
        ),
        check=False,
    )
    assert result.returncode == 1
    assert "degraded" in result.stderr and "exit code 7" in result.stderr
    assert time.monotonic() - started < 60  # not the 300 s timeout


def test_garbage_collection_removes_only_our_unwanted_containers(
    pw: Portway, client: docker.DockerClient, namespace: str
) -> None:
    pw.apply(workload_yaml("keep", namespace, replicas=1, readiness=False))
    [kept] = assert_converged(client, namespace, "keep", 1)
    ours = kept["Labels"]["portway.dev/cluster"]

    def owned_by(cluster: str, workload: str) -> str:
        labels = {
            "portway.dev/managed": "true",
            "portway.dev/cluster": cluster,
            "portway.dev/namespace": namespace,
            "portway.dev/workload": workload,
            "portway.dev/replica": "0",
            "portway.dev/generation": "1",
            "portway.dev/target": "local-docker",
        }
        made = client.api.create_container(
            "portway/busybox:latest",
            ["sleep", "600"],
            labels=labels,
            name=f"gc-{cluster[:6]}-{namespace}-{workload}",
        )
        client.api.start(made["Id"])
        return str(made["Id"])

    ghost = owned_by(ours, "ghost")  # ours, but no workload wants it
    foreign = owned_by("someoneelse1", "ghost")  # another installation's: hands off
    pw.env["PORTWAY_CONTROLLER_GC_GRACE_SECONDS"] = "1"
    pw.env["PORTWAY_CONTROLLER_GC_SECONDS"] = "1"
    pw.start_controller()

    def ghost_gone() -> bool:
        ids = {c["Id"] for c in containers(client, namespace)}
        return ghost not in ids

    eventually(ghost_gone, timeout=30, what="the unwanted container to be collected")
    ids = {c["Id"] for c in containers(client, namespace)}
    assert foreign in ids and kept["Id"] in ids
    events = pw.json("get", "events", "ghost", "-n", namespace)["items"]
    assert [e["reason"] for e in events] == ["GarbageCollected"]
    assert "no workload wants it" in events[0]["message"]


def test_apply_refuses_a_bad_extension_key_before_writing(
    pw: Portway, client: docker.DockerClient, namespace: str
) -> None:
    text = workload_yaml("ext", namespace, replicas=1, readiness=False)
    text = text.replace("spec:\n", "spec:\n  extensions: {docker: {bogus: 1}, podman: {}}\n", 1)
    refused = pw.apply(text, check=False)
    assert refused.returncode == 2
    assert "spec.extensions.docker" in refused.stderr
    assert "extensions.docker.bogus is not supported" in refused.stderr
    assert pw.json("get", "workloads", "-n", namespace)["items"] == []
    assert containers(client, namespace) == []
    path = pw.home / "ext.yaml"
    path.write_text(text)
    shown = pw.json("plan", "-f", str(path))["items"][0]["targets"][0]
    assert any("bogus" in p for p in shown["extensionProblems"])
    assert {e["backend"]: e["applies"] for e in shown["extensions"]} == {
        "docker": True,
        "podman": False,
    }
