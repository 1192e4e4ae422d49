"""Cluster information: namespaces with their policy, the conformance matrix."""

from __future__ import annotations

from fastapi import APIRouter, Request

from portway.access.rbac import Resource, Verb
from portway.api.context import context_of
from portway.api.models import Conformance, NamespaceList, NamespaceOut
from portway.api.names import NamespacePath
from portway.api.security import AccessDep
from portway.capabilities.matrix import load_packaged
from portway.service import namespaces as svc

router = APIRouter(tags=["cluster"])


def namespace_out(info: svc.NamespaceInfo) -> NamespaceOut:
    return NamespaceOut(
        name=info.name,
        source="object" if info.explicit else "defaults",
        spec=info.policy.model_dump(mode="json", by_alias=True, exclude_none=True),
        workloads=info.workloads,
    )


@router.get("/v1/namespaces", response_model=NamespaceList)
def list_namespaces(access: AccessDep, request: Request) -> NamespaceList:
    """Namespaces with a policy object, and those only workloads name."""
    access.check(Verb.LIST, Resource.NAMESPACES)
    return NamespaceList(
        items=[namespace_out(i) for i in svc.list_namespaces(context_of(request).app)]
    )


@router.get("/v1/namespaces/{namespace}", response_model=NamespaceOut)
def get_namespace(namespace: NamespacePath, access: AccessDep, request: Request) -> NamespaceOut:
    access.check(Verb.GET, Resource.NAMESPACES, namespace, namespace)
    return namespace_out(svc.get_namespace(context_of(request).app, namespace))


@router.get("/v1/conformance", response_model=Conformance)
def conformance(access: AccessDep) -> Conformance:
    """The capability matrix the planner trusts (the kept conformance run)."""
    access.check(Verb.GET, Resource.CONFORMANCE)
    return Conformance.model_validate(load_packaged().to_json())
