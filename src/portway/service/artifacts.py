"""Artifact stores of targets that keep their own (the wasm tier): import,
list and remove modules by name. ``portway artifact ...`` comes through here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from portway.controller.records import TargetView
from portway.drivers.base import Artifact, ArtifactImporter
from portway.errors import InputError, NotFoundError, PortwayError
from portway.service.app import WASM_TARGET, App


@dataclass(frozen=True)
class TargetArtifact:
    target: str
    artifact: Artifact


def _importers(app: App) -> list[tuple[TargetView, ArtifactImporter]]:
    found: list[tuple[TargetView, ArtifactImporter]] = []
    for view in app.target_views():
        try:
            driver = app.targets.driver(view)
        except PortwayError:
            continue  # a driver that cannot load keeps no artifacts we can reach
        if isinstance(driver, ArtifactImporter):
            found.append((view, driver))
    return found


def _importer(app: App, target: str | None) -> tuple[TargetView, ArtifactImporter]:
    importers = _importers(app)
    if target is not None:
        view = app.targets.view(target)
        if view is None:
            raise NotFoundError(f"no target named {target}")
        for candidate, driver in importers:
            if candidate.name == target:
                return candidate, driver
        raise InputError(
            f"target {target} ({view.driver}) keeps no artifact store; "
            f"targets that do: {', '.join(v.name for v, _ in importers) or 'none'}"
        )
    if not importers:
        raise InputError(
            "no target keeps an artifact store; add one, e.g. "
            "portway target add local-wasm --address wasm:///var/lib/portway/wasm"
        )
    preferred = [pair for pair in importers if pair[0].name == WASM_TARGET]
    return (preferred or importers)[0]


def import_artifact(app: App, name: str, file: Path, target: str | None) -> TargetArtifact:
    if not file.is_file():
        raise InputError(f"{file}: no such file")
    view, driver = _importer(app, target)
    return TargetArtifact(view.name, driver.import_artifact(name, file))


def list_artifacts(app: App, target: str | None) -> list[TargetArtifact]:
    pairs = [_importer(app, target)] if target is not None else _importers(app)
    return [TargetArtifact(v.name, a) for v, driver in pairs for a in driver.list_artifacts()]


def remove_artifact(app: App, name: str, target: str | None) -> TargetArtifact:
    view, driver = _importer(app, target)
    removed = driver.remove_artifact(name)
    if removed is None:
        raise NotFoundError(f"target {view.name} has no artifact named {name}")
    return TargetArtifact(view.name, removed)
