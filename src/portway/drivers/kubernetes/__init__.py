"""Kubernetes driver: one Pod per portway replica on a cluster named by a
kubeconfig context, through the official ``kubernetes`` Python client.

``KubernetesDriver`` is loaded lazily, so that ``portway target add`` can parse
a Kubernetes address (``address``) without importing the client library.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KubernetesDriver"]


def __getattr__(name: str) -> Any:
    if name == "KubernetesDriver":
        from portway.drivers.kubernetes.driver import KubernetesDriver

        return KubernetesDriver
    raise AttributeError(name)
