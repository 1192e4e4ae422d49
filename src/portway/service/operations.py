"""Operations on running replicas: exec (logs: service.logview)."""

from __future__ import annotations

from portway.controller.records import ReplicaView
from portway.drivers.base import ExecResult, Executor, Handle
from portway.errors import InputError, NotFoundError, PortwayError
from portway.service.app import App
from portway.service.workloads import replicas_of, resolve_workload


def _handle(app: App, view: ReplicaView) -> tuple[Handle, object]:
    target = app.targets.view(view.target)
    if target is None:
        raise NotFoundError(f"target {view.target} of replica {view.index} no longer exists")
    driver = app.targets.driver(target)
    return Handle(driver.name, target.name, view.container_id, view.container_name), driver


def _replicas(app: App, namespace: str, name: str, index: int | None) -> list[ReplicaView]:
    resolve_workload(app, namespace, name)
    views = [v for v in replicas_of(app, namespace, name) if v.container_id]
    if index is not None:
        views = [v for v in views if v.index == index]
        if not views:
            raise NotFoundError(f"workload {namespace}/{name} has no replica {index} running")
    if not views:
        raise NotFoundError(f"workload {namespace}/{name} has no replicas yet")
    return views


def exec_in(
    app: App, namespace: str, name: str, index: int, command: list[str], timeout: float
) -> ExecResult:
    if not command:
        raise InputError("no command given")
    view = _replicas(app, namespace, name, index)[0]
    handle, driver = _handle(app, view)
    if not isinstance(driver, Executor):
        raise PortwayError(f"target {view.target} ({handle.driver}) cannot exec")
    return driver.exec(handle, command, timeout=timeout)
