"""Workloads: list, get, apply (validate, plan, write; optionally wait), delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from portway.access.rbac import Resource, Verb
from portway.api.context import ApiContext, context_of
from portway.api.models import (
    AppliedNamespace,
    AppliedWorkload,
    ApplyRequest,
    ApplyResponse,
    DeleteResponse,
    WorkloadList,
    WorkloadOut,
)
from portway.api.names import NamePath, NamespacePath, NamespaceQuery
from portway.api.security import AccessDep, note_of
from portway.controller.records import KIND_WORKLOAD, excluded_targets_of
from portway.service import documents
from portway.service import workloads as svc
from portway.store import Record

router = APIRouter(tags=["workloads"])

JSON = "application/json"

WaitQuery = Annotated[
    bool, Query(description="Wait until the workloads are ready (apply) or gone (delete).")
]
TimeoutQuery = Annotated[
    float | None,
    Query(gt=0, le=3600, description="Seconds to wait with wait=true (server caps it)."),
]


def workload_out(record: Record) -> WorkloadOut:
    document = record.spec.get("workload", {})
    return WorkloadOut(
        namespace=record.namespace,
        name=record.name,
        labels=dict(document.get("metadata", {}).get("labels", {})),
        version=record.version,
        generation=record.generation,
        template_generation=int(record.spec.get("templateGeneration", 1)),
        created_at=record.created_at,
        updated_at=record.updated_at,
        spec=dict(document.get("spec", {})),
        status=dict(record.status),
        deleting=record.deleting,
        degradations=list(record.spec.get("degradations") or []),
    )


def workload_bytes(record: Record) -> bytes:
    """The JSON body of ``GET one workload`` (the route and the fast path)."""
    return workload_out(record).model_dump_json(by_alias=True).encode()


@router.get("/v1/workloads", response_model=WorkloadList)
def list_all_workloads(
    access: AccessDep, request: Request, namespace: NamespaceQuery = None
) -> WorkloadList:
    """Workloads in every namespace the caller may list (or only ``namespace``)."""
    readable = access.readable_in(Resource.WORKLOADS, namespace)
    records = svc.list_workloads(context_of(request).app, namespace)
    return WorkloadList(
        items=[workload_out(r) for r in records if readable is None or r.namespace in readable]
    )


@router.get("/v1/namespaces/{namespace}/workloads", response_model=WorkloadList)
def list_workloads(namespace: NamespacePath, access: AccessDep, request: Request) -> WorkloadList:
    access.check(Verb.LIST, Resource.WORKLOADS, namespace)
    records = svc.list_workloads(context_of(request).app, namespace)
    return WorkloadList(items=[workload_out(r) for r in records])


@router.get("/v1/namespaces/{namespace}/workloads/{name}", response_model=WorkloadOut)
async def get_workload(
    namespace: NamespacePath, name: NamePath, access: AccessDep, request: Request
) -> Response:
    """One workload: a permission check (no I/O) and one store read.

    Normally answered by ``api.fastpath`` before FastAPI sees the request,
    with the same semantics; this route documents it and is the fallback.
    The hot path of the API (benchmark P7), chosen deliberately: ``async``
    with the read on the event loop for a local SQLite store (no thread hop;
    see ``ApiContext.inline_reads``), in a worker thread for a server
    database; the body is serialised here, once, so FastAPI does not
    validate it again."""
    access.check(Verb.GET, Resource.WORKLOADS, namespace, name)
    ctx = context_of(request)
    if ctx.inline_reads:
        record = svc.get_workload(ctx.app, namespace, name)
    else:
        record = await run_in_threadpool(svc.get_workload, ctx.app, namespace, name)
    return Response(workload_bytes(record), media_type=JSON)


def _wait_seconds(ctx: ApiContext, timeout: float | None) -> float:
    return min(timeout or ctx.config.default_wait_seconds, ctx.config.max_wait_seconds)


@router.post("/v1/apply", response_model=ApplyResponse)
def apply(
    body: ApplyRequest,
    access: AccessDep,
    request: Request,
    wait: WaitQuery = False,
    timeout: TimeoutQuery = None,
) -> ApplyResponse:
    """Server-side ``portway apply``: every document validated, every
    permission checked, policy and plan judged, then all written or nothing."""
    ctx = context_of(request)
    workloads, namespaces = documents.from_documents(body.documents, body.file)
    # every permission before anything is judged or written
    for policy in namespaces:
        name = policy.namespace.name
        access.check(Verb.UPDATE, Resource.NAMESPACES, name, name)
    for item in workloads:
        meta = item.workload.metadata
        exists = ctx.app.store.get(KIND_WORKLOAD, meta.namespace, meta.name) is not None
        verb = Verb.UPDATE if exists else Verb.CREATE
        access.check(verb, Resource.WORKLOADS, meta.namespace, meta.name)
    note = note_of(request)
    note.verb = "apply (dry run)" if body.dry_run else "apply"
    note.resource = Resource.WORKLOADS.value
    note.namespace = ",".join(sorted({w.workload.metadata.namespace for w in workloads}))
    note.name = ",".join(w.workload.metadata.name for w in workloads)[:253]
    written, applied = svc.apply_all(ctx.app, workloads, namespaces, dry_run=body.dry_run)
    response = ApplyResponse(
        namespaces=[
            AppliedNamespace(name=n.namespace.name, outcome=n.outcome, violators=n.violators)
            for n in written
        ],
        workloads=[
            AppliedWorkload(
                namespace=a.workload.metadata.namespace,
                name=a.workload.metadata.name,
                outcome=a.outcome.value,
                generation=a.generation,
            )
            for a in applied
        ],
        dry_run=body.dry_run,
    )
    if body.dry_run:
        return response
    ctx.wake(a.workload.key for a in applied)
    for a in applied:
        record = ctx.app.store.get(KIND_WORKLOAD, *a.workload.key.split("/", 1))
        excluded = excluded_targets_of(record) if record is not None else {}
        if excluded:
            response.excluded_targets[a.workload.key] = excluded
    if wait:
        keys = [
            (a.workload.metadata.namespace, a.workload.metadata.name, a.generation) for a in applied
        ]
        results = svc.wait_for(ctx.app, keys, timeout=_wait_seconds(ctx, timeout), poll=0.1)
        response.wait = {key: result.value for key, result in results.items()}
    return response


@router.delete("/v1/namespaces/{namespace}/workloads/{name}", response_model=DeleteResponse)
def delete_workload(
    namespace: NamespacePath,
    name: NamePath,
    access: AccessDep,
    request: Request,
    wait: WaitQuery = False,
    timeout: TimeoutQuery = None,
    dry_run: Annotated[
        bool,
        Query(
            alias="dryRun",
            description="Check only (kubectl's --dry-run=server): the workload exists, the "
            "caller may delete it and nothing refuses it; nothing changes (deleting is false).",
        ),
    ] = False,
) -> DeleteResponse:
    """Mark the workload deleting; the controller removes its replicas."""
    ctx = context_of(request)
    access.check(Verb.DELETE, Resource.WORKLOADS, namespace, name)
    if dry_run:
        note_of(request).verb = "delete (dry run)"  # the audit log must not read as a delete
    record = svc.delete(ctx.app, namespace, name, dry_run=dry_run)
    if dry_run:
        return DeleteResponse(namespace=namespace, name=name, deleting=False)
    ctx.wake([record.key])
    response = DeleteResponse(namespace=namespace, name=name, deleting=True)
    if wait:
        results = svc.wait_for(
            ctx.app,
            [(namespace, name, 0)],
            timeout=_wait_seconds(ctx, timeout),
            deleting=True,
            poll=0.1,
        )
        response.wait = results[record.key].value
    return response
