"""Target registration: ``portway target add/remove``."""

from __future__ import annotations

import re

from portway.controller.records import CLUSTER_NAMESPACE, KIND_REPLICA, KIND_TARGET, TargetView
from portway.drivers.registry import driver_name_from_address, known_drivers
from portway.errors import AlreadyExistsError, InputError
from portway.service.app import App

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_KEY_RE = re.compile(r"^([a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def parse_labels(pairs: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _LABEL_KEY_RE.match(key):
            raise InputError(f"--label {pair!r}: expected KEY=VALUE, e.g. region=eu")
        labels[key] = value
    return labels


def add_target(
    app: App, name: str, address: str, driver: str | None, labels: dict[str, str]
) -> TargetView:
    if len(name) > 63 or not _NAME_RE.match(name):
        raise InputError(f"target name {name!r}: use lowercase letters, digits and '-'")
    scheme = driver_name_from_address(address)
    driver = driver or scheme
    if driver not in known_drivers():
        raise InputError(f"--driver {driver}: known drivers are {', '.join(known_drivers())}")
    if driver != scheme:
        raise InputError(f"address {address!r} is for driver {scheme!r}, not {driver!r}")
    spec = {"driver": driver, "address": address, "labels": labels}
    try:
        app.store.create(KIND_TARGET, CLUSTER_NAMESPACE, name, spec)
    except AlreadyExistsError:
        raise InputError(f"target {name} already exists; remove it first") from None
    view = app.targets.view(name)
    assert view is not None
    app.targets.check(view)  # records health (or why not) on the target
    fresh = app.targets.view(name)
    assert fresh is not None
    return fresh


def remove_target(app: App, name: str) -> None:
    record = app.store.require(KIND_TARGET, CLUSTER_NAMESPACE, name)
    using = sorted(
        f"{r.namespace}/{r.status.get('workload')}-{r.status.get('index')}"
        for r in app.store.list(KIND_REPLICA)
        if r.status.get("target") == name
    )
    if using:
        raise InputError(
            f"target {name} still runs replicas ({', '.join(using[:5])}"
            + (", ..." if len(using) > 5 else "")
            + "); delete or move those workloads first"
        )
    app.store.delete(record)
