"""Services in the spec: what a service is, its aliases, and the Kubernetes-style
environment variables (``portway.spec.services``)."""

from __future__ import annotations

from typing import Any

import pytest

from portway.drivers.base import ReplicaRequest
from portway.spec.model import WorkloadSpec
from portway.spec.services import (
    env_prefix,
    is_service,
    service_aliases,
    service_env,
    service_host,
    service_ports,
)


def spec(**fields: Any) -> WorkloadSpec:
    return WorkloadSpec.model_validate({"image": "portway/busybox:latest", **fields})


WEB = spec(ports=[{"name": "http", "containerPort": 8080}, {"containerPort": 9090}])
PLAIN = spec(ports=[{"containerPort": 8080}])


def test_a_workload_with_a_named_port_is_a_service() -> None:
    assert is_service(WEB)
    assert not is_service(PLAIN)
    assert not is_service(spec())


def test_a_service_lists_every_port_in_order() -> None:
    assert service_ports(WEB) == (("http", 8080), (None, 9090))
    assert service_ports(PLAIN) == ()


def test_a_service_answers_to_its_name_and_name_dot_namespace() -> None:
    assert service_host("web", "shop") == "web.shop"
    assert service_aliases("web", "shop", WEB) == ("web", "web.shop")
    assert service_aliases("worker", "shop", PLAIN) == ()


def test_a_replica_request_has_no_aliases_unless_given() -> None:
    request = ReplicaRequest("shop", "web", 0, 1, WEB.template_hash(), WEB)
    assert request.aliases == ()
    named = ReplicaRequest(
        "shop", "web", 0, 1, WEB.template_hash(), WEB, aliases=("web", "web.shop")
    )
    # the aliases are no owner label: labels (and so adoption) do not change
    assert named.labels("t") == request.labels("t")
    assert named.name == request.name


def test_env_follows_kubernetes_names() -> None:
    env = service_env({"web": [("http", 8080), (None, 9090)]}, "default")
    assert env == {
        "WEB_SERVICE_HOST": "web.default",
        "WEB_SERVICE_PORT": "8080",
        "WEB_SERVICE_PORT_HTTP": "8080",
    }


def test_env_upper_cases_and_turns_dashes_into_underscores() -> None:
    env = service_env({"my-api": [("grpc-web", 50051), ("metrics", 9100)]}, "team-a")
    assert env == {
        "MY_API_SERVICE_HOST": "my-api.team-a",
        "MY_API_SERVICE_PORT": "50051",
        "MY_API_SERVICE_PORT_GRPC_WEB": "50051",
        "MY_API_SERVICE_PORT_METRICS": "9100",
    }
    assert env_prefix("a-b-c") == "A_B_C"


def test_the_first_port_is_the_service_port_even_unnamed() -> None:
    env = service_env({"db": [(None, 5432), ("admin", 8080)]}, "ns")
    assert env["DB_SERVICE_PORT"] == "5432"
    assert env["DB_SERVICE_PORT_ADMIN"] == "8080"
    assert "DB_SERVICE_PORT_NONE" not in env


def test_several_services_in_a_stable_order() -> None:
    services = {"web": [("http", 80)], "api": [("http", 8080)]}
    env = service_env(services, "ns")
    assert list(env) == [
        "API_SERVICE_HOST",
        "API_SERVICE_PORT",
        "API_SERVICE_PORT_HTTP",
        "WEB_SERVICE_HOST",
        "WEB_SERVICE_PORT",
        "WEB_SERVICE_PORT_HTTP",
    ]
    assert env == service_env(dict(reversed(services.items())), "ns")


def test_a_service_without_ports_gets_only_its_host() -> None:
    assert service_env({"web": []}, "ns") == {"WEB_SERVICE_HOST": "web.ns"}
    assert service_env({}, "ns") == {}


@pytest.mark.parametrize("name", ["web", "my-web", "a1-b2"])
def test_variable_names_are_valid_spec_env_names(name: str) -> None:
    env = service_env({name: [("http", 80)]}, "ns")
    # the controller adds them to spec.env, whose names the model checks
    assert spec(env=env).env == env


def test_from_a_spec_to_the_variables() -> None:
    env = service_env({"web": service_ports(WEB)}, "shop")
    assert env["WEB_SERVICE_PORT"] == "8080"
    assert env["WEB_SERVICE_PORT_HTTP"] == "8080"
