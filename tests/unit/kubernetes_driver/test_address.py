"""Target addresses and ``target add --context/--kubeconfig/--namespace``."""

from __future__ import annotations

import pytest

from portway.cli.kubernetes_target import kubernetes_address
from portway.drivers.kubernetes.address import KubeAddress, format_address, parse_address
from portway.drivers.registry import driver_name_from_address
from portway.errors import InputError


def test_round_trip_with_awkward_context_names() -> None:
    for context in ("kind-dev", "kubernetes-admin@kubernetes", "arn:aws:eks:eu-west-1:1:cluster/x"):
        address = format_address(context, "/tmp/k config", "portway")
        assert driver_name_from_address(address) == "kubernetes"
        assert parse_address(address) == KubeAddress(context, "/tmp/k config", "portway")


def test_defaults() -> None:
    assert format_address() == "kubernetes://"
    assert parse_address("kubernetes://") == KubeAddress()
    assert str(KubeAddress("kind-dev", namespace="ns")) == "kubernetes://kind-dev?namespace=ns"


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("docker:///x", "expected kubernetes://"),
        ("kubernetes://ctx?color=blue", "unknown option(s) color"),
        ("kubernetes://ctx?namespace=Bad_NS", "not a Kubernetes namespace name"),
        ("kubernetes://ctx?namespace=a&namespace=b", "namespace given 2 times"),
        ("kubernetes://ctx/extra", "unexpected path"),
    ],
)
def test_bad_addresses_say_what_is_wrong(address: str, says: str) -> None:
    with pytest.raises(InputError, match=says.replace("(", r"\(").replace(")", r"\)")):
        parse_address(address)


def test_cli_flags_make_the_address() -> None:
    assert kubernetes_address(None, "kubernetes", "kind-dev", None, "portway") == (
        "kubernetes://kind-dev?namespace=portway"
    )
    assert kubernetes_address(None, None, "kind-dev", "/k", None) == (
        "kubernetes://kind-dev?kubeconfig=%2Fk"
    )
    # no kubernetes flag: other drivers' addresses pass through untouched
    assert kubernetes_address("docker:///s", None, None, None, None) == "docker:///s"
    assert kubernetes_address(None, "docker", None, None, None) is None
    # --driver kubernetes alone: the current context of the default kubeconfig
    assert kubernetes_address(None, "kubernetes", None, None, None) == "kubernetes://"


def test_cli_flag_mistakes() -> None:
    with pytest.raises(InputError, match="apply to --driver kubernetes only"):
        kubernetes_address(None, "docker", "ctx", None, None)
    with pytest.raises(InputError, match="either --address or --context"):
        kubernetes_address("kubernetes://a", None, "ctx", None, None)
    with pytest.raises(InputError, match="--namespace 'NS'"):
        kubernetes_address(None, "kubernetes", None, None, "NS")
    with pytest.raises(InputError, match="--context: empty"):
        kubernetes_address(None, "kubernetes", " ", None, None)
    with pytest.raises(InputError, match="unknown option"):
        kubernetes_address("kubernetes://a?x=1", None, None, None, None)
