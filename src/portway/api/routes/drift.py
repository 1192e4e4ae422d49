"""The drift report of a workload as stored, on every target.

``POST /v1/plan`` judges documents a client sends; this route judges what
was applied, so a reader (the dashboard, ``curl``) sees the field x target
verdicts of a running workload without holding its file or the right to
create plans.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from portway.access.rbac import Resource, Verb
from portway.api.context import context_of
from portway.api.models import PlanResponse
from portway.api.names import NamePath, NamespacePath
from portway.api.routes.operations import plan_json
from portway.api.security import AccessDep
from portway.controller.records import workload_of
from portway.service import workloads as svc
from portway.service.planning import plan_workloads

router = APIRouter(tags=["operations"])


@router.get("/v1/namespaces/{namespace}/workloads/{name}/drift", response_model=PlanResponse)
def workload_drift(
    namespace: NamespacePath, name: NamePath, access: AccessDep, request: Request
) -> PlanResponse:
    """The stored workload planned on every target (health checked now): one
    item shaped like ``POST /v1/plan``'s, its ``file`` being ``namespace/name``."""
    access.check(Verb.GET, Resource.WORKLOADS, namespace, name)
    app = context_of(request).app
    record = svc.get_workload(app, namespace, name)
    plans = plan_workloads(app, [(workload_of(record), f"{namespace}/{name}", 1)])
    return PlanResponse(items=[plan_json(p) for p in plans])
