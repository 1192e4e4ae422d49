"""Target commands: ``portway target add|set|cordon|uncordon|drain|remove``
and ``portway get targets``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from portway.cli import output
from portway.cli.output import Format, dump, parse_format, table

target_app = typer.Typer(
    help="Register targets (backend endpoints) and manage them as a topology: "
    "labels, capacity, taints; cordon, drain, remove.",
    no_args_is_help=True,
)

OutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="wide, json or yaml.")]
NameArg = Annotated[str, typer.Argument(help="Target name.")]
LabelOpt = Annotated[
    list[str] | None,
    typer.Option("--label", "-l", help="KEY=VALUE, repeatable (e.g. region=eu, zone=a)."),
]
CapacityOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--capacity",
        help="cpu=CORES,memory=SIZE (e.g. cpu=2,memory=4Gi; cpu 500m); overrides the "
        "fingerprint's figures.",
    ),
]
TaintOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--taint",
        help="KEY[=VALUE]:EFFECT, EFFECT NoSchedule or PreferNoSchedule; repeatable.",
    ),
]


def register(get_app: typer.Typer) -> None:
    get_app.command("targets")(get_targets)
    get_app.command("target", hidden=True)(get_targets)


def _guard(fn: Any) -> None:
    from portway.cli.main import _guard as guard  # main imports this module first

    guard(fn)


def _app() -> Any:
    from portway.cli.main import _app as make

    return make()


def _remote() -> Any:
    from portway.cli.main import _remote as client

    return client()


def _say(text: str) -> None:
    output.out.print(text, markup=False)


def _note(text: str) -> None:
    output.err.print(text, markup=False)


# --- add / set -------------------------------------------------------------------


@target_app.command("add")
def target_add(
    name: Annotated[str, typer.Argument(help="Target name, e.g. local-podman.")],
    address: Annotated[
        str | None,
        typer.Option(
            help="e.g. podman:///run/podman/podman.sock (default: the driver's local socket)."
        ),
    ] = None,
    driver: Annotated[
        str | None,
        typer.Option(
            help="docker, podman, containerd, wasm or kubernetes (default: address scheme)."
        ),
    ] = None,
    label: LabelOpt = None,
    capacity: CapacityOpt = None,
    taint: TaintOpt = None,
    context: Annotated[
        str | None,
        typer.Option(help="kubernetes: the kubeconfig context (default: its current context)."),
    ] = None,
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            help="kubernetes: the kubeconfig file (default: $KUBECONFIG, ~/.kube/config)."
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(help="kubernetes: the namespace for the Pods (default: the context's)."),
    ] = None,
) -> None:
    """Register a target and check its health. Several targets may share a
    driver and an address (say, two docker targets with different labels)."""

    def go() -> None:
        from portway.cli.kubernetes_target import kubernetes_address

        resolved = kubernetes_address(address, driver, context, kubeconfig, namespace)
        _target_add(name, resolved, driver, label or [], capacity or [], taint or [])

    _guard(go)


def _target_add(
    name: str,
    address: str | None,
    driver: str | None,
    labels: list[str],
    capacity: list[str],
    taints: list[str],
) -> None:
    from portway.cli import remote_targets
    from portway.service import targets as svc

    client = _remote()
    if client is not None:
        view = remote_targets.add(client, name, address, driver, labels, capacity, taints)
    else:
        view = svc.add_target(
            _app(),
            name,
            address,
            driver,
            svc.parse_labels(labels),
            capacity=svc.parse_capacity(capacity),
            taints=svc.parse_taints(taints),
        )
    _say(
        f"target/{view.name} added ({view.driver} at {view.address}, {view.health}"
        + (f": {view.detail}" if view.detail else "")
        + ")"
    )


@target_app.command("set")
def target_set(
    name: NameArg,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="KEY=VALUE sets, KEY- removes; repeatable."),
    ] = None,
    capacity: Annotated[
        list[str] | None,
        typer.Option(
            "--capacity",
            help="cpu=CORES,memory=SIZE; cpu- or memory- goes back to the fingerprint.",
        ),
    ] = None,
    taint: Annotated[
        list[str] | None,
        typer.Option(
            "--taint", help="KEY[=VALUE]:EFFECT adds, KEY- or KEY:EFFECT- removes; repeatable."
        ),
    ] = None,
) -> None:
    """Change a target's labels, capacity or taints (kubectl label/taint style)."""
    _guard(lambda: _target_set(name, label or [], capacity or [], taint or []))


def _target_set(name: str, labels: list[str], capacity: list[str], taints: list[str]) -> None:
    from portway.errors import InputError
    from portway.service import targets as svc

    if not (labels or capacity or taints):
        raise InputError("nothing to change: give --label, --capacity or --taint")
    client = _remote()
    if client is not None:
        from portway.cli import remote_targets

        view = remote_targets.set_(client, name, labels, capacity, taints)
    else:
        view = svc.set_target(_app(), name, labels=labels, capacity=capacity, taints=taints)
    _say(
        f"target/{view.name} set: labels {output.labels_text(view.labels)}; "
        f"capacity {capacity_text(view) or 'unknown'}; taints {taints_text(view)}"
    )


# --- cordon / uncordon / drain ------------------------------------------------------


@target_app.command("cordon")
def target_cordon(name: NameArg) -> None:
    """Place no new replicas on the target; those there keep running."""

    def go() -> None:
        from portway.service import targets as svc

        client = _remote()
        if client is not None:
            from portway.cli import remote_targets

            changed = remote_targets.toggle(client, name, "cordon")
        else:
            changed = svc.cordon(_app(), name)
        _say(f"target/{name} cordoned" if changed else f"target/{name} already cordoned")

    _guard(go)


@target_app.command("uncordon")
def target_uncordon(name: NameArg) -> None:
    """Let placement use the target again (also ends a drain)."""

    def go() -> None:
        from portway.service import targets as svc

        client = _remote()
        if client is not None:
            from portway.cli import remote_targets

            changed = remote_targets.toggle(client, name, "uncordon")
        else:
            changed = svc.uncordon(_app(), name)
        _say(f"target/{name} uncordoned" if changed else f"target/{name} already uncordoned")

    _guard(go)


@target_app.command("drain")
def target_drain(
    name: NameArg,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Wait until no replica is recorded on the target."),
    ] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 300.0,
) -> None:
    """Cordon the target and have the controller move its replicas elsewhere
    (each new copy starts before the old one goes)."""
    _guard(lambda: _target_drain(name, wait, timeout))


def _replica_text(replica: Any) -> str:
    where = "" if replica.namespace == "default" else f" (namespace {replica.namespace})"
    return f"workload/{replica.name}{where}"


def _target_drain(name: str, wait: bool, timeout: float) -> None:
    from portway.errors import InputError
    from portway.service import targets as svc

    if timeout < 0:
        raise InputError(f"--timeout {timeout:g}: expected seconds, 0 or more")
    client = _remote()
    if client is not None:
        import typer as _typer

        from portway.cli import remote_targets

        raise _typer.Exit(remote_targets.drain(client, name, wait, timeout))
    service = _app()
    changed = svc.start_drain(service, name)
    _say(f"target/{name} cordoned" if changed else f"target/{name} already draining")
    replicas = svc.replicas_on(service, name)
    for replica in replicas:
        _say(f"evicting {_replica_text(replica)}")
    controller = svc.running_controller(service) if replicas else None
    if replicas and controller is None and not wait:
        _note("note: no controller is running; the replicas move once `portway controller` runs")
    if not wait:
        if replicas:
            _say(f"target/{name} draining ({len(replicas)} replica(s) to move)")
        else:
            _say(f"target/{name} drained")
        return

    def moved(replica: Any, target: str | None) -> None:
        if target is None:
            _say(f"{_replica_text(replica)} removed")
        else:
            _say(f"{_replica_text(replica)} evicted (now on {target or 'no target'})")

    from portway.service.workloads import controller_running

    # As `apply` does: without a running controller, one works in this
    # process while we wait, so a drain on the embedded default completes.
    with controller_running(service):
        remaining = svc.wait_drained(service, name, timeout, on_moved=moved)
    if not remaining:
        _say(f"target/{name} drained")
        return
    lines = [
        f"target/{name} not drained after {timeout:g}s: {len(remaining)} replica(s) still on it"
    ]
    lines += [f"  {_replica_text(r)}: {svc.why_not_moved(service, r)}" for r in remaining]
    from portway.cli.main import _fail

    _fail("\n".join(lines), 1)


# --- remove -------------------------------------------------------------------------


@target_app.command("remove")
def target_remove(
    name: NameArg,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Remove even with replicas on it; the controller reschedules them."
        ),
    ] = False,
) -> None:
    """Remove a target (one with replicas on it only with --force: drain it first)."""

    def go() -> None:
        from portway.service import targets as svc

        client = _remote()
        if client is not None:
            from portway.cli import remote_targets

            left = remote_targets.remove(client, name, force)
        else:
            left = [r.key for r in svc.remove_target(_app(), name, force=force)]
        _say(f"target/{name} removed")
        if left:
            _note(
                f"warning: {len(left)} replica(s) were recorded on it "
                f"({', '.join(left[:5])}{', ...' if len(left) > 5 else ''}); "
                "the controller reschedules them on other targets"
            )

    _guard(go)


# --- get targets ----------------------------------------------------------------------


def get_targets(output_format: OutputOpt = None) -> None:
    """List targets: health (checked now), scheduling status (Ready,
    SchedulingDisabled, Draining); -o wide adds capacity, labels and taints."""
    _guard(lambda: _get_targets(output_format))


def _memory_text(size: float) -> str:
    for unit, factor in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if size >= factor:
            return f"{size / factor:.1f}".removesuffix(".0") + unit
    return f"{size:.0f}"


def capacity_text(view: Any) -> str:
    """``2 cpu, 4Gi (given)`` or ``2 cpu (given), 15.6Gi (fingerprint)``."""
    from portway.service.targets import capacity_of

    figures = capacity_of(view)
    parts = {
        key: f"{f.value:g} cpu" if key == "cpu" else _memory_text(f.value)
        for key, f in figures.items()
    }
    sources = {f.source for f in figures.values()}
    if len(sources) == 1:
        return ", ".join(parts.values()) + f" ({sources.pop()})"
    return ", ".join(f"{parts[k]} ({figures[k].source})" for k in figures)


def taints_text(view: Any) -> str:
    return (
        ",".join(
            f"{t.get('key')}={t.get('value')}:{t.get('effect')}"
            if t.get("value")
            else f"{t.get('key')}:{t.get('effect')}"
            for t in view.taints
        )
        or "<none>"
    )


def _target_json(view: Any) -> dict[str, Any]:
    from portway.service.targets import capacity_of, schedule_status

    return {
        "name": view.name,
        "driver": view.driver,
        "address": view.address,
        "labels": dict(view.labels),
        "health": view.health,
        "status": schedule_status(view),
        "cordoned": view.cordoned,
        "draining": view.draining,
        "capacity": {
            key: {"value": f.value, "source": f.source} for key, f in capacity_of(view).items()
        },
        "taints": [dict(t) for t in view.taints],
        "detail": view.detail,
        "version": view.version,
        "runtimeHandlers": list(view.runtime_handlers),
        "tiers": {
            tier: {
                "handler": h.handler,
                "overheadMemory": h.overhead_memory,
                "overheadCpu": h.overhead_cpu,
            }
            for tier, h in sorted(view.tiers.items())
        },
        "unavailableTiers": output.unavailable_tiers(view),
        "attributes": dict(view.attributes),
    }


def _get_targets(fmt_text: str | None) -> None:
    from portway.cli.main import _reads
    from portway.service.targets import schedule_status

    fmt = parse_format(fmt_text)
    views = _reads().target_views(check=True)
    if fmt in (Format.JSON, Format.YAML):
        dump({"items": [_target_json(v) for v in views]}, fmt)
        return
    rows = []
    for v in views:
        row = [v.name, v.driver, v.health, schedule_status(v), v.version]
        if fmt is Format.WIDE:
            row += [
                v.address,
                output.tiers_text(v),
                v.attributes.get("cgroup_version", ""),
                capacity_text(v),
                output.labels_text(v.labels),
                taints_text(v),
                v.detail,
            ]
        rows.append(row)
    headers = ["NAME", "DRIVER", "HEALTH", "STATUS", "VERSION"]
    if fmt is Format.WIDE:
        headers += [
            "ADDRESS",
            "TIERS (HANDLER)",
            "CGROUP",
            "CAPACITY",
            "LABELS",
            "TAINTS",
            "DETAIL",
        ]
    table(headers, rows)
    if not views:
        _note("no targets: is the Docker socket at /var/run/docker.sock?")
