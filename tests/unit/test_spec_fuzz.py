"""Property tests: for any input text, loading returns workloads or raises SpecError.

Nothing else may escape, and the loader's last-resort "internal error" must
never be what the user sees.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portway.errors import SpecError
from portway.spec.loader import load_workloads_text
from portway.spec.model import Workload

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

VALID: dict[str, Any] = {
    "apiVersion": "portway.dev/v1",
    "kind": "Workload",
    "metadata": {"name": "web", "namespace": "team-a", "labels": {"app": "web"}},
    "spec": {
        "image": "portway/busybox:latest",
        "command": ["httpd", "-f"],
        "env": {"MODE": "test"},
        "ports": [{"name": "http", "containerPort": 8080, "hostPort": 18080}],
        "replicas": 2,
        "resources": {"cpu": "500m", "memory": "64Mi", "pids": 100},
        "restart": {"policy": "on-failure", "maxRetries": 3},
        "probes": {"readiness": {"http": {"port": 8080, "path": "/health"}}},
        "volumes": [{"name": "scratch", "type": "tmpfs", "mountPath": "/tmp", "sizeLimit": "16Mi"}],
        "security": {"user": "1000:1000", "capabilities": {"drop": ["ALL"]}},
        "placement": {"targetSelector": {"zone": "a"}},
        "extensions": {"docker": {"network": "bridge"}},
    },
}

FIELD_NAMES = [
    "apiVersion", "kind", "metadata", "spec", "name", "namespace", "labels", "image",
    "command", "args", "env", "ports", "containerPort", "hostPort", "hostIp", "protocol",
    "replicas", "resources", "cpu", "memory", "pids", "restart", "policy", "maxRetries",
    "probes", "liveness", "readiness", "exec", "http", "tcp", "port", "path", "volumes",
    "type", "mountPath", "source", "sizeLimit", "security", "capabilities", "add", "drop",
    "isolation", "placement", "targets", "extensions", "contianerPort", "host_port",
]  # fmt: skip

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        ["64Mi", "500m", "1e400", "9" * 400 + "Ti", "0.0.0.0", "::1", "tcp", "UDP", "", "/",
         "on-failure", "tmpfs", "bind", "2024-13-45", "1:30", "0x1F", ".inf", "~", "null"]
    ),
)  # fmt: skip
KEYS = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12))
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=25,
)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists."""
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += _paths(value, (*prefix, i))
    return out


@st.composite
def mutated_workload(draw: st.DrawFn) -> Any:
    """The valid workload with some values replaced, removed or extra keys added."""
    doc = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(JUNK)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(KEYS)] = draw(JUNK)
        else:
            parent.append(draw(JUNK))
    return doc


def _load_or_spec_error(text: str) -> list[Workload] | None:
    try:
        workloads = load_workloads_text(text, "fuzz.yaml")
    except SpecError as e:
        assert e.issues
        for issue in e.issues:
            assert issue.file == "fuzz.yaml"
            assert "internal error" not in issue.message, issue
            assert issue.line is None or issue.line >= 1
        return None
    assert workloads
    assert all(isinstance(w, Workload) for w in workloads)
    return workloads


@FUZZ
@given(st.text(alphabet=st.characters(codec=None), max_size=300))
def test_arbitrary_text_loads_or_raises_spec_error(text: str) -> None:
    _load_or_spec_error(text)


YAMLISH = st.text(alphabet="-:[]{}&*!|>'\"#%@`?,. \n\t~0123456789abcxyzK&<=", max_size=200)


@FUZZ
@given(YAMLISH)
def test_yaml_like_text_loads_or_raises_spec_error(text: str) -> None:
    _load_or_spec_error(text)


@FUZZ
@given(st.lists(st.one_of(JUNK, mutated_workload()), min_size=0, max_size=3))
def test_yaml_documents_load_or_raise_spec_error(documents: list[Any]) -> None:
    text = yaml.safe_dump_all(documents, allow_unicode=True)
    _load_or_spec_error(text)


@FUZZ
@given(mutated_workload(), st.data())
def test_edited_valid_text_loads_or_raises_spec_error(doc: Any, data: st.DataObject) -> None:
    text = yaml.safe_dump(doc, sort_keys=False)
    for _ in range(data.draw(st.integers(min_value=0, max_value=3))):
        at = data.draw(st.integers(min_value=0, max_value=len(text)))
        insert = data.draw(st.sampled_from(["", ":", "-", " ", "\n", "[", "&a ", "*a", "!!x "]))
        cut = data.draw(st.integers(min_value=0, max_value=3))
        text = text[:at] + insert + text[at + cut :]
    _load_or_spec_error(text)


def test_unmutated_valid_workload_loads() -> None:
    workloads = _load_or_spec_error(yaml.safe_dump(VALID))
    assert workloads is not None
    assert workloads[0].key == "team-a/web"
