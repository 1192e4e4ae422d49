"""Issue 10, "Must show" (Compose): every conformance-tests case of the
Compose project and compose-go's web-stack.yaml run through the real CLI on
Docker and on Podman, and behave as their names say. The files are used
unchanged (tests/data/compose); images are mapped to portway/busybox with
--image-map, which also names a stand-in command where busybox lacks the
original image's program. Traffic goes only to 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.e2e import REPO, Portway, free_port_range, http_get

DATA = REPO / "tests" / "data" / "compose"
BUSYBOX = "portway/busybox:latest"
HTTPD_8080 = ["httpd", "-f", "-p", "8080", "-h", "/"]
SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
# the conformance server answers HTTP on 8080 and serves files: busybox httpd
# with / as its root does the same (GET /volumes/x returns the file x)
CONFORMANCE_IMAGES: dict[str, Any] = {
    "composespec/conformance-tests-server": {"image": BUSYBOX, "command": HTTPD_8080},
    "composespec/conformance-tests-client": {"image": BUSYBOX, "command": SLEEPER},
    "test-server": {"image": BUSYBOX, "command": HTTPD_8080},
    "nginx": {"image": BUSYBOX, "command": ["httpd", "-f", "-p", "80", "-h", "/"]},
}
ENGINES = {"docker": None, "podman": "podman:///run/podman/podman.sock"}


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("docker", marks=pytest.mark.docker),
        pytest.param("podman", marks=pytest.mark.podman),
    ],
)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Compose:
    """One portway home whose only schedulable target is ``engine``."""

    def __init__(self, home: Path, engine: str, allow_bind: Path) -> None:
        self.tmp = home  # each test points this at its own directory
        self.pw = Portway(home)
        self.pw.env["PORTWAY_LOCAL_WASM"] = "0"
        self.pw.env["PORTWAY_ALLOW_BIND"] = str(allow_bind)
        self.pw.env.pop("PORTWAY_SECRET_KEY_FILE", None)
        self.target = "local-docker"
        self.namespaces: dict[str, Path] = {}  # namespace -> file, while up
        if ENGINES[engine] is not None:
            self.target = f"compose-{engine}"
            self.pw.run("target", "add", self.target, "--address", str(ENGINES[engine]))
            self.pw.run("target", "cordon", "local-docker")

    def case(self, name: str) -> Path:
        """A copy of a conformance case, so data files can sit beside it."""
        shutil.copytree(DATA / "conformance-tests" / name, self.tmp / name)
        return self.tmp / name / "compose.yaml"

    def image_map(self, images: dict[str, Any]) -> str:
        path = self.tmp / "images.yaml"
        path.write_text(yaml.safe_dump(images))
        return str(path)

    def up(
        self, file: Path, namespace: str, *extra: str, images: dict[str, Any] | None = None
    ) -> str:
        self.namespaces[namespace] = file
        mapping = self.image_map(CONFORMANCE_IMAGES if images is None else images)
        args = ["apply", "-f", str(file), "--image-map", mapping, "--timeout", "60", *extra]
        return self.pw.run(*args).stdout

    def replicas(self, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.pw.json("get", "replicas", "-n", namespace)["items"]
        return items

    def exec(self, namespace: str, workload: str, *command: str) -> str:
        return self.pw.run("exec", workload, "-n", namespace, "--", *command).stdout

    def down(self, namespace: str, *names: str) -> None:
        """Delete the project's workloads (by name, or all the file defines)."""
        file = self.namespaces.pop(namespace)
        which = [*names, "-n", namespace] if names else ["-f", str(file)]
        self.pw.run("delete", *which, "--timeout", "60", check=False)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, engine: str) -> Compose:
    """One portway home per engine (target set-up costs two CLI runs);
    each test uses its own projects and removes them."""
    return Compose(
        tmp_path_factory.mktemp(f"compose-{engine}"), engine, tmp_path_factory.getbasetemp()
    )


@pytest.fixture
def compose(home: Compose, tmp_path: Path) -> Iterator[Compose]:
    home.tmp = tmp_path
    yield home
    for namespace in list(home.namespaces):
        home.down(namespace)


def running_on(compose: Compose, namespace: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for replica in compose.replicas(namespace):
        assert replica["target"] == compose.target, replica
        if replica["state"] == "running":
            counts[replica["workload"]] = counts.get(replica["workload"], 0) + 1
    return counts


@pytest.mark.parametrize("case", ["simple_lifecycle", "lifecycle"])
def test_lifecycle_cases_start_and_stop(compose: Compose, case: str) -> None:
    namespace = case.replace("_", "-")
    compose.up(compose.case(case), namespace)
    assert running_on(compose, namespace) == {"test1": 1}
    compose.down(namespace)
    assert compose.replicas(namespace) == []


def test_scaling_follows_deploy_replicas(compose: Compose) -> None:
    compose.up(compose.case("scaling"), "scaling")
    assert running_on(compose, "scaling") == {"server": 1, "client": 3}
    assert http_get(8080, "/etc/hostname")


def test_simple_network_services_reach_each_other_by_name(compose: Compose) -> None:
    compose.up(compose.case("simple_network"), "simple-network")
    hostname = compose.exec("simple-network", "target", "cat", "/etc/hostname").strip()
    answer = compose.exec(
        "simple-network", "entry", "wget", "-qO-", "http://target:8080/etc/hostname"
    )
    assert answer.strip() == hostname


def test_different_networks_keep_their_services_apart(compose: Compose, engine: str) -> None:
    """Honored on Docker (separate bridges); dropped on Podman, whose netavark
    1.4 does not keep networks apart (capabilities say why), so strict refuses."""
    file = compose.case("different_networks")
    mapping = compose.image_map(CONFORMANCE_IMAGES)
    plan = json.loads(
        compose.pw.run("plan", "-f", str(file), "--image-map", mapping, "-o", "json").stdout
    )
    verdicts = {
        key["key"]: key["targets"][compose.target]["verdict"]
        for item in plan["items"]
        for key in item["compose"]["keys"]
    }
    expected = "honored" if engine == "docker" else "dropped"
    assert verdicts["services.entry.networks"] == expected
    assert verdicts["services.target.networks"] == expected
    if engine != "docker":
        refused = compose.pw.run(
            "apply", "-f", str(file), "--image-map", mapping, "--strict", check=False
        )
        assert refused.returncode != 0
        assert "spec.networks" in refused.stderr and "netavark" in refused.stderr
        assert compose.pw.json("get", "workloads", "-n", "different-networks")["items"] == []
        # lenient: it runs, without the separation (said by the verdict above)
        compose.up(file, "different-networks")
        assert running_on(compose, "different-networks") == {"entry": 1, "target": 1}
        return
    # nothing is dropped, so strict mode takes the file too
    compose.up(file, "different-networks", "--strict")
    assert running_on(compose, "different-networks") == {"entry": 1, "target": 1}
    assert http_get(8080, "/etc/hostname")  # entry's published port
    address = compose.exec("different-networks", "target", "hostname", "-i").split()[0]
    for host in ("target", address):
        tried = compose.pw.run(
            "exec", "entry", "-n", "different-networks", "--",
            "sh", "-c", f"timeout 3 wget -qO- http://{host}:8080/etc/hostname",
            check=False,
        )  # fmt: skip
        assert tried.returncode != 0, f"entry reached target at {host}: {tried.stdout!r}"


@pytest.mark.parametrize(
    ("case", "data_file", "path"),
    [
        ("simple_secretfile", "test_secret.txt", "/volumes/test_secret.txt"),
        ("simple_configfile", "test_config.txt", "/volumes/test_config.txt"),
        ("simple_volume", "test_volume.txt", "/volumes/test_volume.txt"),
    ],
)
def test_secret_config_and_bind_files_appear_at_their_targets(
    compose: Compose, case: str, data_file: str, path: str
) -> None:
    file = compose.case(case)
    content = f"{case} content\n"
    (file.parent / data_file).write_text(content)
    namespace = case.replace("_", "-")
    if case == "simple_volume":
        # a bind mount is a host path: baseline refuses it, so the namespace
        # must allow it (and PORTWAY_ALLOW_BIND the directory)
        refused = compose.pw.run("apply", "-f", str(file), "--image-map",
                                 compose.image_map(CONFORMANCE_IMAGES), check=False)  # fmt: skip
        assert refused.returncode != 0 and "baseline/host-path-volumes" in refused.stderr
        compose.pw.apply(
            f"apiVersion: portway.dev/v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n"
            "spec: {podSecurity: privileged}\n"
        )
    compose.up(file, namespace)
    assert http_get(8080, path) == content


def test_udp_port_is_published(compose: Compose) -> None:
    # busybox has no UDP server (its nc speaks TCP only), so what is checked
    # is the engine's own report of the mapping and the host socket it holds
    compose.up(compose.case("udp_port"), "udp-port")
    (replica,) = compose.replicas("udp-port")
    assert "udp 10001 -> 127.0.0.1:10001" in replica["endpoints"]
    assert "tcp 8080 -> 127.0.0.1:8080" in replica["endpoints"]
    assert http_get(8080, "/etc/hostname")


WEB_STACK_IMAGES: dict[str, Any] = {
    "example/web:1.0": {
        "image": BUSYBOX,
        "command": ["httpd", "-f", "-p", "80", "-h", "/"],
        "replace": True,  # the file's entrypoint and command name programs busybox lacks
        "healthcheck": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/etc/hostname"],
    },
    "postgres:16": {
        "image": BUSYBOX,
        "command": SLEEPER,
        "healthcheck": ["CMD-SHELL", "test -s /run/secrets/db_password"],
    },
    "redis:7": {"image": BUSYBOX, "command": SLEEPER},
}


def test_web_stack_plans_and_runs_in_depends_on_order(compose: Compose, engine: str) -> None:
    stack = compose.tmp / "stack"
    stack.mkdir()
    shutil.copy(DATA / "compose-go-golden" / "web-stack.yaml", stack / "compose.yaml")
    (stack / "db_password.txt").write_text("s3cret\n")
    (stack / "redis.conf").write_text("maxmemory 1mb\n")
    (stack / "static").mkdir()
    (stack / "static" / "index.html").write_text("golden static\n")
    port = free_port_range(2)
    compose.pw.env.update(GOLDEN_TAG="1.0", GOLDEN_PORT=str(port))
    file = stack / "compose.yaml"
    mapping = compose.image_map(WEB_STACK_IMAGES)
    plan = json.loads(
        compose.pw.run(
            "plan", "-f", str(file), "--image-map", mapping, "--profile", "frontend", "-o", "json"
        ).stdout
    )
    assert sorted(i["compose"]["service"] for i in plan["items"]) == ["cache", "db", "web"]
    compose.pw.apply(
        "apiVersion: portway.dev/v1\nkind: Namespace\nmetadata: {name: golden}\n"
        "spec: {podSecurity: privileged}\n"
    )
    out = compose.up(file, "golden", "--profile", "frontend", images=WEB_STACK_IMAGES)
    lines = out.splitlines()
    # depends_on: web (db healthy, cache started) is applied only once both are ready
    assert lines.index("workload/web created") > lines.index("workload/db ready")
    assert lines.index("workload/web created") > lines.index("workload/cache ready")
    assert running_on(compose, "golden") == {"web": 2, "db": 1, "cache": 1}
    # replica i of web publishes ${GOLDEN_PORT} + i; ./static is bind-mounted read-only
    for i in range(2):
        assert http_get(port + i, "/usr/share/nginx/html/index.html") == "golden static\n"
    assert compose.exec("golden", "db", "cat", "/run/secrets/db_password") == "s3cret\n"
    assert compose.exec("golden", "cache", "cat", "/etc/redis/redis.conf") == "maxmemory 1mb\n"
    # the named volume db-data outlives its workload
    compose.exec("golden", "db", "sh", "-c", "echo kept > /var/lib/postgresql/data/marker")
    compose.pw.run("delete", "db", "-n", "golden", "--timeout", "60")
    compose.up(file, "golden", "--profile", "frontend", images=WEB_STACK_IMAGES)
    marker = compose.exec("golden", "db", "cat", "/var/lib/postgresql/data/marker")
    assert marker == "kept\n"
    # delete -f with the profile removes every service the file enables with it
    compose.namespaces.pop("golden")
    out = compose.pw.run(
        "delete", "-f", str(file), "--profile", "frontend", "--timeout", "60"
    ).stdout
    assert sorted(out.split()) == sorted(
        ["workload/web", "workload/db", "workload/cache", *["deleted"] * 3]
    )
    assert running_on(compose, "golden") == {}
    cli = "docker" if engine == "docker" else "podman"
    subprocess.run([cli, "volume", "rm", "-f", "golden_db-data", "golden_data"], check=False,
                   capture_output=True)  # fmt: skip


ONE_SHOT = """\
services:
  migrate:
    image: portway/busybox:latest
    command: [sh, -c, "sleep 1; echo migrated > /shared/done"]
    volumes: [shared:/shared]
  app:
    image: portway/busybox:latest
    command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]
    volumes: [shared:/shared]
    depends_on:
      migrate: {condition: service_completed_successfully}
volumes: {shared: {}}
"""


def test_service_completed_successfully_starts_dependents_after_exit_0(
    compose: Compose, engine: str
) -> None:
    file = compose.tmp / "one-shot" / "compose.yaml"
    file.parent.mkdir()
    file.write_text(ONE_SHOT)
    lines = compose.up(file, "one-shot", images={}).splitlines()
    assert lines.index("workload/app created") > lines.index("workload/migrate completed")
    assert compose.exec("one-shot", "app", "cat", "/shared/done") == "migrated\n"
    compose.down("one-shot")
    cli = "docker" if engine == "docker" else "podman"
    subprocess.run([cli, "volume", "rm", "-f", "one-shot_shared"], check=False, capture_output=True)


def test_runtime_flags_plan_lists_every_key_and_apply_refuses_with_every_reason(
    compose: Compose,
) -> None:
    file = DATA / "compose-go-golden" / "runtime-flags.yaml"
    raw = yaml.safe_load(file.read_text())

    def key_paths(value: Any, path: str) -> set[str]:
        found: set[str] = set()
        if isinstance(value, dict):
            for key, child in value.items():
                found |= {f"{path}.{key}"} | key_paths(child, f"{path}.{key}")
        elif isinstance(value, list):
            for i, child in enumerate(value):
                found |= key_paths(child, f"{path}[{i}]")
        return found

    expected = set().union(*(key_paths(b, f"services.{n}") for n, b in raw["services"].items()))
    plan = json.loads(compose.pw.run("plan", "-f", str(file), "-o", "json").stdout)
    rows = [key for item in plan["items"] for key in item["compose"]["keys"]]
    assert expected <= {row["key"] for row in rows}
    assert all(compose.target in row["targets"] for row in rows)
    # the project's namespace under baseline (web-stack's test made it privileged)
    compose.pw.apply(
        "apiVersion: portway.dev/v1\nkind: Namespace\nmetadata: {name: golden}\n"
        "spec: {podSecurity: baseline}\n"
    )
    refused = compose.pw.run("apply", "-f", str(file), check=False)
    assert refused.returncode != 0
    for reason in (
        "baseline/privileged",
        "baseline/host-namespaces",
        "baseline/capabilities",
        "services.kitchen-sink.devices",
        "services.kitchen-sink.uts",
        "services.kitchen-sink.userns_mode",
    ):
        assert reason in refused.stderr, reason
