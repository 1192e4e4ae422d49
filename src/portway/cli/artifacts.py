"""``portway artifact import|ls|rm``: modules in a target's own artifact store
(the wasm tier's images: no registry, the target keeps them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from portway.cli import output
from portway.cli.output import Format, dump, parse_format, table

artifact_app = typer.Typer(
    help="Import, list and remove modules in a target's artifact store (wasm tier).",
    no_args_is_help=True,
)

TargetOpt = Annotated[
    str | None,
    typer.Option("--target", help="Target whose store to use (default: local-wasm)."),
]


def _run(fn: Any) -> None:
    from portway.cli.main import _app, _guard  # main imports this module first

    _guard(lambda: fn(_app()))


@artifact_app.command("import")
def import_command(
    name: Annotated[str, typer.Argument(help="Artifact name, e.g. portway/hello:1.")],
    file: Annotated[Path, typer.Argument(help="A .wasm binary or .wat text module.")],
    target: TargetOpt = None,
) -> None:
    """Store a module under NAME; workloads then use it as `image: NAME`."""
    from portway.service.artifacts import import_artifact

    def go(app: Any) -> None:
        found = import_artifact(app, name, file, target)
        artifact = found.artifact
        output.out.print(
            f"artifact/{artifact.name} imported into {found.target} "
            f"({artifact.digest[:19]}, {artifact.size} bytes)",
            markup=False,
        )

    _run(go)


@artifact_app.command("ls")
def ls_command(
    target: TargetOpt = None,
    output_format: Annotated[
        str | None, typer.Option("--output", "-o", help="json or yaml.")
    ] = None,
) -> None:
    """List stored modules (of every target that keeps a store, or of --target)."""
    from portway.service.artifacts import list_artifacts

    def go(app: Any) -> None:
        fmt = parse_format(output_format)
        found = list_artifacts(app, target)
        if fmt in (Format.JSON, Format.YAML):
            items = [
                {
                    "target": f.target,
                    "name": f.artifact.name,
                    "digest": f.artifact.digest,
                    "size": f.artifact.size,
                    "importedAt": f.artifact.imported_at.isoformat()
                    if f.artifact.imported_at
                    else None,
                }
                for f in found
            ]
            dump({"items": items}, fmt)
            return
        since = [
            f.artifact.imported_at.timestamp() if f.artifact.imported_at else None for f in found
        ]
        table(
            ["NAME", "DIGEST", "SIZE", "AGE", "TARGET"],
            [
                [f.artifact.name, f.artifact.digest[:19], f.artifact.size, output.age(s), f.target]
                for f, s in zip(found, since, strict=True)
            ],
        )

    _run(go)


@artifact_app.command("rm")
def rm_command(
    name: Annotated[str, typer.Argument(help="Artifact name.")],
    target: TargetOpt = None,
) -> None:
    """Forget a stored module (replicas made from it keep their copy)."""
    from portway.service.artifacts import remove_artifact

    def go(app: Any) -> None:
        found = remove_artifact(app, name, target)
        output.out.print(
            f"artifact/{found.artifact.name} removed from {found.target}", markup=False
        )

    _run(go)
