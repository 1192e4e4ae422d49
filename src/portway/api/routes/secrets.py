"""Secrets: list and read their metadata, create or replace their values,
delete them. Values go in (base64, in a PUT body) and never come out: every
answer is names, keys, sizes and versions (``SecretInfo``), and no error
message quotes a value (a bad value is named by its key only)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from pydantic import Field, WithJsonSchema

from portway.access import rbac
from portway.access.rbac import Resource, Verb
from portway.api.context import context_of
from portway.api.errors import ErrorBody
from portway.api.models import ApiModel
from portway.api.names import NamePath, NamespacePath, NamespaceQuery
from portway.api.security import AccessDep
from portway.errors import InputError, Issue, NotFoundError
from portway.secrets import SecretInfo
from portway.service import secrets as svc
from portway.service.app import App
from portway.spec.model import SECRET_KEY_RE

router = APIRouter(
    tags=["secrets"],
    responses={
        500: {
            "model": ErrorBody,
            "description": "SecretUnreadable: the server's key file does not open a stored "
            "value (the message names the key file, never a value)",
        }
    },
)


class SecretOut(ApiModel):
    """What may be shown about a secret: never a value."""

    namespace: str
    name: str
    keys: list[str]
    sizes: dict[str, int] = Field(description="key -> size of its value in bytes")
    version: int = Field(description="Bumps when a value changes (replicas using it roll).")
    created_at: float
    updated_at: float


class SecretList(ApiModel):
    items: list[SecretOut]


class SecretWritten(SecretOut):
    outcome: str = Field(description="created, configured (a value or key changed) or unchanged")


#: base64 as ``base64.b64decode(validate=True)`` takes it: standard alphabet, padded
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"

# The schema states the rules (so clients and schemathesis make valid
# bodies); the checks are the service's and ``decode_values``', whose
# messages name the key and never quote a value.
SecretKeyName = Annotated[str, WithJsonSchema({"type": "string", "pattern": SECRET_KEY_RE.pattern})]
Base64Value = Annotated[str, WithJsonSchema({"type": "string", "pattern": BASE64_PATTERN})]


class SecretPut(ApiModel):
    data: dict[SecretKeyName, Base64Value] = Field(
        min_length=1,
        json_schema_extra={"additionalProperties": False},  # keys must match the pattern
        description="key -> value, base64-encoded (standard alphabet, padded). All keys: "
        "keys left out are dropped from an existing secret.",
    )


IfNoneMatch = Annotated[
    str | None,
    Header(
        pattern=r"^\*$",
        description="`*`: create only; if the secret exists, 409 AlreadyExists and nothing "
        "changes (what `portway secret create` without --update sends).",
    ),
]


def secret_out(info: SecretInfo) -> SecretOut:
    return SecretOut(
        namespace=info.namespace,
        name=info.name,
        keys=list(info.keys),
        sizes=dict(info.sizes),
        version=info.version,
        created_at=info.created_at,
        updated_at=info.updated_at,
    )


def decode_values(data: dict[str, str]) -> dict[str, bytes]:
    """key -> bytes; every value that is not base64 reported by its key
    (never quoted: it may be the secret itself)."""
    decoded: dict[str, bytes] = {}
    issues: list[Issue] = []
    for key, text in data.items():
        try:
            decoded[key] = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            issues.append(
                Issue(
                    f"data.{key}: the value is not base64 (standard alphabet A-Z a-z 0-9 + /, "
                    "padded with '=')",
                    path=f"data.{key}",
                    hint="encode it first, e.g. `base64 -w0 FILE`",
                )
            )
    if issues:
        raise InputError(issues)
    return decoded


def _existing(app: App, namespace: str, name: str) -> SecretInfo | None:
    try:
        return svc.get_info(app, namespace, name)
    except NotFoundError:
        return None


def _outcome(before: SecretInfo | None, after: SecretInfo) -> str:
    if before is None:
        return "created"
    if before.version == after.version and before.keys == after.keys:
        return "unchanged"
    return "configured"


@router.get("/v1/secrets", response_model=SecretList)
def list_all_secrets(
    access: AccessDep, request: Request, namespace: NamespaceQuery = None
) -> SecretList:
    """Secrets in every namespace the caller may list (or only ``namespace``)."""
    readable = access.readable_in(Resource.SECRETS, namespace)
    infos = svc.list_secrets(context_of(request).app, namespace)
    return SecretList(
        items=[secret_out(i) for i in infos if readable is None or i.namespace in readable]
    )


@router.get("/v1/namespaces/{namespace}/secrets", response_model=SecretList)
def list_secrets(namespace: NamespacePath, access: AccessDep, request: Request) -> SecretList:
    access.check(Verb.LIST, Resource.SECRETS, namespace)
    infos = svc.list_secrets(context_of(request).app, namespace)
    return SecretList(items=[secret_out(i) for i in infos])


@router.get("/v1/namespaces/{namespace}/secrets/{name}", response_model=SecretOut)
def get_secret(
    namespace: NamespacePath, name: NamePath, access: AccessDep, request: Request
) -> SecretOut:
    """One secret's keys, sizes and version (never its values)."""
    access.check(Verb.GET, Resource.SECRETS, namespace, name)
    return secret_out(svc.get_info(context_of(request).app, namespace, name))


@router.put(
    "/v1/namespaces/{namespace}/secrets/{name}",
    response_model=SecretWritten,
    status_code=200,
    responses={201: {"model": SecretWritten, "description": "Created"}},
)
def put_secret(
    namespace: NamespacePath,
    name: NamePath,
    body: SecretPut,
    access: AccessDep,
    request: Request,
    response: Response,
    if_none_match: IfNoneMatch = None,
) -> SecretWritten:
    """Create the secret (201) or replace all its values (200). Workloads
    using it roll when a value changed."""
    app = context_of(request).app
    before = _existing(app, namespace, name)
    create_only = if_none_match is not None
    # create or update as it will be; but a caller who may not read the
    # namespace's secrets is always told "create", so a refusal does not
    # reveal whether the name exists there
    may_read = rbac.allowed(access.principal, Verb.GET, Resource.SECRETS, namespace)
    verb = Verb.UPDATE if before is not None and not create_only and may_read else Verb.CREATE
    access.check(verb, Resource.SECRETS, namespace, name)
    data = decode_values(body.data)
    if create_only:
        after = svc.create(app, namespace, name, data)
    else:
        after = svc.create_or_update(app, namespace, name, data)
    outcome = _outcome(None if create_only else before, after)
    if outcome == "created":
        response.status_code = 201
    return SecretWritten(**secret_out(after).model_dump(), outcome=outcome)


@router.delete("/v1/namespaces/{namespace}/secrets/{name}", response_model=SecretOut)
def delete_secret(
    namespace: NamespacePath, name: NamePath, access: AccessDep, request: Request
) -> SecretOut:
    """Remove the secret; 422 while a workload uses it (the answer names them)."""
    access.check(Verb.DELETE, Resource.SECRETS, namespace, name)
    return secret_out(svc.delete(context_of(request).app, namespace, name))
