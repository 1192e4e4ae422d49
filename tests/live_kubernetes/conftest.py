"""Live tests against a real Kubernetes cluster (marker ``kubernetes_live``).

No API server can run on the machine portway's CI uses, so these tests are
*deselected* unless asked for: ``scripts/test-kubernetes.sh`` (or
``PORTWAY_KUBERNETES_LIVE=1 pytest tests/live_kubernetes``). Deselected, not
skipped: tests/conftest.py turns a skipped engine test into a failure in CI,
and a cluster that cannot exist there is not a missing engine. Asked for
without a cluster, they fail with a message that says what to set.

Where: ``KUBECONFIG`` (required), ``PORTWAY_KUBERNETES_CONTEXT`` (default:
its current context). Each session makes its own namespace
``portway-live-<random>`` and deletes it at the end. The test image
``portway/busybox:latest`` must be on the nodes (``kind load docker-image
portway/busybox:latest`` after ``scripts/build-images.sh``): portway never pulls.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

MARKER = "kubernetes_live"
HERE = Path(__file__).resolve().parent


def live_requested() -> bool:
    return os.environ.get("PORTWAY_KUBERNETES_LIVE", "").strip().lower() in {"1", "true", "yes"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: needs a real Kubernetes cluster (KUBECONFIG); deselected unless "
        "PORTWAY_KUBERNETES_LIVE=1 (scripts/test-kubernetes.sh)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    live = [i for i in items if i.get_closest_marker(MARKER) is not None]
    if not live or live_requested():
        return
    config.hook.pytest_deselected(items=live)
    items[:] = [i for i in items if i.get_closest_marker(MARKER) is None]


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    path = os.environ.get("KUBECONFIG", "")
    if not path:
        pytest.fail(
            "the live Kubernetes tests need a cluster: set KUBECONFIG to its kubeconfig "
            "(and PORTWAY_KUBERNETES_CONTEXT to a context other than the current one)",
            pytrace=False,
        )
    missing = [p for p in path.split(os.pathsep) if p and not Path(p).exists()]
    if missing:
        pytest.fail(f"KUBECONFIG names file(s) that do not exist: {missing}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def live_namespace(kubeconfig: str) -> Iterator[str]:
    """A namespace of this session's own, deleted afterwards."""
    from kubernetes import client, config

    context = os.environ.get("PORTWAY_KUBERNETES_CONTEXT") or None
    new_client: Callable[..., client.ApiClient] = config.new_client_from_config  # unannotated
    api = client.CoreV1Api(new_client(config_file=kubeconfig, context=context))
    name = f"portway-live-{uuid.uuid4().hex[:8]}"
    meta = client.V1ObjectMeta(name=name, labels={"portway.dev/test": "live"})
    api.create_namespace(client.V1Namespace(metadata=meta))
    try:
        yield name
    finally:
        api.delete_namespace(name)
        api.api_client.close()


@pytest.fixture(scope="session")
def live_address(kubeconfig: str, live_namespace: str) -> str:
    from portway.drivers.kubernetes.address import format_address

    context = os.environ.get("PORTWAY_KUBERNETES_CONTEXT", "")
    return format_address(context, kubeconfig, live_namespace)
