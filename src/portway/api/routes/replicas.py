"""Replicas of one workload, or of every readable namespace."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from portway.access.rbac import Resource, Verb
from portway.api.context import context_of
from portway.api.models import ReplicaList, ReplicaOut
from portway.api.names import NamePath, NamespacePath, NamespaceQuery
from portway.api.security import AccessDep
from portway.controller.records import ReplicaView
from portway.service import workloads as svc

router = APIRouter(tags=["replicas"])


def replica_out(namespace: str, view: ReplicaView) -> ReplicaOut:
    # only the fields the API documents: a field added to the record later
    # must not turn every replica listing into an error
    known = ReplicaOut.model_fields
    fields: dict[str, Any] = {k: v for k, v in view.to_status().items() if k in known}
    return ReplicaOut.model_validate({**fields, "namespace": namespace})


@router.get("/v1/namespaces/{namespace}/workloads/{name}/replicas", response_model=ReplicaList)
def workload_replicas(
    namespace: NamespacePath, name: NamePath, access: AccessDep, request: Request
) -> ReplicaList:
    access.check(Verb.LIST, Resource.REPLICAS, namespace, name)
    app = context_of(request).app
    svc.get_workload(app, namespace, name)  # 404 for an unknown workload, not an empty list
    return ReplicaList(
        items=[replica_out(namespace, v) for v in svc.replicas_of(app, namespace, name)]
    )


@router.get("/v1/replicas", response_model=ReplicaList)
def all_replicas(
    access: AccessDep, request: Request, namespace: NamespaceQuery = None
) -> ReplicaList:
    readable = access.readable_in(Resource.REPLICAS, namespace)
    pairs = svc.all_replicas(context_of(request).app, namespace)
    return ReplicaList(
        items=[replica_out(ns, v) for ns, v in pairs if readable is None or ns in readable]
    )
