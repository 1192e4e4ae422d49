"""Targets as a topology: ``portway target add/set/cordon/uncordon/drain/remove``.

A target's spec holds what the user says about it (driver, address, labels,
capacity, taints, cordoned, draining); its status holds what the controller
found (health, fingerprint). This module only writes the spec; moving the
replicas of a draining target elsewhere is the controller's work.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from portway.controller.records import (
    CLUSTER_NAMESPACE,
    KIND_REPLICA,
    KIND_TARGET,
    KIND_WORKLOAD,
    TargetView,
)
from portway.controller.runner import Controller
from portway.drivers.registry import driver_name_from_address, known_drivers
from portway.errors import AlreadyExistsError, ConflictError, InputError, NotFoundError
from portway.scheduler.model import Effect
from portway.service.app import App
from portway.spec.model import parse_bytes, parse_cpu
from portway.store import Record

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_KEY_RE = re.compile(r"^([a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")

#: topology labels ``get replicas -o wide`` shows, the short key first
REGION_KEYS = ("region", "topology.kubernetes.io/region")
ZONE_KEYS = ("zone", "topology.kubernetes.io/zone")

#: attempts at a compare-and-swap write before giving up: the controller
#: rewrites a target's status every few seconds, so one lost race is normal
_WRITE_ATTEMPTS = 5


# --- parsing flags -------------------------------------------------------------


def _check_label(flag: str, key: str, value: str, given: str) -> None:
    if not _LABEL_KEY_RE.match(key) or len(key.rpartition("/")[2]) > 63:
        raise InputError(
            f"{flag} {given!r}: key {key!r} is not a label key; use [prefix/]name with "
            "letters, digits, '-', '_' or '.', e.g. region or topology.kubernetes.io/zone"
        )
    if len(value) > 63 or not _LABEL_VALUE_RE.match(value):
        raise InputError(
            f"{flag} {given!r}: value {value!r} is not a label value; use at most 63 "
            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )


def parse_labels(pairs: Iterable[str]) -> dict[str, str]:
    """``--label region=eu`` (repeatable) -> {"region": "eu"}."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InputError(f"--label {pair!r}: expected KEY=VALUE, e.g. region=eu")
        _check_label("--label", key, value, pair)
        labels[key] = value
    return labels


def parse_label_changes(pairs: Iterable[str]) -> tuple[dict[str, str], set[str]]:
    """``target set --label``: KEY=VALUE sets, ``KEY-`` removes (kubectl label)."""
    removed = {p[:-1] for p in pairs if "=" not in p and p.endswith("-")}
    for key in removed:
        _check_label("--label", key, "", f"{key}-")
    return parse_labels(p for p in pairs if "=" in p or not p.endswith("-")), removed


_CAPACITY_HELP = "expected cpu=CORES and/or memory=SIZE, e.g. cpu=2,memory=4Gi"


def parse_capacity(
    values: Iterable[str], *, removals: bool = False
) -> dict[str, float | int | None]:
    """``--capacity cpu=2,memory=4Gi`` -> {"cpu": 2.0, "memory": 4294967296}.

    With ``removals`` (``target set``), ``cpu-`` maps to None: drop that
    figure and fall back to the fingerprint."""
    capacity: dict[str, float | int | None] = {}
    for value in values:
        for item in (part.strip() for part in value.split(",")):
            key, sep, amount = item.partition("=")
            if removals and not sep and item.endswith("-") and item[:-1] in ("cpu", "memory"):
                capacity[item[:-1]] = None
                continue
            if not sep or key not in ("cpu", "memory") or not amount:
                raise InputError(f"--capacity {item!r}: {_CAPACITY_HELP}")
            try:
                capacity[key] = parse_cpu(amount) if key == "cpu" else parse_bytes(amount)
            except ValueError as exc:
                raise InputError(f"--capacity {item!r}: {exc}") from None
            if capacity[key] == 0:
                raise InputError(f"--capacity {item!r}: memory must be more than 0")
    return capacity


_EFFECTS = ", ".join(e.value for e in Effect)


def _split_taint(text: str) -> tuple[str, str, str | None]:
    """``key[=value][:Effect]`` -> (key, value, effect or None)."""
    head, colon, effect = text.rpartition(":")
    if not colon:
        head, effect = text, ""
    key, _, value = head.partition("=")
    if effect and effect not in {e.value for e in Effect}:
        hint = " (portway never evicts for a taint: use `target drain`)"
        raise InputError(
            f"--taint {text!r}: effect {effect!r} is not one of {_EFFECTS}"
            + (hint if effect == "NoExecute" else "")
        )
    _check_label("--taint", key, value, text)
    return key, value, effect or None


def parse_taints(values: Iterable[str]) -> list[dict[str, str]]:
    """``--taint dedicated=gpu:NoSchedule`` (repeatable) -> [{"key", "value", "effect"}]."""
    taints: dict[tuple[str, str], dict[str, str]] = {}
    for text in values:
        key, value, effect = _split_taint(text)
        if effect is None:
            raise InputError(
                f"--taint {text!r}: expected KEY[=VALUE]:EFFECT with EFFECT one of {_EFFECTS}, "
                "e.g. dedicated=gpu:NoSchedule"
            )
        taints[(key, effect)] = {"key": key, "value": value, "effect": effect}  # last one wins
    return list(taints.values())


def apply_taint_changes(
    current: Iterable[Mapping[str, str]], values: Iterable[str]
) -> list[dict[str, str]]:
    """``target set --taint``: ``KEY[=VALUE]:EFFECT`` adds or replaces the
    taint with that key and effect; ``KEY-`` removes every taint with the key,
    ``KEY:EFFECT-`` only that one (kubectl taint)."""
    taints = [dict(t) for t in current]
    for text in values:
        if text.endswith("-"):
            key, _, effect = _split_taint(text[:-1])
            kept = [t for t in taints if not (t["key"] == key and effect in (None, t["effect"]))]
            if len(kept) == len(taints):
                raise InputError(f"--taint {text!r}: the target has no taint {text[:-1]!r}")
            taints = kept
            continue
        [taint] = parse_taints([text])
        same = [
            i
            for i, t in enumerate(taints)
            if (t["key"], t["effect"]) == (taint["key"], taint["effect"])
        ]
        if same:
            taints[same[0]] = taint
        else:
            taints.append(taint)
    return taints


# --- add / set ---------------------------------------------------------------


def default_address(app: App, driver: str) -> str | None:
    """Where a driver's engine listens on this machine by default (None: no
    obvious default, so ``target add`` needs ``--address``)."""
    defaults = {
        "docker": f"docker://{app.settings.docker_socket}",
        "podman": "podman:///run/podman/podman.sock",
        "containerd": "containerd:///run/containerd/containerd.sock",
        "wasm": f"wasm://{(app.settings.home / 'wasm').resolve()}",
    }
    return defaults.get(driver)


def _resolve_driver(app: App, address: str | None, driver: str | None) -> tuple[str, str]:
    known = known_drivers()
    if driver is not None and driver not in known:
        raise InputError(f"--driver {driver}: no such driver; known drivers are {', '.join(known)}")
    if address is None:
        if driver is None:
            raise InputError("give --driver (e.g. --driver docker) or --address URL")
        address = default_address(app, driver)
        if address is None:
            raise InputError(f"--driver {driver} has no default address; give --address URL")
    scheme = driver_name_from_address(address)
    if scheme not in known:
        raise InputError(
            f"--address {address}: no driver named {scheme!r} (the address scheme); "
            f"known drivers are {', '.join(known)}"
        )
    if driver is not None and driver != scheme:
        raise InputError(f"--address {address} is for driver {scheme!r}, not --driver {driver}")
    return scheme, address


def add_target(
    app: App,
    name: str,
    address: str | None,
    driver: str | None,
    labels: dict[str, str],
    *,
    capacity: Mapping[str, float | int | None] | None = None,
    taints: list[dict[str, str]] | None = None,
) -> TargetView:
    """Register a target and check its health now (recorded on the target).
    ``driver`` defaults to the address's scheme, ``address`` to the driver's
    local default; several targets may share a driver and an address."""
    if len(name) > 63 or not _NAME_RE.match(name):
        raise InputError(
            f"target name {name!r}: use at most 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    driver, address = _resolve_driver(app, address, driver)
    spec: dict[str, Any] = {"driver": driver, "address": address, "labels": labels}
    given = {k: v for k, v in (capacity or {}).items() if v is not None}
    if given:
        spec["capacity"] = given
    if taints:
        spec["taints"] = taints
    try:
        app.store.create(KIND_TARGET, CLUSTER_NAMESPACE, name, spec)
    except AlreadyExistsError:
        raise InputError(
            f"target {name} already exists; change it with `portway target set {name}` "
            "or remove it first"
        ) from None
    view = app.targets.view(name)
    assert view is not None
    app.targets.check(view)  # records health (or why not) on the target
    fresh = app.targets.view(name)
    assert fresh is not None
    return fresh


def _require(app: App, name: str) -> Record:
    record = app.store.get(KIND_TARGET, CLUSTER_NAMESPACE, name)
    if record is None:
        known = ", ".join(v.name for v in app.target_views()) or "none"
        raise NotFoundError(f"target {name} not found; known targets: {known}")
    return record


def _change_spec(app: App, name: str, change: Callable[[dict[str, Any]], None]) -> bool:
    """Apply ``change`` to the target's spec, retried on a lost race with the
    controller's status writes. Returns whether the spec changed."""
    for _ in range(_WRITE_ATTEMPTS):
        record = _require(app, name)
        spec = copy.deepcopy(dict(record.spec))
        change(spec)
        if spec == record.spec:
            return False
        try:
            app.store.update_spec(record, spec)
        except ConflictError:
            continue
        return True
    raise ConflictError(f"target {name} keeps changing under us; try again")


def set_target(
    app: App,
    name: str,
    *,
    labels: Iterable[str] = (),
    capacity: Iterable[str] = (),
    taints: Iterable[str] = (),
) -> TargetView:
    """``target set``: change labels, capacity and taints of a target."""
    set_labels, drop_labels = parse_label_changes(list(labels))
    capacity_changes = parse_capacity(capacity, removals=True)
    taint_changes = list(taints)
    if taint_changes:
        apply_taint_changes([], [t for t in taint_changes if not t.endswith("-")])  # validate

    def change(spec: dict[str, Any]) -> None:
        current = dict(spec.get("labels", {}))
        current.update(set_labels)
        for key in drop_labels:
            current.pop(key, None)
        spec["labels"] = current
        given = dict(spec.get("capacity", {}))
        for key, value in capacity_changes.items():
            if value is None:
                given.pop(key, None)
            else:
                given[key] = value
        if given:
            spec["capacity"] = given
        else:
            spec.pop("capacity", None)
        if taint_changes:
            spec["taints"] = apply_taint_changes(spec.get("taints", []), taint_changes)
            if not spec["taints"]:
                del spec["taints"]

    _change_spec(app, name, change)
    view = app.targets.view(name)
    assert view is not None
    return view


# --- cordon / drain -----------------------------------------------------------


def cordon(app: App, name: str) -> bool:
    """New replicas are not placed on the target; those there stay. Returns
    False if it was already cordoned."""
    changed = _change_spec(app, name, lambda spec: spec.update(cordoned=True))
    if changed:
        _event(app, name, "TargetCordoned", f"target {name} cordoned: no new replicas go there")
    return changed


def uncordon(app: App, name: str) -> bool:
    """Undo ``cordon`` and ``drain``. Returns False if there was nothing to undo."""
    changed = _change_spec(app, name, lambda spec: spec.update(cordoned=False, draining=False))
    if changed:
        _event(app, name, "TargetUncordoned", f"target {name} uncordoned: placement may use it")
    return changed


def start_drain(app: App, name: str) -> bool:
    """Mark the target draining (and cordoned, so it stays cordoned once the
    drain is over, as kubectl leaves a drained node). Returns False if it
    was draining already."""
    changed = _change_spec(app, name, lambda spec: spec.update(cordoned=True, draining=True))
    if changed:
        _event(app, name, "TargetDraining", f"target {name} draining: its replicas move elsewhere")
    return changed


@dataclass(frozen=True)
class ReplicaOnTarget:
    """A Replica record as seen from the target it is recorded on."""

    namespace: str
    workload: str
    index: int
    state: str = ""
    message: str = ""

    @property
    def name(self) -> str:
        return f"{self.workload}-{self.index}"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def replicas_on(app: App, name: str) -> list[ReplicaOnTarget]:
    """Replica records whose target is ``name``."""
    return sorted(
        (
            ReplicaOnTarget(
                r.namespace,
                str(r.status.get("workload", "")),
                int(r.status.get("index", 0)),
                str(r.status.get("state", "")),
                str(r.status.get("message", "")),
            )
            for r in app.store.list(KIND_REPLICA)
            if r.status.get("target") == name
        ),
        key=lambda p: (p.namespace, p.workload, p.index),
    )


def where_replica_is(app: App, replica: ReplicaOnTarget) -> str | None:
    """The target a replica is recorded on now (None: its record is gone)."""
    record = app.store.get(KIND_REPLICA, replica.namespace, replica.name)
    return None if record is None else str(record.status.get("target", ""))


def why_not_moved(app: App, replica: ReplicaOnTarget) -> str:
    """What the replica's and its workload's status say, e.g. the scheduler's
    "0/2 targets available: 1 cordoned, 1 insufficient memory"."""
    parts = [replica.state or "unknown state"]
    if replica.message:
        parts.append(replica.message)
    workload = app.store.get(KIND_WORKLOAD, replica.namespace, replica.workload)
    message = str(workload.status.get("message", "")) if workload is not None else ""
    if message:
        parts.append(f"workload {replica.namespace}/{replica.workload}: {message}")
    return "; ".join(parts)


def wait_drained(
    app: App,
    name: str,
    timeout: float,
    *,
    on_moved: Callable[[ReplicaOnTarget, str | None], None] = lambda r, t: None,
    poll: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[ReplicaOnTarget]:
    """Poll the Replica records until none is on target ``name`` or
    ``timeout`` seconds pass. ``on_moved(replica, new_target)`` is told of
    each replica that left (new_target None: its record went away). Returns
    the replicas still on the target (empty: drained)."""
    deadline = clock() + timeout
    remaining = replicas_on(app, name)
    while remaining:
        now_on = {r.key: r for r in replicas_on(app, name)}
        for replica in remaining:
            if replica.key not in now_on:
                on_moved(replica, where_replica_is(app, replica))
        remaining = list(now_on.values())
        if not remaining or clock() >= deadline:
            break
        sleep(min(poll, max(deadline - clock(), 0.0)))
    return remaining


def running_controller(app: App) -> str | None:
    """Who holds the controller lease (None: no controller is running, so a
    draining target's replicas stay where they are)."""
    probe = Controller(app.store, targets=app.targets)
    try:
        return probe.running_controller()
    finally:
        probe.reconciler.close()


# --- remove ---------------------------------------------------------------------


def remove_target(app: App, name: str, *, force: bool = False) -> list[ReplicaOnTarget]:
    """Delete a target's record. Refused while replicas are recorded on it,
    unless ``force``: then the controller reschedules them. Returns those
    replicas."""
    _require(app, name)
    using = replicas_on(app, name)
    if using and not force:
        shown = ", ".join(r.key for r in using[:5]) + (", ..." if len(using) > 5 else "")
        raise InputError(
            f"target {name} still has {len(using)} replica(s) ({shown}); "
            f"drain it first: portway target drain {name} (or --force)"
        )
    for _ in range(_WRITE_ATTEMPTS):
        record = _require(app, name)
        try:
            app.store.delete(record)
        except ConflictError:
            continue  # a health check wrote its status meanwhile
        break
    else:
        raise ConflictError(f"target {name} keeps changing under us; try again")
    if using:
        _event(
            app,
            name,
            "TargetRemoved",
            f"target {name} removed with {len(using)} replica(s) recorded on it",
            warning=True,
        )
    return using


# --- what ``get targets`` and ``get replicas`` show -------------------------------


def schedule_status(view: TargetView) -> str:
    """kubectl's node STATUS: ``Ready``, ``Ready,SchedulingDisabled`` (cordoned),
    ``Draining``; ``NotReady`` for a target that is not healthy."""
    if view.draining:
        return "Draining" if view.healthy else "NotReady,Draining"
    ready = "Ready" if view.healthy else "NotReady"
    return f"{ready},SchedulingDisabled" if view.cordoned else ready


@dataclass(frozen=True)
class CapacityFigure:
    value: float | int  # cores, or bytes
    source: str  # "given" (target add/set --capacity) or "fingerprint"


def capacity_of(view: TargetView) -> dict[str, CapacityFigure]:
    """The target's cpu (cores) and memory (bytes): each as given with
    ``--capacity``, else as fingerprinted; absent when neither says."""
    figures: dict[str, CapacityFigure] = {}
    for key, attribute in (("cpu", "cpus"), ("memory", "memory")):
        source = "given" if key in view.capacity else "fingerprint"
        try:
            found = float(view.capacity.get(key) or view.attributes.get(attribute, "") or 0)
        except ValueError:
            found = 0.0
        if found > 0:
            figures[key] = CapacityFigure(int(found) if key == "memory" else found, source)
    return figures


def _first(labels: Mapping[str, str], keys: tuple[str, ...]) -> str:
    return next((labels[k] for k in keys if labels.get(k)), "")


def topology_of(view: TargetView | None) -> tuple[str, str]:
    """(region, zone) from the target's labels ("" when unlabelled)."""
    if view is None:
        return "", ""
    return _first(view.labels, REGION_KEYS), _first(view.labels, ZONE_KEYS)


def _event(app: App, name: str, reason: str, message: str, *, warning: bool = False) -> None:
    app.store.record_event(
        KIND_TARGET, CLUSTER_NAMESPACE, name, reason, message, warning=warning, target=name
    )
