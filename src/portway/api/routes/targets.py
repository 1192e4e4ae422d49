"""Targets: read by any principal with a binding; changed by cluster admins."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from portway.access.rbac import Resource, Verb
from portway.api.context import context_of
from portway.api.models import (
    TargetAction,
    TargetCreate,
    TargetList,
    TargetOut,
    TargetPatch,
    TargetRemoved,
)
from portway.api.names import TargetPath
from portway.api.security import AccessDep
from portway.controller.records import TargetView
from portway.errors import NotFoundError
from portway.service import targets as svc
from portway.service.app import App

router = APIRouter(tags=["targets"])


def target_out(view: TargetView) -> TargetOut:
    """The fields ``portway get targets -o json`` prints."""
    body: dict[str, Any] = {
        "name": view.name,
        "driver": view.driver,
        "address": view.address,
        "labels": dict(view.labels),
        "health": view.health,
        "status": svc.schedule_status(view),
        "cordoned": view.cordoned,
        "draining": view.draining,
        "capacity": {
            key: {"value": f.value, "source": f.source} for key, f in svc.capacity_of(view).items()
        },
        "taints": [dict(t) for t in view.taints],
        "detail": view.detail,
        "version": view.version,
        "runtimeHandlers": list(view.runtime_handlers),
        "tiers": {
            tier: {"handler": h.handler, "overheadMemory": h.overhead_memory}
            for tier, h in view.tiers.items()
        },
        "attributes": dict(view.attributes),
        "checkedAt": view.checked_at,
        "healthSince": view.health_since,
    }
    return TargetOut.model_validate(body)


def _view(app: App, name: str) -> TargetView:
    view = app.targets.view(name)
    if view is None:
        known = ", ".join(v.name for v in app.target_views()) or "none"
        raise NotFoundError(f"target {name} not found; known targets: {known}")
    return view


@router.get("/v1/targets", response_model=TargetList)
def list_targets(access: AccessDep, request: Request) -> TargetList:
    access.check(Verb.LIST, Resource.TARGETS)
    views = sorted(context_of(request).app.target_views(), key=lambda v: v.name)
    return TargetList(items=[target_out(v) for v in views])


@router.get("/v1/targets/{name}", response_model=TargetOut)
def get_target(name: TargetPath, access: AccessDep, request: Request) -> TargetOut:
    access.check(Verb.GET, Resource.TARGETS, None, name)
    return target_out(_view(context_of(request).app, name))


@router.post("/v1/targets", response_model=TargetOut, status_code=201)
def add_target(body: TargetCreate, access: AccessDep, request: Request) -> TargetOut:
    """``portway target add``: register a target and check its health now."""
    access.check(Verb.CREATE, Resource.TARGETS, None, body.name)
    app = context_of(request).app
    view = svc.add_target(
        app,
        body.name,
        body.address,
        body.driver,
        svc.parse_labels(body.labels),
        capacity=svc.parse_capacity(body.capacity),
        taints=svc.parse_taints(body.taints),
    )
    return target_out(view)


@router.patch("/v1/targets/{name}", response_model=TargetOut)
def set_target(
    name: TargetPath, body: TargetPatch, access: AccessDep, request: Request
) -> TargetOut:
    """``portway target set``: labels, capacity and taints."""
    access.check(Verb.UPDATE, Resource.TARGETS, None, name)
    app = context_of(request).app
    _view(app, name)
    view = svc.set_target(app, name, labels=body.labels, capacity=body.capacity, taints=body.taints)
    return target_out(view)


def _action(request: Request, access: Any, name: str, verb: str) -> TargetAction:
    access.check(Verb.UPDATE, Resource.TARGETS, None, name)
    app = context_of(request).app
    change = {"cordon": svc.cordon, "uncordon": svc.uncordon, "drain": svc.start_drain}[verb]
    return TargetAction(name=name, changed=change(app, name))


@router.post("/v1/targets/{name}/cordon", response_model=TargetAction)
def cordon(name: TargetPath, access: AccessDep, request: Request) -> TargetAction:
    """No new replicas go to the target; those there stay."""
    return _action(request, access, name, "cordon")


@router.post("/v1/targets/{name}/uncordon", response_model=TargetAction)
def uncordon(name: TargetPath, access: AccessDep, request: Request) -> TargetAction:
    return _action(request, access, name, "uncordon")


@router.post("/v1/targets/{name}/drain", response_model=TargetAction)
def drain(name: TargetPath, access: AccessDep, request: Request) -> TargetAction:
    """Cordon, and move the target's replicas elsewhere (returns at once;
    watch the replicas to see them leave)."""
    return _action(request, access, name, "drain")


@router.delete("/v1/targets/{name}", response_model=TargetRemoved)
def remove_target(
    name: TargetPath,
    access: AccessDep,
    request: Request,
    force: Annotated[bool, Query(description="Remove even with replicas on it.")] = False,
) -> TargetRemoved:
    access.check(Verb.DELETE, Resource.TARGETS, None, name)
    left = svc.remove_target(context_of(request).app, name, force=force)
    return TargetRemoved(name=name, replicas=[r.key for r in left])
