"""``portway volume ...``: named volumes as objects, and their snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from portway.cli import output
from portway.cli.output import Format, dump, parse_format, table

volume_app = typer.Typer(
    help="Create, list, inspect and remove named volumes; snapshot, restore, export, import.",
    no_args_is_help=True,
)

NamespaceOpt = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the volume.")]
AllOpt = Annotated[bool, typer.Option("--all-namespaces", "-A", help="Across all namespaces.")]
TargetOpt = Annotated[
    str | None, typer.Option("--target", help="Target to make it on (default: local-docker).")
]
OnTargetOpt = Annotated[
    str | None,
    typer.Option("--target", help="The target's copy (a workload's volume on several targets)."),
]
FormatOpt = Annotated[str | None, typer.Option("--output", "-o", help="wide, json or yaml.")]


def _run(fn: Any) -> None:
    from portway.cli.main import _app, _guard  # main imports this module first

    _guard(lambda: fn(_app()))


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value}B"


def _say(text: str) -> None:
    output.out.print(text, markup=False)


@volume_app.command("create")
def create_command(
    name: Annotated[str, typer.Argument(help="Volume name (lowercase, digits, '-').")],
    namespace: NamespaceOpt = "default",
    target: TargetOpt = None,
    size: Annotated[
        str | None, typer.Option("--size", help="Size limit, e.g. 1Gi (where supported).")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE (repeatable).")
    ] = None,
) -> None:
    """Make a volume workloads mount with `claim: NAME`."""
    from portway.service.volumes import create_volume, parse_labels

    def go(app: Any) -> None:
        made = create_volume(app, namespace, name, target, parse_labels(label or []), size)
        _say(f"volume/{made.name} created on {made.target} (engine volume {made.engine_volume})")

    _run(go)


@volume_app.command("ls")
def ls_command(
    namespace: NamespaceOpt = "default",
    all_namespaces: AllOpt = False,
    output_format: FormatOpt = None,
) -> None:
    """List volumes: objects and the volumes workloads made."""
    from portway.service.volumes import list_volumes

    def go(app: Any) -> None:
        fmt = parse_format(output_format)
        views = list_volumes(app, None if all_namespaces else namespace)
        if fmt in (Format.JSON, Format.YAML):
            dump({"items": [v.to_json() for v in views]}, fmt)
            return
        headers = ["NAME", "TARGET", "SIZE", "IN USE BY"]
        if all_namespaces:
            headers.insert(0, "NAMESPACE")
        if fmt is Format.WIDE:
            headers += ["ENGINE VOLUME", "DRIVER", "ORIGIN", "PROBLEM"]
        rows = []
        for v in views:
            row: list[Any] = [v.name, v.target, _size(v.size), ", ".join(v.in_use_by()) or "-"]
            if all_namespaces:
                row.insert(0, v.namespace)
            if fmt is Format.WIDE:
                origin = f"workload {v.workload}" if v.workload else v.origin
                row += [v.engine_volume, v.driver, origin, v.problem or ""]
            rows.append(row)
        table(headers, rows)

    _run(go)


@volume_app.command("inspect")
def inspect_command(
    name: Annotated[str, typer.Argument(help="Volume name.")],
    namespace: NamespaceOpt = "default",
    target: OnTargetOpt = None,
    output_format: Annotated[
        str | None, typer.Option("--output", "-o", help="json or yaml.")
    ] = None,
) -> None:
    """Everything known about one volume (default YAML)."""
    from portway.service.snapshots import list_snapshots
    from portway.service.volumes import find_volume

    def go(app: Any) -> None:
        fmt = parse_format(output_format or "yaml")
        view = find_volume(app, namespace, name, target=target)
        data = view.to_json()
        data["snapshots"] = [m.name for m in list_snapshots(app, namespace, name)]
        dump(data, Format.JSON if fmt is Format.JSON else Format.YAML)

    _run(go)


@volume_app.command("rm")
def rm_command(
    name: Annotated[str, typer.Argument(help="Volume name.")],
    namespace: NamespaceOpt = "default",
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            "-f",
            help="Also delete its snapshots, and drop the record if the engine copy is gone "
            "(a volume in use is never removed).",
        ),
    ] = False,
    target: OnTargetOpt = None,
) -> None:
    """Remove a volume no container uses."""
    from portway.service.volumes import remove_volume

    def go(app: Any) -> None:
        removed = remove_volume(app, namespace, name, force=force, target=target)
        text = f"volume/{name} removed"
        if not removed.engine_removed:
            text += f" (its engine copy was already gone from {removed.view.target})"
        if removed.snapshots_removed:
            text += f"; snapshots deleted: {', '.join(removed.snapshots_removed)}"
        _say(text)

    _run(go)


@volume_app.command("snapshot")
def snapshot_command(
    volume: Annotated[str, typer.Argument(help="Volume name.")],
    namespace: NamespaceOpt = "default",
    name: Annotated[str | None, typer.Option("--name", help="Snapshot name.")] = None,
    target: OnTargetOpt = None,
) -> None:
    """Copy the volume into a checksummed snapshot (running writers are paused)."""
    from portway.service.snapshots import take_snapshot

    def go(app: Any) -> None:
        stored = take_snapshot(app, namespace, volume, name, target)
        m = stored.manifest
        held = f" ({', '.join(m.quiesced)})" if m.quiesced else ""
        _say(
            f"snapshot/{m.name} of volume/{volume}: {len(m.files)} files, "
            f"{_size(m.total_bytes)}; consistency: {m.consistency.value}{held}"
        )

    _run(go)


@volume_app.command("snapshots")
def snapshots_command(
    volume: Annotated[str | None, typer.Argument(help="Only this volume's.")] = None,
    namespace: NamespaceOpt = "default",
    all_namespaces: AllOpt = False,
    output_format: FormatOpt = None,
) -> None:
    """List snapshots."""
    from portway.service.snapshots import list_snapshots

    def go(app: Any) -> None:
        fmt = parse_format(output_format)
        found = list_snapshots(app, None if all_namespaces else namespace, volume)
        if fmt in (Format.JSON, Format.YAML):
            dump({"items": [m.to_json() for m in found]}, fmt)
            return
        table(
            ["NAME", "VOLUME", "FILES", "SIZE", "CONSISTENCY", "SOURCE", "CREATED"],
            [
                [
                    m.name,
                    m.volume,
                    len(m.files),
                    _size(m.total_bytes),
                    m.consistency.value,
                    f"{m.target} ({m.driver})",
                    m.created_at,
                ]
                for m in found
            ],
        )

    _run(go)


@volume_app.command("restore")
def restore_command(
    volume: Annotated[str, typer.Argument(help="Volume to overwrite.")],
    snapshot: Annotated[str, typer.Option("--from", help="Snapshot to restore.")],
    namespace: NamespaceOpt = "default",
    target: OnTargetOpt = None,
) -> None:
    """Replace the volume's contents with a snapshot, verified by checksum."""
    from portway.service.snapshots import restore_snapshot

    def go(app: Any) -> None:
        restored = restore_snapshot(app, namespace, volume, snapshot, target)
        _say(f"volume/{volume} restored from snapshot/{snapshot}: {restored.describe()}")

    _run(go)


@volume_app.command("export")
def export_command(
    out: Annotated[Path, typer.Option("--output", "-o", help="File to write (a tar).")],
    volume: Annotated[str | None, typer.Argument(help="Volume (a fresh snapshot).")] = None,
    snapshot: Annotated[
        str | None, typer.Option("--snapshot", help="A stored snapshot instead.")
    ] = None,
    namespace: NamespaceOpt = "default",
    target: OnTargetOpt = None,
) -> None:
    """Write a volume (or a snapshot) to one file: manifest.json + volume.tar."""
    from portway.service.snapshots import export_volume

    def go(app: Any) -> None:
        done = export_volume(app, namespace, volume, snapshot, out, target)
        m = done.manifest
        _say(
            f"exported {m.namespace}/{m.volume} ({len(m.files)} files, {_size(m.total_bytes)}; "
            f"consistency: {m.consistency.value}) to {done.path} ({_size(done.size)})"
        )

    _run(go)


@volume_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="An export file.")],
    name: Annotated[str, typer.Option("--name", help="Name of the new volume.")],
    namespace: NamespaceOpt = "default",
    target: TargetOpt = None,
) -> None:
    """Make a new volume from an export file, verified by checksum."""
    from portway.service.snapshots import import_volume

    def go(app: Any) -> None:
        done = import_volume(app, file, namespace, name, target)
        _say(f"volume/{name} imported on {done.volume.target}: {done.describe()}")

    _run(go)
