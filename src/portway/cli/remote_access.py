"""``portway token|rolebinding|audit-log`` against a server: each function
returns the data its local twin in cli/access.py returns, so the same printer
renders it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from portway.errors import NotFoundError

if TYPE_CHECKING:  # httpx loads only when a context is in use
    from portway.client.http import JSON, PortwayClient

P = ParamSpec("P")
R = TypeVar("R")


def routed(
    local: Callable[P, R], remote: Callable[Concatenate[PortwayClient, P], R]
) -> Callable[P, R]:
    """``local`` on the embedded store, ``remote`` with the client of the
    context in use: one call site per command in either mode."""

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        from portway.cli import contexts

        context = contexts.active_context()
        if context is None:
            return local(*args, **kwargs)
        with contexts.client_for(context) as client:
            return remote(client, *args, **kwargs)

    return call


def _find_token(client: PortwayClient, token_id: str) -> JSON:
    for item in client.tokens():
        if item.get("id") == token_id:
            return item
    raise NotFoundError(f"token {token_id} not found (see `portway token ls`)")


def token_create(
    client: PortwayClient,
    user: str,
    pairs: Sequence[tuple[str, str]],
    ttl: str,
    name: str | None,
) -> tuple[str, JSON]:
    from portway.access.tokens import parse_ttl

    body: JSON = {
        "user": user,
        "name": name,
        "ttlSeconds": parse_ttl(ttl),
        "bindings": [{"role": r, "namespace": n} for r, n in pairs],
    }
    answer = client.create_token(body)
    info = answer.get("info")
    if not isinstance(info, dict):
        info = _find_token(client, str(answer["id"]))
    return str(answer["token"]), info


def token_ls(client: PortwayClient, user: str | None) -> list[JSON]:
    return [t for t in client.tokens() if user is None or t.get("user") == user]


def token_revoke(client: PortwayClient, token_id: str) -> JSON:
    answer: Any = client.revoke_token(token_id)
    if isinstance(answer, dict) and "id" in answer:
        return answer
    return _find_token(client, token_id)


def bind(client: PortwayClient, user: str, role: str, namespace: str) -> JSON:
    body = {"user": user, "role": role, "namespace": namespace}
    answer = client.request("POST", "/v1/rolebindings", body=body)
    changed = not isinstance(answer, dict) or bool(answer.get("changed", True))
    return {**body, "outcome": "created" if changed else "unchanged"}


def unbind(client: PortwayClient, user: str, role: str, namespace: str) -> JSON:
    params = {"user": user, "role": role, "namespace": namespace}
    client.request("DELETE", "/v1/rolebindings", params=params)
    return {**params, "outcome": "deleted"}


def bindings(client: PortwayClient, user: str | None, namespace: str | None) -> list[JSON]:
    answer = client.request(
        "GET", "/v1/rolebindings", params={"user": user, "namespace": namespace}
    )
    items = answer.get("items", []) if isinstance(answer, dict) else answer or []
    return [dict(b) for b in items if isinstance(b, dict)]


def audit(client: PortwayClient, user: str | None, namespace: str | None, limit: int) -> list[JSON]:
    return client.audit(user=user, namespace=namespace, limit=limit)
