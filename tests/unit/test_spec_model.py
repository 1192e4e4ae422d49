"""The Workload model: quantities, names, images, ports, probes, restart, hashing."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from portway.spec.model import (
    Port,
    Probe,
    Resources,
    Restart,
    RestartPolicyName,
    Workload,
    WorkloadSpec,
    parse_bytes,
    parse_cpu,
)
from portway.spec.schema import workload_json_schema

BASE: dict[str, Any] = {
    "apiVersion": "portway.dev/v1",
    "kind": "Workload",
    "metadata": {"name": "web"},
    "spec": {"image": "portway/busybox:latest"},
}


def workload(**spec: Any) -> Workload:
    data = copy.deepcopy(BASE)
    data["spec"].update(spec)
    return Workload.model_validate(data)


def errors_of(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[tuple[Any, ...], str]]:
    return [(e["loc"], str(e["msg"]).removeprefix("Value error, ")) for e in exc.value.errors()]


def single_error(**spec: Any) -> tuple[tuple[Any, ...], str]:
    with pytest.raises(ValidationError) as exc:
        workload(**spec)
    errors = errors_of(exc)
    assert len(errors) == 1, errors
    return errors[0]


# --- quantities ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64Mi", 64 * 1024**2),
        ("1Gi", 1024**3),
        ("512M", 512 * 1000**2),
        ("1k", 1000),
        ("2Ki", 2048),
        ("100", 100),
        ("100b", 100),
        ("1.5Gi", int(1.5 * 1024**3)),
        (4096, 4096),
        (2.0, 2),
    ],
)
def test_parse_bytes_accepts_quantities(text: Any, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("64 MB", "is not a size"),
        ("-1Mi", "is not a size"),
        ("Mi", "is not a size"),
        (-5, "cannot be negative"),
        (True, "expected a size"),
        (float("inf"), "finite"),
        (float("nan"), "finite"),
        ("9" * 400 + "Ti", "too large"),
        (2**64, "below 8Ei"),
        ([1], "expected a size"),
        ({"a": 1}, "expected a size"),
    ],
)
def test_parse_bytes_refuses_with_value_error(value: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_bytes(value)


@pytest.mark.parametrize(
    ("value", "cores"),
    [("500m", 0.5), ("250m", 0.25), ("2", 2.0), (1, 1.0), (0.5, 0.5), (" 100m ", 0.1)],
)
def test_parse_cpu_accepts_cores_and_millicores(value: Any, cores: float) -> None:
    assert parse_cpu(value) == pytest.approx(cores)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("half", "not a CPU amount"),
        ("m", "not a CPU amount"),
        (0, "more than 0"),
        ("0m", "more than 0"),
        (2000, "at most 1024"),
        (10**400, "at most 1024"),
        (float("nan"), "more than 0"),
        (False, "expected cores"),
        (["1"], "expected cores"),
    ],
)
def test_parse_cpu_refuses_with_value_error(value: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_cpu(value)


def test_resources_parse_quantities_and_enforce_minimum_memory() -> None:
    res = Resources.model_validate({"cpu": "500m", "memory": "64Mi", "pids": 10})
    assert res.cpu == pytest.approx(0.5)
    assert res.memory == 64 * 1024 * 1024
    with pytest.raises(ValidationError) as exc:
        Resources.model_validate({"memory": "1Mi"})
    assert errors_of(exc) == [(("memory",), "memory must be at least 4Mi (engines refuse less)")]


# --- names and labels ------------------------------------------------------


@pytest.mark.parametrize("name", ["web", "a", "web-1", "0abc", "a" * 63])
def test_valid_names(name: str) -> None:
    data = copy.deepcopy(BASE)
    data["metadata"] = {"name": name, "namespace": name}
    assert Workload.model_validate(data).key == f"{name}/{name}"


@pytest.mark.parametrize("name", ["Web", "-web", "web-", "web_1", "web.x", "", "a" * 64, "wéb"])
def test_invalid_names(name: str) -> None:
    data = copy.deepcopy(BASE)
    data["metadata"] = {"name": name}
    with pytest.raises(ValidationError) as exc:
        Workload.model_validate(data)
    [(loc, msg)] = errors_of(exc)
    assert loc == ("metadata", "name")
    assert msg.startswith(f"name {name!r} is invalid: use at most 63 lowercase letters")


def test_invalid_namespace_names_the_namespace() -> None:
    data = copy.deepcopy(BASE)
    data["metadata"] = {"name": "web", "namespace": "Team A"}
    with pytest.raises(ValidationError) as exc:
        Workload.model_validate(data)
    [(loc, msg)] = errors_of(exc)
    assert loc == ("metadata", "namespace")
    assert msg.startswith("namespace 'Team A' is invalid")


def test_namespace_defaults_to_default() -> None:
    assert workload().key == "default/web"


@pytest.mark.parametrize(
    "labels",
    [
        {"app": "web"},
        {"app.kubernetes.io/name": "web_1.x"},
        {"tier": ""},
        {"A-b_c.D": "X"},
    ],
)
def test_valid_labels(labels: dict[str, str]) -> None:
    data = copy.deepcopy(BASE)
    data["metadata"]["labels"] = labels
    assert Workload.model_validate(data).metadata.labels == labels


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        ({"": "x"}, "label key '' is invalid"),
        ({"a b": "x"}, "label key 'a b' is invalid"),
        ({"/name": "x"}, "label key '/name' is invalid"),
        ({"a/b/c": "x"}, "label key 'a/b/c' is invalid"),
        ({"Example.COM/x": "x"}, "label key 'Example.COM/x' is invalid"),
        ({"k" * 64: "x"}, "is invalid"),
        ({"app": "hello world"}, "label value 'hello world' (key 'app') is invalid"),
        ({"app": "-x"}, "label value '-x' (key 'app') is invalid"),
        ({"app": "v" * 64}, "(key 'app') is invalid"),
    ],
)
def test_invalid_labels(labels: dict[str, str], fragment: str) -> None:
    data = copy.deepcopy(BASE)
    data["metadata"]["labels"] = labels
    with pytest.raises(ValidationError) as exc:
        Workload.model_validate(data)
    [(loc, msg)] = errors_of(exc)
    assert loc == ("metadata", "labels")
    assert fragment in msg


# --- images ----------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        "busybox",
        "busybox:1.36",
        "portway/busybox:latest",
        "docker.io/library/nginx:1.27-alpine",
        "registry:5000/team/app",
        "localhost:5000/a/b/c:v1.2.3",
        "ghcr.io/org/my_app__x.y-z:tag_1",
        "app@sha256:" + "a" * 64,
        "registry.example.com:443/team/app:1.0@sha256:" + "0123456789abcdef" * 4,
    ],
)
def test_valid_image_references(image: str) -> None:
    assert workload(image=image).spec.image == image


@pytest.mark.parametrize(
    "image",
    [
        "",
        "BusyBox",
        "busybox:",
        "busybox:-tag",
        "app@sha256:abc",
        "/busybox",
        "busybox/",
        "bad image",
        "a" * 256,
        "busybox:" + "t" * 129,
    ],
)
def test_invalid_image_references(image: str) -> None:
    loc, msg = single_error(image=image)
    assert loc == ("spec", "image")
    assert msg == (
        f"{image!r} is not a valid image reference; expected e.g. "
        "'portway/busybox:latest' or 'registry:5000/team/app@sha256:<digest>'"
    )


# --- ports -----------------------------------------------------------------


def test_port_defaults() -> None:
    port = Port.model_validate({"containerPort": 80})
    assert (port.protocol, port.host_port, port.host_ip, port.name) == (
        "tcp",
        None,
        "127.0.0.1",
        None,
    )


def test_duplicate_container_ports_are_refused() -> None:
    loc, msg = single_error(ports=[{"containerPort": 80}, {"containerPort": 80}])
    assert loc == ("spec",)
    assert msg == "duplicate port: containerPort 80/tcp is listed twice"


def test_same_container_port_with_other_protocol_is_fine() -> None:
    w = workload(ports=[{"containerPort": 53}, {"containerPort": 53, "protocol": "udp"}])
    assert [str(p.protocol) for p in w.spec.ports] == ["tcp", "udp"]


def test_overlapping_host_port_ranges_are_refused() -> None:
    loc, msg = single_error(
        replicas=3,
        ports=[
            {"containerPort": 80, "hostPort": 8080},
            {"containerPort": 81, "hostPort": 8082},
        ],
    )
    assert loc == ("spec",)
    assert msg == "duplicate port: hostPort range 8082-8084/tcp overlaps 8080-8082/tcp"


def test_host_port_ranges_on_different_addresses_do_not_overlap() -> None:
    w = workload(
        replicas=3,
        ports=[
            {"containerPort": 80, "hostPort": 8080, "hostIp": "127.0.0.1"},
            {"containerPort": 81, "hostPort": 8080, "hostIp": "127.0.0.2"},
        ],
    )
    assert len(w.spec.ports) == 2


def test_wildcard_address_overlaps_every_address() -> None:
    _, msg = single_error(
        ports=[
            {"containerPort": 80, "hostPort": 8080, "hostIp": "0.0.0.0"},
            {"containerPort": 81, "hostPort": 8080, "hostIp": "127.0.0.1"},
        ],
    )
    assert msg == "duplicate port: hostPort range 8080-8080/tcp overlaps 8080-8080/tcp"


def test_host_port_range_beyond_65535_is_refused() -> None:
    loc, msg = single_error(replicas=10, ports=[{"containerPort": 80, "hostPort": 65530}])
    assert loc == ("spec",)
    assert msg == "hostPort 65530 with 10 replicas needs ports up to 65539, beyond 65535"


def test_host_port_range_ending_at_65535_is_fine() -> None:
    assert workload(replicas=6, ports=[{"containerPort": 80, "hostPort": 65530}]).spec.replicas == 6


@pytest.mark.parametrize(
    ("port", "loc"),
    [
        ({"containerPort": 0}, ("containerPort",)),
        ({"containerPort": 65536}, ("containerPort",)),
        ({"containerPort": 80, "hostPort": 0}, ("hostPort",)),
        ({"containerPort": 80, "protocol": "sctp"}, ("protocol",)),
    ],
)
def test_port_field_ranges(port: dict[str, Any], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as exc:
        Port.model_validate(port)
    assert [e[0] for e in errors_of(exc)] == [loc]


@pytest.mark.parametrize(
    ("host_ip", "normalised"),
    [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "0.0.0.0"), ("::1", "::1"), ("0:0::1", "::1")],
)
def test_host_ip_must_be_an_ip_address(host_ip: str, normalised: str) -> None:
    assert Port.model_validate({"containerPort": 80, "hostIp": host_ip}).host_ip == normalised


@pytest.mark.parametrize("host_ip", ["localhost", "", "256.0.0.1", "1.2.3", "::g"])
def test_host_ip_refuses_non_addresses(host_ip: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Port.model_validate({"containerPort": 80, "hostIp": host_ip})
    assert errors_of(exc) == [
        (
            ("hostIp",),
            f"hostIp {host_ip!r} is not an IP address; expected e.g. 127.0.0.1, 0.0.0.0 or ::1",
        )
    ]


def test_port_name_must_be_a_dns_label() -> None:
    assert Port.model_validate({"containerPort": 80, "name": "http-alt"}).name == "http-alt"
    with pytest.raises(ValidationError) as exc:
        Port.model_validate({"containerPort": 80, "name": "HTTP"})
    [(loc, msg)] = errors_of(exc)
    assert loc == ("name",)
    assert msg.startswith("port name 'HTTP' is invalid")


def test_duplicate_port_names_are_refused() -> None:
    loc, msg = single_error(
        ports=[{"containerPort": 80, "name": "web"}, {"containerPort": 81, "name": "web"}]
    )
    assert (loc, msg) == (("spec",), "duplicate port name(s): web")


# --- probes ----------------------------------------------------------------


def test_probe_needs_an_action() -> None:
    with pytest.raises(ValidationError) as exc:
        Probe.model_validate({"periodSeconds": 5})
    assert errors_of(exc) == [((), "a probe needs exactly one of exec, http or tcp")]


def test_probe_refuses_two_actions() -> None:
    with pytest.raises(ValidationError) as exc:
        Probe.model_validate({"exec": {"command": ["true"]}, "tcp": {"port": 80}})
    assert errors_of(exc) == [
        ((), "a probe needs exactly one of exec, http or tcp (got exec, tcp)")
    ]


def test_probe_port_must_be_declared() -> None:
    loc, msg = single_error(
        ports=[{"containerPort": 8080}],
        probes={"liveness": {"tcp": {"port": 9090}}},
    )
    assert loc == ("spec",)
    assert msg == (
        "the liveness probe uses port 9090, which is not in ports "
        "(declare it as a tcp containerPort so it can be published on 127.0.0.1)"
    )


def test_probe_port_must_be_a_tcp_port() -> None:
    _, msg = single_error(
        ports=[{"containerPort": 8080, "protocol": "udp"}],
        probes={"readiness": {"http": {"port": 8080}}},
    )
    assert msg.startswith("the readiness probe uses port 8080, which is not in ports")


def test_declared_probe_port_and_exec_probe_are_fine() -> None:
    w = workload(
        ports=[{"containerPort": 8080}],
        probes={
            "readiness": {"http": {"port": 8080, "path": "/healthz"}},
            "liveness": {"exec": {"command": ["true"]}},
        },
    )
    assert w.spec.probes.readiness is not None
    assert w.spec.probes.readiness.port() == 8080
    assert w.spec.probes.liveness is not None
    assert w.spec.probes.liveness.port() is None


def test_http_probe_path_must_be_absolute() -> None:
    with pytest.raises(ValidationError) as exc:
        Probe.model_validate({"http": {"port": 80, "path": "healthz"}})
    assert errors_of(exc) == [(("http", "path"), "path must start with '/'")]


# --- restart ---------------------------------------------------------------


def test_restart_defaults() -> None:
    restart = Restart()
    assert restart.policy is RestartPolicyName.ALWAYS
    assert (restart.initial_backoff_seconds, restart.max_backoff_seconds) == (1.0, 300.0)


def test_max_retries_with_on_failure_is_fine() -> None:
    restart = Restart.model_validate({"policy": "on-failure", "maxRetries": 5})
    assert restart.max_retries == 5


@pytest.mark.parametrize("policy", ["always", "never"])
def test_max_retries_needs_on_failure(policy: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Restart.model_validate({"policy": policy, "maxRetries": 5})
    assert errors_of(exc) == [((), "maxRetries applies only to policy 'on-failure'")]


def test_max_backoff_below_initial_backoff_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        Restart.model_validate({"initialBackoffSeconds": 10, "maxBackoffSeconds": 5})
    assert errors_of(exc) == [((), "maxBackoffSeconds must be >= initialBackoffSeconds")]


# --- volumes, env ----------------------------------------------------------


def test_bind_volume_needs_absolute_source() -> None:
    loc, msg = single_error(volumes=[{"name": "data", "type": "bind", "mountPath": "/data"}])
    assert (loc, msg) == (
        ("spec", "volumes", 0),
        "a bind volume needs 'source', an absolute host path",
    )


def test_size_limit_only_for_tmpfs() -> None:
    loc, msg = single_error(
        volumes=[{"name": "data", "type": "named", "mountPath": "/d", "sizeLimit": "1Mi"}]
    )
    assert (loc, msg) == (("spec", "volumes", 0), "sizeLimit applies only to tmpfs volumes")


def test_env_names_are_checked() -> None:
    loc, msg = single_error(env={"1BAD": "x"})
    assert (loc, msg) == (("spec", "env"), "environment variable name '1BAD' is invalid")


# --- template hash ---------------------------------------------------------


def test_template_hash_ignores_replicas_and_placement() -> None:
    one = workload(replicas=1)
    five = workload(replicas=5, placement={"targets": ["local"]})
    assert one.spec.template_hash() == five.spec.template_hash()
    assert len(one.spec.template_hash()) == 16


@pytest.mark.parametrize(
    "change",
    [
        {"image": "portway/busybox:1.36"},
        {"env": {"MODE": "debug"}},
        {"args": ["-v"]},
        {"resources": {"memory": "64Mi"}},
    ],
)
def test_template_hash_changes_with_the_replica_template(change: dict[str, Any]) -> None:
    assert workload().spec.template_hash() != workload(**change).spec.template_hash()


def test_template_hash_is_stable_and_ignores_env_order() -> None:
    a = workload(env={"A": "1", "B": "2"})
    b = workload(env={"B": "2", "A": "1"})
    assert a.spec.template_hash() == b.spec.template_hash()
    assert WorkloadSpec.model_validate({"image": "busybox"}).template_hash() == (
        WorkloadSpec.model_validate({"image": "busybox"}).template_hash()
    )


def test_models_forbid_unknown_fields_and_are_frozen() -> None:
    with pytest.raises(ValidationError) as exc:
        Port.model_validate({"containerPort": 80, "contianerPort": 81})
    assert [e["type"] for e in exc.value.errors()] == ["extra_forbidden"]
    port = Port.model_validate({"containerPort": 80})
    with pytest.raises(ValidationError):
        port.container_port = 81  # type: ignore[misc]


# --- JSON Schema -----------------------------------------------------------


def test_json_schema_header_and_camel_case_names() -> None:
    schema = workload_json_schema()
    assert list(schema)[:3] == ["$schema", "$id", "title"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == "https://portway.dev/schemas/v1/workload.json"
    assert schema["title"] == "Portway Workload"
    assert schema["required"] == ["apiVersion", "kind", "metadata", "spec"]
    assert schema["properties"]["apiVersion"]["const"] == "portway.dev/v1"
    assert schema["properties"]["kind"]["const"] == "Workload"
    assert schema["additionalProperties"] is False
    port = schema["$defs"]["Port"]
    assert port["required"] == ["containerPort"]
    assert set(port["properties"]) == {"name", "containerPort", "protocol", "hostPort", "hostIp"}
    assert port["additionalProperties"] is False
    assert "title" not in port["properties"]["containerPort"]
    assert json.loads(json.dumps(schema)) == schema


def test_json_schema_accepts_quantity_strings() -> None:
    defs = workload_json_schema()["$defs"]
    for definition, prop, example in [
        ("Resources", "cpu", "500m"),
        ("Resources", "memory", "64Mi"),
        ("Volume", "sizeLimit", "16Mi"),
    ]:
        variants = defs[definition]["properties"][prop]["anyOf"]
        patterns = [v["pattern"] for v in variants if v.get("type") == "string"]
        assert len(patterns) == 1, (definition, prop)
        assert re.match(patterns[0], example)
        assert not re.match(patterns[0], "lots")
        assert {"type": "null"} in variants


def test_json_schema_is_a_fresh_copy() -> None:
    first = workload_json_schema()
    first["$defs"].clear()
    assert workload_json_schema()["$defs"]
