"""The Compose side of ``apply -f`` and ``plan -f``: the options a Compose
file takes, the ordered apply (one depends_on level at a time) and the
Compose-key verdict table of ``plan``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from portway.cli import output

__all__ = [
    "ComposeArgs",
    "EnvFileOpt",
    "ImageMapOpt",
    "ProfileOpt",
    "StrictOpt",
    "apply_compose",
    "is_compose",
    "load",
    "must_complete",
    "plan_items",
    "print_keys",
    "wait_completed",
]

EnvFileOpt = Annotated[
    list[Path] | None,
    typer.Option("--env-file", help="Compose: variables for interpolation (default: .env)."),
]
ProfileOpt = Annotated[
    list[str] | None,
    typer.Option("--profile", help="Compose: enable services of this profile."),
]
ImageMapOpt = Annotated[
    Path | None,
    typer.Option("--image-map", help="Compose: YAML 'from: to' mapping images to local ones."),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict", help="Compose and Kubernetes files: refuse every key portway would drop."
    ),
]


@dataclass(frozen=True)
class ComposeArgs:
    env_files: list[Path] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    image_map: Path | None = None
    strict: bool = False


def is_compose(file: Path) -> bool:
    from portway.spec.compose import is_compose_file

    return is_compose_file(file)


def load(file: Path, args: ComposeArgs) -> Any:
    from portway.service import compose
    from portway.spec.compose import ComposeOptions, load_image_map

    images = load_image_map(args.image_map) if args.image_map is not None else {}
    options = ComposeOptions(env_files=tuple(args.env_files), profiles=tuple(args.profiles))
    return compose.load(file, options, images, strict=args.strict)


def apply_compose(
    service: Any,
    file: Path,
    args: ComposeArgs,
    no_wait: bool,
    timeout: float,
    wait: Callable[[Any, list[tuple[str, str, int]], float, Callable[[str], bool]], Any],
    report: Callable[[Any, Any], None],
) -> None:
    """Apply a Compose project: refuse with every reason at once, store its
    file secrets, then apply one depends_on level at a time, waiting for each
    level to be ready before the next starts (unless --no-wait)."""
    from portway.errors import SpecError
    from portway.service import compose
    from portway.service import workloads as svc

    loaded = load(file, args)
    refused = compose.refusals(service, loaded)
    if refused:
        raise SpecError(refused)
    for name in compose.store_secrets(service, loaded):
        output.out.print(f"secret/{name} stored", markup=False)
    with svc.controller_running(service, embed=not no_wait) as link:
        for level in loaded.by_level():
            _, applied = svc.apply_all(service, level, [])
            link.notify([r.workload.key for r in applied])
            for result in applied:
                name = result.workload.metadata.name
                output.out.print(f"workload/{name} {result.outcome.value}", markup=False)
            if no_wait:
                continue
            must_finish = must_complete(loaded)
            keys = [
                (r.workload.metadata.namespace, r.workload.metadata.name, r.generation)
                for r in applied
                if r.workload.metadata.name not in must_finish
            ]
            if keys:
                report(service, wait(service, keys, timeout, link.observed))
            for result in applied:
                if result.workload.metadata.name in must_finish:
                    wait_completed(
                        lambda ns, name: svc.replicas_of(service, ns, name),
                        result.workload,
                        timeout,
                        link.notify,
                        link.observed,
                    )
    if no_wait:
        output.err.print(
            "note: --no-wait records every service at once; depends_on order is kept "
            "only when apply waits",
            markup=False,
        )


def must_complete(loaded: Any) -> set[str]:
    """Workloads some service waits for with service_completed_successfully."""
    from portway.spec.compose import normalise_name

    return {
        normalise_name(dep)
        for workload in loaded.mapped.workloads
        for dep, condition in workload.depends_on.items()
        if condition == "service_completed_successfully"
    }


def wait_completed(
    replicas_of: Callable[[str, str], list[Any]],
    workload: Any,
    timeout: float,
    notify: Callable[[list[str]], None] | None = None,
    observed: Callable[[str], bool] | None = None,
) -> None:
    """Wait until every replica of the workload has exited 0 (a one-shot
    service others wait for with service_completed_successfully). An
    embedded controller is nudged each second (``notify``): it would
    otherwise see an exit only at its next resync. Replica records count
    only once the controller has looked since the apply (``observed``)."""
    import time

    from portway.errors import PortwayError

    namespace, name = workload.metadata.namespace, workload.metadata.name
    desired = workload.spec.replicas
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if observed is not None and not observed(workload.key):
            time.sleep(0.05)
            continue
        replicas = replicas_of(namespace, name)
        failed = [r for r in replicas if r.state == "exited" and r.last_exit_code not in (None, 0)]
        if failed:
            raise PortwayError(
                f"workload/{name} exited {failed[0].last_exit_code}: the services that "
                "depend on it with service_completed_successfully are not started"
            )
        done = [r for r in replicas if r.state == "exited" and r.last_exit_code == 0]
        if replicas and len(done) >= desired:
            output.out.print(f"workload/{name} completed", markup=False)
            return
        if notify is not None:
            notify([workload.key])
        time.sleep(1.0)
    raise PortwayError(f"workload/{name} did not complete within {timeout:g} s")


def plan_items(
    file: Path, args: ComposeArgs, plan: Callable[[list[Any], list[Any]], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """``plan -o json`` items of a Compose file, each with its service's
    Compose keys and a verdict per target."""
    from portway.service import compose

    loaded = load(file, args)
    items = plan(list(loaded.workloads), [])
    for item, mapped in zip(items, loaded.mapped.workloads, strict=True):
        item["compose"] = {
            "project": loaded.mapped.project,
            "service": mapped.service,
            "dependsOn": mapped.depends_on,
            "keys": compose.key_verdicts(mapped, item),
        }
    return items


def print_keys(item: dict[str, Any]) -> None:
    """The Compose-key table of one service: every key path, a verdict per target."""
    compose = item.get("compose")
    if not compose:
        return
    targets = [str(t["target"]) for t in item.get("targets") or []]
    title = f"compose keys of service {compose['service']}"
    output.file_key_table(title, "COMPOSE KEY", compose["keys"], targets)
