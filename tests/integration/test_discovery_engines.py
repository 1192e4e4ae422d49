"""Service discovery by name on the real engines (Docker, Podman): no mocks.

Each test runs in a namespace (and cluster) of its own. Replicas talk to each
other only on the namespace network the driver made; the tests themselves
send traffic to 127.0.0.1 only. What the engines are asked behind portway's
back (network labels, a foreign network) goes through Docker's API, which
Podman's service speaks too.
"""

from __future__ import annotations

import os
import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import pytest

from portway.drivers.base import (
    LABEL_CLUSTER,
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    Driver,
    Executor,
    Handle,
    ReplicaRequest,
    ReplicaState,
    ReplicaStatus,
)
from portway.drivers.engine_common import namespace_network
from portway.drivers.registry import open_driver
from portway.errors import ImageNotFoundError, PermanentDriverError
from portway.spec.model import WorkloadSpec
from portway.spec.services import service_aliases

IMAGE = "portway/busybox:latest"
PORT = 8080
PODMAN_SOCKET = os.environ.get("PORTWAY_PODMAN_SOCKET", "/run/podman/podman.sock")
ENGINES = {
    # name -> (portway address, Docker-API base URL of the same engine)
    "docker": (
        os.environ.get("PORTWAY_DOCKER_ADDRESS", "docker:///var/run/docker.sock"),
        "unix:///var/run/docker.sock",
    ),
    "podman": (f"podman://{PODMAN_SOCKET}", f"unix://{PODMAN_SOCKET}"),
}
#: serves "served by HOSTNAME" (each replica's own) on PORT
SERVE = [
    "sh",
    "-c",
    'mkdir -p /tmp/www && echo "served by $(hostname)" > /tmp/www/index.html && '
    f"exec httpd -f -p {PORT} -h /tmp/www",
]
SLEEP = ["sleep", "600"]
_ADDRESS = re.compile(r"^Address(?:\s+\d+)?:\s*(\S+)\s*$")


@dataclass
class Engine:
    name: str
    driver: Driver
    api: docker.APIClient  # Docker's API, for what the tests do behind portway's back


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("docker", marks=pytest.mark.docker),
        pytest.param("podman", marks=pytest.mark.podman),
    ],
)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    name = str(request.param)
    address, base_url = ENGINES[name]
    driver = open_driver(f"it-{name}", name, address)
    api = docker.APIClient(base_url=base_url, version="1.41", timeout=30)
    try:
        if not driver.image_present(IMAGE):
            pytest.fail(
                f"{IMAGE} is not on {name}: run scripts/build-images.sh (and "
                "scripts/engines-podman.sh for Podman)",
                pytrace=False,
            )
        yield Engine(name, driver, api)
    finally:
        api.close()
        close = getattr(driver, "close", None)
        if callable(close):
            close()


@dataclass
class Space:
    """One test's namespace on one engine; ``cleanup`` removes all it made."""

    engine: Engine
    namespace: str = field(default_factory=lambda: f"dn-{uuid.uuid4().hex[:8]}")
    cluster: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def driver(self) -> Driver:
        return self.engine.driver

    @property
    def network(self) -> str:
        return namespace_network(self.cluster, self.namespace)

    def request(
        self, workload: str, spec: dict[str, Any], index: int = 0, *, aliases: bool = True
    ) -> ReplicaRequest:
        """As the controller asks: a service's replicas get its names as aliases."""
        model = WorkloadSpec.model_validate({"image": IMAGE, **spec})
        return ReplicaRequest(
            namespace=self.namespace,
            workload=workload,
            index=index,
            generation=1,
            template_hash=model.template_hash(),
            spec=model,
            cluster=self.cluster,
            aliases=service_aliases(workload, self.namespace, model) if aliases else (),
        )

    def run(self, workload: str, spec: dict[str, Any], index: int = 0) -> Handle:
        handle = self.driver.create(self.request(workload, spec, index))
        self.driver.start(handle)
        self.wait_running(handle)
        return handle

    def wait_running(self, handle: Handle, timeout: float = 15.0) -> ReplicaStatus:
        deadline = time.monotonic() + timeout
        while True:
            status = self.driver.inspect(handle)
            if status.state is ReplicaState.RUNNING:
                return status
            assert time.monotonic() < deadline, f"{handle.name} does not run: {status}"
            time.sleep(0.05)

    def sh(self, handle: Handle, script: str, timeout: float = 30.0) -> tuple[int, str]:
        executor = self.driver
        assert isinstance(executor, Executor)
        result = executor.exec(handle, ["sh", "-c", script], timeout=timeout)
        return result.exit_code, result.output.decode(errors="replace")

    def fetch(self, client: Handle, host: str) -> str:
        """GET http://HOST:PORT/ inside ``client`` (retried while the name and
        server come up); the body."""
        code, out = self.sh(
            client,
            "n=0; while [ $n -lt 20 ]; do "
            f"timeout 2 wget -Y off -qO- http://{host}:{PORT}/ && exit 0; "
            "n=$((n+1)); sleep 0.2; done; exit 1",
            timeout=60,
        )
        assert code == 0, f"wget http://{host}:{PORT}/ in {client.name} failed: {out[-400:]}"
        return out.strip()

    def lookup(self, client: Handle, name: str) -> tuple[int, set[str]]:
        code, out = self.sh(client, f"nslookup {name}")
        return code, resolved(out)

    def own_address(self, handle: Handle) -> str:
        code, out = self.sh(handle, "hostname -i")
        assert code == 0, out
        return out.split()[0]

    def network_info(self) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.engine.api.inspect_network(self.network)
        except docker.errors.NotFound:
            return None
        return found

    def cleanup(self) -> None:
        for status in self.driver.list_owned({LABEL_NAMESPACE: self.namespace}):
            self.driver.destroy(status.handle)
        remove = getattr(self.driver, "remove_namespace_network", None)
        if callable(remove):
            remove(self.namespace, self.cluster)
        if self.network_info() is not None:  # e.g. a foreign one a test made
            self.engine.api.remove_network(self.network)


def resolved(nslookup_output: str) -> set[str]:
    """The addresses of the name in busybox nslookup's answer (after ``Name:``)."""
    found: set[str] = set()
    answered = False
    for line in nslookup_output.splitlines():
        answered = answered or line.startswith("Name:")
        match = _ADDRESS.match(line)
        if answered and match:
            found.add(match.group(1))
    return found


@pytest.fixture
def space(engine: Engine) -> Iterator[Space]:
    made = Space(engine)
    try:
        yield made
    finally:
        made.cleanup()


def service(replicas: int = 1) -> dict[str, Any]:
    return {
        "command": SERVE,
        "ports": [{"name": "http", "containerPort": PORT}],
        "replicas": replicas,
    }


# --- finding a service by name ------------------------------------------------------


def test_a_client_reaches_the_service_by_name(space: Space) -> None:
    web = space.run("web", service())
    client = space.run("client", {"command": SLEEP})
    served = f"served by {space.sh(web, 'hostname')[1].strip()}"
    assert space.fetch(client, f"web.{space.namespace}") == served
    assert space.fetch(client, "web") == served
    # published ports on 127.0.0.1 work as they did on the default network
    port = space.driver.inspect(web).host_port_for(PORT)
    assert port is not None and port.host_ip == "127.0.0.1"
    with urllib.request.urlopen(f"http://127.0.0.1:{port.host_port}/", timeout=5) as answer:
        assert answer.read().decode().strip() == served


def test_a_scaled_service_resolves_to_every_replica(space: Space) -> None:
    replicas = [space.run("web", service(2), index=i) for i in range(2)]
    client = space.run("client", {"command": SLEEP})
    wanted = {space.own_address(h) for h in replicas}
    deadline = time.monotonic() + 10
    while True:
        code, found = space.lookup(client, f"web.{space.namespace}")
        if found == wanted or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (code, found) == (0, wanted)
    # Whether successive lookups rotate is the engine's business: if they do,
    # both replicas answer within a few fetches; if not, one answers each time.
    names = {f"served by {space.sh(h, 'hostname')[1].strip()}" for h in replicas}
    bodies = {space.fetch(client, f"web.{space.namespace}") for _ in range(12)}
    assert bodies <= names, bodies
    print(f"{space.engine.name}: {len(bodies)} of 2 replicas answered 12 fetches by name")


def test_other_namespaces_do_not_resolve_the_name(space: Space, engine: Engine) -> None:
    space.run("web", service())
    elsewhere = Space(engine)
    try:
        stranger = elsewhere.run("client", {"command": SLEEP})
        code, found = elsewhere.lookup(stranger, f"web.{space.namespace}")
        assert not found, (code, found)
    finally:
        elsewhere.cleanup()


def test_a_workload_without_named_ports_is_not_a_service(space: Space) -> None:
    space.run("plain", {"command": SERVE, "ports": [{"containerPort": PORT}]})
    client = space.run("client", {"command": SLEEP})
    code, found = space.lookup(client, f"plain.{space.namespace}")
    assert not found, (code, found)


# --- the namespace network ------------------------------------------------------------


def test_the_network_is_made_once_and_removed_with_the_last_replica(space: Space) -> None:
    first = space.driver.create(space.request("web", service(2), 0))
    info = space.network_info()
    assert info is not None
    labels = info.get("Labels") or {}
    assert labels[LABEL_MANAGED] == "true"
    assert (labels[LABEL_CLUSTER], labels[LABEL_NAMESPACE]) == (space.cluster, space.namespace)
    # a repeated create finds the same container; the network stays the same one
    again = space.driver.create(space.request("web", service(2), 0))
    assert again.id == first.id
    second = space.driver.create(space.request("web", service(2), 1))
    assert (space.network_info() or {}).get("Id") == info["Id"]
    space.driver.destroy(first)
    assert space.network_info() is not None, "removed while a replica still uses it"
    space.driver.destroy(second)
    assert space.network_info() is None, "left behind after the namespace's last replica"


def test_a_network_of_that_name_not_made_by_portway_is_refused(space: Space) -> None:
    space.engine.api.create_network(space.network, driver="bridge")
    with pytest.raises(PermanentDriverError, match="labels differ"):
        space.driver.create(space.request("web", service()))


def test_a_replica_on_the_host_network_joins_no_namespace_network(space: Space) -> None:
    handle = space.driver.create(
        space.request("host", {"command": SLEEP, "security": {"hostNetwork": True}})
    )
    assert space.network_info() is None
    mode = space.engine.api.inspect_container(handle.id)["HostConfig"]["NetworkMode"]
    assert mode == "host"


@pytest.mark.parametrize(
    "engine", [pytest.param("docker", marks=pytest.mark.docker)], indirect=True
)
def test_docker_start_makes_a_removed_network_again(space: Space) -> None:
    """Docker removes a network that only created containers name; a replica
    created before such a removal (by another controller) still starts."""
    handle = space.driver.create(space.request("web", service()))
    space.engine.api.remove_network(space.network)
    space.driver.start(handle)
    space.wait_running(handle)
    client = space.run("client", {"command": SLEEP})
    assert space.fetch(client, "web").startswith("served by ")


def test_a_failed_create_leaves_no_network_behind(space: Space) -> None:
    with pytest.raises(ImageNotFoundError):
        space.driver.create(space.request("web", {**service(), "image": "portway/absent:1"}))
    assert space.network_info() is None
    # but a failure does not take the network from replicas already on it
    space.driver.create(space.request("web", service(2), 0))
    with pytest.raises(ImageNotFoundError):
        space.driver.create(space.request("other", {"image": "portway/absent:1"}))
    assert space.network_info() is not None


# prunes every unused portway network on the engine, another test's new one too
@pytest.mark.serial
@pytest.mark.parametrize(
    "engine", [pytest.param("docker", marks=pytest.mark.docker)], indirect=True
)
def test_docker_prunes_only_unused_portway_networks(space: Space, engine: Engine) -> None:
    """What create does when dockerd has no subnet left for a new namespace
    network (not provoked here: that would starve everyone on the engine)."""
    unused = Space(engine)
    try:
        space.driver.create(space.request("web", service()))
        engine.api.create_network(
            unused.network,
            labels={
                LABEL_MANAGED: "true",
                LABEL_CLUSTER: unused.cluster,
                LABEL_NAMESPACE: unused.namespace,
            },
        )
        prune = getattr(space.driver, "_prune_networks")  # noqa: B009 (private, on purpose)
        prune(engine.api, keep="")
        assert unused.network_info() is None
        assert space.network_info() is not None  # a created replica names it
    finally:
        unused.cleanup()
