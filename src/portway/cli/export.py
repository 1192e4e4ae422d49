"""``portway export -f FILE --to kubernetes``: the file's workloads as
Kubernetes manifests on stdout (or ``-o FILE``), checked against the official
Kubernetes schemas, with a note on stderr for each field that does not map
one to one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from portway.cli import compose as compose_cli
from portway.cli import output

__all__ = ["register"]


def export(
    file: Annotated[
        Path,
        typer.Option("--filename", "-f", help="Workload, Compose or Kubernetes YAML file."),
    ],
    to: Annotated[str, typer.Option("--to", help="Output format: kubernetes.")] = "kubernetes",
    runtime_class: Annotated[
        list[str] | None,
        typer.Option(
            "--runtime-class",
            help="TIER=NAME: the RuntimeClass pods of an isolation tier name (default "
            "sandboxed=gvisor, microvm=kata, wasm=wasmtime).",
        ),
    ] = None,
    kubernetes_version: Annotated[
        str | None,
        typer.Option(
            "--kubernetes-version", help="Check the manifests against this version's schemas."
        ),
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the manifests here.")
    ] = None,
    env_file: compose_cli.EnvFileOpt = None,
    profile: compose_cli.ProfileOpt = None,
    image_map: compose_cli.ImageMapOpt = None,
) -> None:
    """Render FILE's workloads as Kubernetes objects (Deployments, StatefulSets,
    Jobs, Services, claims, Secrets, Namespaces)."""
    from portway.cli.main import _guard

    _guard(
        lambda: _export(
            file, to, runtime_class or [], kubernetes_version, out_file,
            compose_cli.ComposeArgs(env_file or [], profile or [], image_map),
        )
    )  # fmt: skip


def _export(
    file: Path,
    to: str,
    runtime_classes: list[str],
    version: str | None,
    out_file: Path | None,
    compose_args: compose_cli.ComposeArgs,
) -> None:
    from portway.service.export import export_file, parse_runtime_classes
    from portway.spec.compose import ComposeOptions, load_image_map
    from portway.spec.kubernetes.schema import DEFAULT_VERSION, check_version

    checked = check_version(version) if version is not None else DEFAULT_VERSION
    images = load_image_map(compose_args.image_map) if compose_args.image_map else {}
    options = ComposeOptions(
        env_files=tuple(compose_args.env_files), profiles=tuple(compose_args.profiles)
    )
    exported = export_file(
        file,
        to=to,
        runtime_classes=parse_runtime_classes(runtime_classes),
        version=checked,
        compose_options=options,
        images=images,
    )
    text = exported.text()
    if out_file is None:
        output.out.print(text, markup=False, highlight=False, soft_wrap=True, end="")
    else:
        out_file.write_text(text, encoding="utf-8")
    for note in exported.notes:
        output.err.print(f"note: {note}", markup=False)
    output.err.print(
        f"{len(exported.documents)} object(s), valid for Kubernetes {exported.version}"
        + (f", written to {out_file}" if out_file else ""),
        markup=False,
    )


def register(app: typer.Typer) -> None:
    app.command(name="export")(export)
