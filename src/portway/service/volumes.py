"""Volumes as objects: ``portway volume create|ls|inspect|rm``.

A Volume object lives on one target as one engine volume (Docker and Podman
volumes; a portway directory on containerd). Objects made by ``volume
create|import`` have a record in the store (kind ``Volume``); the volumes a
workload's replicas make on first use are found on the engines by their
labels, so both kinds are listed, inspected and removed alike.
Snapshots (``portway volume snapshot|restore|export|import``) are in
``service.snapshots``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from portway.capabilities.vocabulary import Feature
from portway.controller.records import TargetView, cluster_id
from portway.drivers.base import LABEL_CLUSTER, LABEL_NAMESPACE, LABEL_REPLICA, LABEL_WORKLOAD
from portway.drivers.volumes import (
    LABEL_VOLUME_OBJECT,
    VolumeInfo,
    VolumeManager,
    VolumeUser,
    object_volume_labels,
)
from portway.errors import (
    AlreadyExistsError,
    ConflictError,
    InputError,
    NotFoundError,
    PortwayError,
)
from portway.service.app import DEFAULT_TARGET, App
from portway.spec.model import NAME_RE, parse_bytes
from portway.spec.volumes import engine_volume_name

KIND_VOLUME = "Volume"
ORIGIN_OBJECT = "object"  # portway volume create
ORIGIN_IMPORT = "import"  # portway volume import
ORIGIN_WORKLOAD = "workload"  # made by a replica's create


@dataclass(frozen=True)
class VolumeView:
    """One Volume object as ``volume ls|inspect`` show it."""

    namespace: str
    name: str
    target: str
    driver: str
    engine_volume: str
    origin: str
    workload: str = ""  # for a workload's own volume
    info: VolumeInfo | None = None  # None: the engine copy is gone or unreachable
    users: tuple[VolumeUser, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    problem: str = ""  # why the engine was not asked or did not answer

    @property
    def size(self) -> int | None:
        return self.info.size if self.info else None

    @property
    def created_at(self) -> datetime | None:
        return self.info.created_at if self.info else None

    def in_use_by(self) -> list[str]:
        """Who mounts it: ``workload/index`` for replicas, else the container's name."""
        shown = []
        for user in self.users:
            workload = user.labels.get(LABEL_WORKLOAD)
            index = user.labels.get(LABEL_REPLICA)
            if workload and index is not None:
                shown.append(f"{workload}/{index} ({user.handle.name})")
            else:
                shown.append(user.handle.name)
        return shown

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "target": self.target,
            "driver": self.driver,
            "engineVolume": self.engine_volume,
            "origin": self.origin,
            "workload": self.workload or None,
            "exists": self.info is not None,
            "location": self.info.location if self.info else None,
            "size": self.size,
            "createdAt": self.created_at.isoformat() if self.created_at else None,
            "inUseBy": self.in_use_by(),
            "labels": self.labels,
            "problem": self.problem or None,
        }


# --- targets ------------------------------------------------------------------


def volume_targets(app: App) -> list[tuple[TargetView, VolumeManager]]:
    """Every target whose driver manages volumes as objects."""
    found: list[tuple[TargetView, VolumeManager]] = []
    for view in app.target_views():
        try:
            driver = app.targets.driver(view)
        except PortwayError:
            continue
        if isinstance(driver, VolumeManager):
            found.append((view, driver))
    return found


def volume_target(app: App, target: str | None) -> tuple[TargetView, VolumeManager]:
    pairs = volume_targets(app)
    wanted = target or DEFAULT_TARGET
    for view, driver in pairs:
        if view.name == wanted:
            return view, driver
    offered = ", ".join(v.name for v, _ in pairs) or "none"
    if target is None:
        raise InputError(f"no target {DEFAULT_TARGET}; choose one with --target ({offered})")
    if app.targets.view(target) is None:
        raise NotFoundError(f"no target named {target} (targets with volumes: {offered})")
    raise InputError(f"target {target} does not manage named volumes (targets that do: {offered})")


# --- create -------------------------------------------------------------------


def check_volume_name(name: str, flag: str = "NAME") -> str:
    if len(name) > 63 or not NAME_RE.match(name):
        raise InputError(
            f"{flag} {name!r} is invalid: use at most 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def parse_labels(items: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--label {item!r}: expected KEY=VALUE")
        if key.startswith("portway.dev/"):
            raise InputError(f"--label {item!r}: the portway.dev/ prefix is portway's own")
        labels[key] = value
    return labels


def create_volume(
    app: App,
    namespace: str,
    name: str,
    target: str | None,
    labels: dict[str, str],
    size: str | None = None,
    *,
    origin: str = ORIGIN_OBJECT,
    extra_spec: dict[str, Any] | None = None,
) -> VolumeView:
    check_volume_name(name)
    view, driver = volume_target(app, target)
    if size is not None:
        try:
            parse_bytes(size)
        except ValueError as exc:
            raise InputError(f"--size {size!r}: {exc}") from None
        if not app.targets.driver(view).capabilities().supports(Feature.VOLUMES_SIZE_LIMIT):
            raise InputError(
                f"--size: target {view.name} ({view.driver}) cannot limit a named volume's "
                "size (volumes.size_limit; see docs/volumes.md); leave --size out"
            )
    if app.store.get(KIND_VOLUME, namespace, name) is not None or _discovered(app, namespace, name):
        raise AlreadyExistsError(f"volume {namespace}/{name} already exists")
    engine_name = engine_volume_name(namespace, name)
    if driver.get_volume(engine_name) is not None:
        raise AlreadyExistsError(
            f"target {view.name} already has an engine volume {engine_name} that is not a "
            f"portway object; remove it on the engine or choose another NAME"
        )
    cluster = cluster_id(app.store)
    info = driver.create_volume(
        engine_name, object_volume_labels(cluster, namespace, name, view.name, labels)
    )
    spec = {
        "target": view.name,
        "engineVolume": engine_name,
        "labels": labels,
        "origin": origin,
        **(extra_spec or {}),
    }
    try:
        app.store.create(KIND_VOLUME, namespace, name, spec)
    except AlreadyExistsError:
        with contextlib.suppress(PortwayError):  # a concurrent create won: undo ours
            driver.remove_volume(engine_name)
        raise
    return VolumeView(namespace, name, view.name, view.driver, engine_name, origin, info=info)


# --- finding ------------------------------------------------------------------


def _discovered(app: App, namespace: str | None, name: str | None) -> list[VolumeView]:
    """Volume objects found on the engines by their labels (workload volumes
    have no store record)."""
    selector = {LABEL_CLUSTER: cluster_id(app.store)}
    if namespace is not None:
        selector[LABEL_NAMESPACE] = namespace
    if name is not None:
        selector[LABEL_VOLUME_OBJECT] = name
    found = []
    for view, driver in volume_targets(app):
        try:
            infos = driver.list_volumes(selector)
        except PortwayError:
            continue  # an unreachable target: its volumes are listed when it returns
        for info in infos:
            obj = info.labels.get(LABEL_VOLUME_OBJECT)
            ns = info.labels.get(LABEL_NAMESPACE)
            if not obj or not ns:
                continue
            workload = info.labels.get(LABEL_WORKLOAD, "")
            found.append(
                VolumeView(
                    ns,
                    obj,
                    view.name,
                    view.driver,
                    info.name,
                    ORIGIN_WORKLOAD if workload else ORIGIN_OBJECT,
                    workload=workload,
                    info=info,
                )
            )
    return found


def _detail(app: App, base: VolumeView, *, size: bool = True) -> VolumeView:
    """``base`` with the engine's current word: size and users."""
    view = app.targets.view(base.target)
    if view is None:
        return _with(base, problem=f"target {base.target} was removed")
    try:
        driver = app.targets.driver(view)
        if not isinstance(driver, VolumeManager):
            return _with(base, problem=f"target {base.target} does not manage volumes")
        info = driver.get_volume(base.engine_volume, size=size)
        users = tuple(driver.volume_users(base.engine_volume)) if info else ()
    except PortwayError as exc:
        return _with(base, problem=str(exc))
    problem = "" if info else f"engine volume {base.engine_volume} is gone from {base.target}"
    return _with(base, info=info, users=users, problem=problem)


def _with(base: VolumeView, **changes: Any) -> VolumeView:
    return dataclasses.replace(base, **changes)


def _from_record(app: App, namespace: str, name: str) -> VolumeView | None:
    record = app.store.get(KIND_VOLUME, namespace, name)
    if record is None:
        return None
    spec = record.spec
    view = app.targets.view(str(spec["target"]))
    return VolumeView(
        namespace,
        name,
        str(spec["target"]),
        view.driver if view else "",
        str(spec["engineVolume"]),
        str(spec.get("origin", ORIGIN_OBJECT)),
        labels={str(k): str(v) for k, v in dict(spec.get("labels") or {}).items()},
    )


def find_volume(
    app: App, namespace: str, name: str, *, size: bool = True, target: str | None = None
) -> VolumeView:
    """The volume ``namespace/name`` (on ``target``, when given). A workload's
    shared volume exists once per target its replicas ran on (a volume does
    not span targets); then ``target`` says which copy."""
    base = _from_record(app, namespace, name)
    if base is not None and target is not None and base.target != target:
        base = None
    if base is None:
        found = [
            v for v in _discovered(app, namespace, name) if target is None or v.target == target
        ]
        where = f" on target {target}" if target else ""
        if not found:
            raise NotFoundError(f"volume {namespace}/{name} not found{where}")
        if len(found) > 1:
            targets = ", ".join(v.target for v in found)
            raise InputError(
                f"volume {namespace}/{name} exists on several targets ({targets}); "
                "choose one with --target"
            )
        base = found[0]
    return _detail(app, base, size=size)


def list_volumes(app: App, namespace: str | None) -> list[VolumeView]:
    views: dict[tuple[str, str, str], VolumeView] = {}
    for record in app.store.list(KIND_VOLUME, namespace):
        base = _from_record(app, record.namespace, record.name)
        assert base is not None
        views[(base.namespace, base.name, base.target)] = base
    for found in _discovered(app, namespace, None):
        views.setdefault((found.namespace, found.name, found.target), found)
    return [_detail(app, v) for _, v in sorted(views.items())]


# --- remove -------------------------------------------------------------------


@dataclass(frozen=True)
class Removed:
    view: VolumeView
    engine_removed: bool
    snapshots_removed: tuple[str, ...] = ()


def remove_volume(
    app: App, namespace: str, name: str, *, force: bool = False, target: str | None = None
) -> Removed:
    """Remove the volume. Like ``docker volume rm -f``, ``force`` never removes
    a volume in use: it also deletes the volume's snapshots and drops the
    record when the engine copy is already gone."""
    from portway.service.snapshots import delete_snapshots_of

    view = find_volume(app, namespace, name, size=False, target=target)
    if view.users:
        raise ConflictError(
            f"volume {namespace}/{name} is in use by {', '.join(view.in_use_by())} on "
            f"{view.target}; delete or scale down the workload first (--force does not "
            "override this)"
        )
    engine_removed = False
    if view.info is not None:
        where = app.targets.view(view.target)
        assert where is not None  # _detail found the volume through it
        driver = app.targets.driver(where)
        assert isinstance(driver, VolumeManager)
        driver.remove_volume(view.engine_volume)
        engine_removed = True
    elif not force:
        raise ConflictError(
            f"volume {namespace}/{name}: {view.problem}; --force removes the record anyway"
        )
    record = app.store.get(KIND_VOLUME, namespace, name)
    if record is not None and record.spec.get("target") == view.target:
        app.store.delete(record)
    snapshots = delete_snapshots_of(app, namespace, name) if force else ()
    return Removed(view, engine_removed, snapshots)
