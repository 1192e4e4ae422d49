"""Issue 6, "Must show": a planted secret value is nowhere but in its tmpfs
file. Through the real CLI and controller, on Docker, Podman and containerd:
create a secret with a random value, apply two workloads that use it as a
file (neither opts in to an environment variable), then search engine
inspect output (containerd: container info with its OCI spec), the
replicas' environment, their logs, portway's events, ``describe`` and every
``-o json`` listing, the CLI's own output and the raw store files: 0 hits.
Inside the replica the file is at its mountPath, mode 0400, on tmpfs, with
the exact value; when the workloads are deleted, the host files are gone."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from portway.drivers.secret_files import Scope, host_dir
from tests.integration.e2e import IMAGE_V1, Portway, eventually

NS_CONTAINERD = "portway"


@dataclass(frozen=True)
class Engine:
    name: str
    driver: str
    address: str
    #: the engine's own inspect command for one container name
    inspect: tuple[str, ...]


ENGINES = {
    "docker": Engine("docker", "docker", "docker:///var/run/docker.sock", ("docker", "inspect")),
    "podman": Engine("podman", "podman", "podman:///run/podman/podman.sock", ("podman", "inspect")),
    "containerd": Engine(
        "containerd",
        "containerd",
        f"containerd:///run/containerd/containerd.sock?namespace={NS_CONTAINERD}",
        ("ctr", "-n", NS_CONTAINERD, "containers", "info"),
    ),
}


@pytest.fixture(
    params=[
        pytest.param("docker", marks=pytest.mark.docker),
        pytest.param("podman", marks=pytest.mark.podman),
        pytest.param("containerd", marks=pytest.mark.containerd),
    ]
)
def engine(request: pytest.FixtureRequest) -> Engine:
    return ENGINES[str(request.param)]


@pytest.fixture
def pw(tmp_path: Path) -> Iterator[Portway]:
    portway = Portway(tmp_path)
    portway.env["PORTWAY_LOCAL_WASM"] = "0"
    portway.env.pop("PORTWAY_SECRET_KEY_FILE", None)
    yield portway
    for name in ("files", "other"):
        portway.run("delete", name, "-n", "sec", "--timeout", "60", check=False)


def workload(name: str, target: str, mount_path: str, user: str | None) -> str:
    security = f"\n          security: {{user: '{user}'}}" if user else ""
    # the replica prints only that it started (never the value), and stops at
    # once on SIGTERM (a bare sleep as PID 1 would make every delete wait 10 s)
    return textwrap.dedent(
        f"""\
        apiVersion: portway.dev/v1
        kind: Workload
        metadata: {{name: {name}, namespace: sec}}
        spec:
          image: {IMAGE_V1}
          command: ["sh", "-c", "trap 'exit 0' TERM; echo started; sleep 3600 & wait"]
          placement: {{targets: [{target}]}}
          secrets:
            - {{secret: db, key: password, mountPath: {mount_path}}}{security}
        """
    )


def test_a_planted_secret_is_only_in_its_tmpfs_file(
    pw: Portway, engine: Engine, tmp_path: Path
) -> None:
    value = f"planted-{uuid.uuid4().hex}"
    needles = [value.encode(), base64.b64encode(value.encode())]
    seen: list[tuple[str, bytes]] = []  # (where, text) of everything portway or engines showed

    def keep(where: str, text: str | bytes) -> str:
        data = text if isinstance(text, bytes) else text.encode()
        seen.append((where, data))
        return data.decode(errors="replace")

    target = f"sec-{engine.name}"
    keep("target add", pw.run("target", "add", target, "--address", engine.address).stdout)
    (tmp_path / "password").write_text(value)
    created = pw.run("secret", "create", "db", "-n", "sec", "--from-file", f"{tmp_path}/password")
    keep("secret create", created.stdout + created.stderr)
    (tmp_path / "password").unlink()  # from here on, only portway has the value

    both = workload("files", target, "/run/secrets/db", None) + "---\n"
    both += workload("other", target, "/etc/app/db", "1000")
    applied = pw.apply(both, "--timeout", "120")
    both_file = pw.home / "both.yaml"
    both_file.write_text(both)
    keep("apply", applied.stdout + applied.stderr)

    replicas = json.loads(
        keep("get replicas", pw.run("get", "replicas", "-n", "sec", "-o", "json").stdout)
    )
    containers = {r["workload"]: r["container_name"] for r in _items(replicas)}
    assert set(containers) == {"files", "other"}, replicas

    # Every look below only reads, so they run at once (each CLI call is a
    # Python start-up): inside each replica, the file's mode, owner,
    # filesystem and exact value; everywhere else, the value must not be.
    looks: dict[str, tuple[str, ...]] = {}
    for name, path in (("files", "/run/secrets/db"), ("other", "/etc/app/db")):
        script = f"stat -c '%a %u' {path}; grep ' {path} ' /proc/mounts | cut -d' ' -f3; cat {path}"
        looks[f"inside {name}"] = ("exec", name, "-n", "sec", "--", "sh", "-c", script)
        looks[f"env of {name}"] = ("exec", name, "-n", "sec", "--", "env")
        looks[f"logs of {name}"] = ("logs", name, "-n", "sec")
        looks[f"describe {name}"] = ("describe", "workload", name, "-n", "sec")
    for args in (
        ("get", "workloads", "-n", "sec", "-o", "json"),
        ("get", "workloads", "-n", "sec", "-o", "yaml"),
        ("get", "events", "-n", "sec", "-o", "json"),
        ("get", "events", "-n", "sec"),
        ("secret", "ls", "-n", "sec", "-o", "json"),
        ("secret", "ls", "-A"),
    ):
        looks[" ".join(args)] = args
    commands = {what: [*pw.command(), *args] for what, args in looks.items()}
    for name, container in containers.items():
        commands[f"{engine.name} inspect {name}"] = [*engine.inspect, container]
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {
            what: pool.submit(
                subprocess.run, argv, env=pw.env, capture_output=True, check=True, timeout=120
            )
            for what, argv in commands.items()
        }
        results = {what: future.result() for what, future in futures.items()}
    for name, owner in (("files", "0"), ("other", "1000")):
        inside = results.pop(f"inside {name}").stdout.decode().splitlines()
        assert inside == [f"400 {owner}", "tmpfs", value], inside
        assert b"started" in results[f"logs of {name}"].stdout
        inspected = results[f"{engine.name} inspect {name}"].stdout
        assert containers[name].encode() in inspected  # the right object was inspected
    for what, result in results.items():
        keep(what, result.stdout + result.stderr)
    for store_file in sorted(pw.home.glob("state.db*")):
        keep(f"store {store_file.name}", store_file.read_bytes())
    assert any(w.startswith("store state.db") for w, _ in seen)
    hits = [where for where, data in seen for needle in needles if needle in data]
    assert hits == [], f"the secret value was found in: {hits}"

    # deleted workloads take their host files with them
    host_dirs = [host_dir(Scope(engine.driver, target), c) for c in containers.values()]
    assert all(d.is_dir() for d in host_dirs)
    pw.run("delete", "-f", str(both_file), "--timeout", "60")
    eventually(lambda: not any(d.exists() for d in host_dirs), timeout=30)
    pw.run("secret", "rm", "db", "-n", "sec")
    assert json.loads(pw.run("secret", "ls", "-n", "sec", "-o", "json").stdout) == {"items": []}


def _items(listing: object) -> list[dict[str, str]]:
    if isinstance(listing, dict):
        return list(listing.get("items", []))
    return list(listing)  # type: ignore[call-overload]


@pytest.mark.docker
def test_env_opt_in_is_visible_where_the_docs_say(pw: Portway, tmp_path: Path) -> None:
    """The control for the search above: with ``env:`` the same search finds
    the value in the engine's inspect output and the replica's environment
    (what docs/secrets.md warns about), and still not in portway's store."""
    value = f"optin-{uuid.uuid4().hex}"
    pw.run("secret", "create", "db", "-n", "sec", "--from-literal", f"password={value}")
    spec = workload("files", "local-docker", "/run/secrets/db", None).replace(
        "mountPath: /run/secrets/db}", "mountPath: /run/secrets/db, env: DB_PASSWORD}"
    )
    pw.apply(spec, "--timeout", "120")
    [replica] = _items(json.loads(pw.run("get", "replicas", "-n", "sec", "-o", "json").stdout))
    inspected = subprocess.run(
        ["docker", "inspect", replica["container_name"]], capture_output=True, check=True
    ).stdout
    assert value.encode() in inspected
    assert f"DB_PASSWORD={value}" in pw.run("exec", "files", "-n", "sec", "--", "env").stdout
    store = b"".join(p.read_bytes() for p in pw.home.glob("state.db*"))
    assert value.encode() not in store


@pytest.mark.docker
def test_a_changed_value_rolls_the_replicas(pw: Portway, tmp_path: Path) -> None:
    """``secret create --update`` with a new value: the running controller
    replaces the replica (new generation), whose file holds the new value;
    the controller's log never holds either value."""
    old, new = (f"{w}-{uuid.uuid4().hex}" for w in ("old", "new"))
    pw.run("secret", "create", "db", "-n", "sec", "--from-literal", f"password={old}")
    pw.apply(workload("files", "local-docker", "/run/secrets/db", None), "--timeout", "120")
    [first] = _items(json.loads(pw.run("get", "replicas", "-n", "sec", "-o", "json").stdout))
    controller = pw.start_controller()
    try:
        pw.wait_for_lease(controller)
        pw.run(
            "secret", "create", "db", "-n", "sec", "--from-literal", f"password={new}", "--update"
        )

        def rolled() -> bool:
            [replica] = _items(
                json.loads(pw.run("get", "replicas", "-n", "sec", "-o", "json").stdout)
            )
            if replica["generation"] == first["generation"] or not replica["ready"]:
                return False
            read = pw.run("exec", "files", "-n", "sec", "--", "cat", "/run/secrets/db", check=False)
            return read.stdout == new

        eventually(rolled, timeout=60, what="the replica rolled to the new value")
    finally:
        pw.kill_controllers(signal.SIGTERM)
    log = pw.controller_log()
    assert log and old not in log and new not in log
