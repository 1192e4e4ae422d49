"""``portway secret create|ls|rm`` against a server: each function returns
what its local twin in cli/secrets.py returns, so the same lines print."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # httpx loads only when a context is in use
    from portway.client.http import JSON, PortwayClient


def write(
    client: PortwayClient, namespace: str, name: str, data: Mapping[str, bytes], update: bool
) -> tuple[JSON, str]:
    """Without ``update`` the server refuses an existing name (409, exit 1
    like local mode's AlreadyExistsError); with it, creates or replaces."""
    answer = client.put_secret(namespace, name, data, create_only=not update)
    return answer, str(answer.get("outcome", "configured"))


def listing(client: PortwayClient, namespace: str | None) -> list[JSON]:
    return client.secrets(namespace)


def remove(client: PortwayClient, namespace: str, name: str) -> None:
    client.delete_secret(namespace, name)
