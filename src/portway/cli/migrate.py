"""``portway migrate WORKLOAD --to TARGET``: move a stateful workload and its
volumes to another target, one verified step at a time (docs/volumes.md)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from portway.cli import output


def _say(text: str) -> None:
    output.out.print(text, markup=False)


def register(app: typer.Typer) -> None:
    @app.command("migrate")
    def migrate(
        workload: Annotated[str, typer.Argument(help="The workload to move.")],
        to: Annotated[str | None, typer.Option("--to", help="The target to move it to.")] = None,
        namespace: Annotated[
            str, typer.Option("--namespace", "-n", help="Namespace of the workload.")
        ] = "default",
        resume: Annotated[
            bool, typer.Option("--resume", help="Finish the migration in progress.")
        ] = False,
        abort_: Annotated[
            bool,
            typer.Option(
                "--abort", help="Give the workload back to its old target (before the switch)."
            ),
        ] = False,
        keep_source: Annotated[
            bool,
            typer.Option("--keep-source", help="Keep the old target's volumes after the move."),
        ] = False,
        timeout: Annotated[
            float, typer.Option("--timeout", help="Seconds to wait for each step's replicas.")
        ] = 120.0,
    ) -> None:
        """Move WORKLOAD with its named volumes to --to TARGET: quiesce, snapshot,
        transfer, restore (verified per file), switch, start, clean up. Killed at
        any step, a re-run or --resume completes it."""
        from portway.cli.main import _app, _guard

        if resume and abort_:
            _guard(_both)
        _guard(
            lambda: _migrate(_app(), workload, namespace, to, resume, abort_, keep_source, timeout)
        )


def _both() -> None:
    from portway.errors import InputError

    raise InputError("--resume and --abort: give one of them")


def _migrate(
    app: Any,
    name: str,
    namespace: str,
    to: str | None,
    resume: bool,
    abort: bool,
    keep_source: bool,
    timeout: float,
) -> None:
    from portway.service import migration as service
    from portway.service.migration_steps import ORDER, Migration, Step
    from portway.service.workloads import controller_running

    if abort:
        with controller_running(app):
            done = service.abort(app, namespace, name, timeout)
        _say(
            f"migration {done.id} aborted: {namespace}/{name} scaled back to {done.replicas} "
            f"on {done.source}; what it made on {done.destination} was removed"
        )
        return
    began = time.monotonic()
    with controller_running(app):
        started = service.begin(app, namespace, name, to, keep_source=keep_source, resume=resume)
        if started.migration is None:
            _say(f"{namespace}/{name}: {started.note} (the new copy first)")
            _wait_moved(app, namespace, name, started.generation, timeout)
            return
        migration = started.migration
        how = f"resuming after {migration.step.value}" if started.resumed else "planned"
        _say(
            f"migrating {namespace}/{name} from {migration.source} to {migration.destination} "
            f"(migration {migration.id}, {len(migration.volumes)} volume(s); {how})"
        )
        total = len(ORDER)

        def progress(step: Step, took: float, m: Migration) -> None:
            _say(
                f"  [{step.position + 1}/{total}] {step.value:<12} {took:6.2f}s  {_detail(step, m)}"
            )

        done = service.run(app, migration, timeout, progress, _say)
    _say(
        f"{namespace}/{name} runs on {done.destination} "
        f"({time.monotonic() - began:.1f}s; migration {done.id} done)"
    )


def _wait_moved(app: Any, namespace: str, name: str, generation: int, timeout: float) -> None:
    from portway.errors import ConflictError
    from portway.service.workloads import WaitResult, wait_for

    result = wait_for(app, [(namespace, name, generation)], timeout=timeout)
    outcome = result.get(f"{namespace}/{name}")
    if outcome is not WaitResult.READY:
        raise ConflictError(
            f"{namespace}/{name} is not ready after the move ({outcome}); "
            f"see `portway describe workload {name} -n {namespace}`"
        )
    _say(f"{namespace}/{name} ready")


def _detail(step: Any, m: Any) -> str:
    from portway.service.migration_steps import Step

    if step is Step.PRECOPIED:
        return f"{len(m.volumes)} volume(s) copied to {m.destination} while {m.source} serves"
    if step is Step.QUIESCED:
        return f"replicas on {m.source} scaled to 0 (were {m.replicas})"
    if step is Step.SNAPSHOTTED:
        return ", ".join(
            f"{v.object}: {v.files} files, {v.bytes} bytes ({v.consistency}"
            + (", unchanged since the pre-copy: no snapshot needed)" if v.unchanged else ")")
            for v in m.volumes
        )
    if step is Step.TRANSFERRED:
        carried = sum(1 for v in m.volumes if not v.unchanged)
        return f"{carried} archive(s) verified by SHA-256"
    if step is Step.RESTORED:
        unchanged = sum(1 for v in m.volumes if v.from_precopy)
        return (
            f"{len(m.volumes)} volume(s) on {m.destination}, verified file by file "
            f"({unchanged} unchanged since the pre-copy)"
        )
    if step is Step.SWITCHED:
        return f"placement.targets=[{m.destination}], replicas {m.replicas}"
    if step is Step.STARTED:
        return f"ready on {m.destination}, mounting the restored volumes"
    if step is Step.DONE:
        kept = "kept" if m.keep_source else "removed"
        return f"old volumes on {m.source} {kept}; migration snapshots removed"
    return ""
