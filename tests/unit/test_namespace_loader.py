"""The loader reads kind Namespace next to kind Workload, with line-numbered
errors and did-you-mean hints for both."""

from __future__ import annotations

import textwrap

import pytest

from portway.errors import SpecError
from portway.spec.loader import load_documents_text, load_objects_text
from portway.spec.model import Isolation, Workload
from portway.spec.namespace import Namespace, PodSecurityLevel

MIXED = textwrap.dedent(
    """\
    apiVersion: portway.dev/v1
    kind: Namespace
    metadata: {name: untrusted}
    spec:
      podSecurity: restricted
      isolation: {default: sandboxed, minimum: sandboxed}
      images: {allowedPrefixes: [portway/], requireDigest: false}
      hostPorts: ["20000-20999", "8080"]
    ---
    apiVersion: portway.dev/v1
    kind: Workload
    metadata: {name: web, namespace: untrusted}
    spec:
      image: portway/busybox:latest
      security:
        privileged: true
    """
)


def issues_of(text: str) -> list[tuple[int | None, str, int | None, str, str | None]]:
    with pytest.raises(SpecError) as info:
        load_objects_text(text, "ns.yaml")
    return [(i.document, i.path, i.line, i.message, i.hint) for i in info.value.issues]


def test_a_file_mixes_namespaces_and_workloads() -> None:
    loaded = load_objects_text(MIXED, "ns.yaml")
    namespace, workload = (item.object for item in loaded)
    assert isinstance(namespace, Namespace)
    assert namespace.name == "untrusted"
    assert namespace.spec.pod_security is PodSecurityLevel.RESTRICTED
    assert namespace.spec.isolation.minimum is Isolation.SANDBOXED
    assert namespace.spec.port_ranges() == [(20000, 20999), (8080, 8080)]
    assert isinstance(workload, Workload)
    assert [item.document for item in loaded] == [1, 2]
    # lines survive for later checks (policy points at them)
    assert loaded[1].line_of("spec.security.privileged") == 16
    assert loaded[1].line_of("spec.volumes[3].source") == 13  # nearest ancestor: spec
    # the workload-only API leaves namespaces out
    assert [doc for doc, _ in load_documents_text(MIXED, "ns.yaml")] == [2]


def test_namespace_defaults() -> None:
    [item] = load_objects_text(
        "apiVersion: portway.dev/v1\nkind: Namespace\nmetadata: {name: team}\n", "ns.yaml"
    )
    assert isinstance(item.object, Namespace)
    spec = item.object.spec
    assert spec.pod_security is PodSecurityLevel.BASELINE
    assert spec.isolation.default is Isolation.STANDARD
    assert spec.isolation.minimum is None
    assert spec.host_ports == ["1024-65535"]
    assert spec.images.allowed_prefixes == []


def test_bad_level_is_located() -> None:
    text = MIXED.replace("podSecurity: restricted", "podSecurity: strict")
    [(doc, path, line, message, _)] = issues_of(text)
    assert (doc, path, line) == (1, "spec.podSecurity", 5)
    assert "'privileged', 'baseline' or 'restricted'" in message


def test_unknown_namespace_field_gets_did_you_mean() -> None:
    text = MIXED.replace("hostPorts:", "hostPort:")
    [(doc, path, line, message, hint)] = issues_of(text)
    assert (doc, path, line) == (1, "spec.hostPort", 8)
    assert message == "unknown field 'hostPort'"
    assert hint == "did you mean 'hostPorts'?"


def test_snake_case_namespace_field_is_refused() -> None:
    text = MIXED.replace("podSecurity:", "pod_security:")
    [(_, path, line, _, hint)] = issues_of(text)
    assert (path, line) == ("spec.pod_security", 5)
    assert hint == "did you mean 'podSecurity'? field names are camelCase"


def test_bad_port_range_and_tier_order_are_reported() -> None:
    text = MIXED.replace('"20000-20999"', '"20999-20000"')
    [(_, path, line, message, _)] = issues_of(text)
    assert (path, line) == ("spec.hostPorts", 8)
    assert "must be ascending" in message
    text = MIXED.replace("default: sandboxed", "default: standard")
    [(_, path, _, message, _)] = issues_of(text)
    assert "isolation.default 'standard' is weaker than isolation.minimum 'sandboxed'" in message


def test_errors_in_both_kinds_come_together() -> None:
    text = MIXED.replace("podSecurity: restricted", "podSecurity: 3").replace(
        "privileged: true", "privilegd: true"
    )
    found = issues_of(text)
    assert [(d, p) for d, p, *_ in found] == [
        (1, "spec.podSecurity"),
        (2, "spec.security.privilegd"),
    ]
    assert found[1][4] == "did you mean 'privileged'?"


def test_duplicate_namespace_documents() -> None:
    head = "apiVersion: portway.dev/v1\nkind: Namespace\nmetadata: {name: team}\n"
    [(doc, path, _, message, _)] = issues_of(head + "---\n" + head)
    assert (doc, path) == (2, "metadata.name")
    assert message == "duplicate namespace 'team': documents 1 and 2 both define it"


def test_unknown_kind_names_both_kinds() -> None:
    text = MIXED.replace("kind: Namespace", "kind: Namespaces")
    [(_, path, line, message, hint)] = issues_of(text)
    assert (path, line, message) == ("kind", 2, "unsupported kind 'Namespaces'")
    assert hint == "`kind: Workload` or `kind: Namespace`"
