"""``portway``: kubectl/docker-style commands.

Every command goes through the service layer. Errors print one reason per
line on stderr and exit non-zero (2 for bad input, 3 for not found, 1 else).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from portway import tracing
from portway.cli import access as access_cli
from portway.cli import compose as compose_cli
from portway.cli import contexts as contexts_cli
from portway.cli import events as events_cli
from portway.cli import export as export_cli
from portway.cli import kubernetes as kube_cli
from portway.cli import migrate as migrate_cli
from portway.cli import output
from portway.cli import policy as policy_cli
from portway.cli import remote as remote_cli
from portway.cli import server as server_cli
from portway.cli import targets as targets_cli
from portway.cli import top as top_cli
from portway.cli.artifacts import artifact_app
from portway.cli.backend import LocalReads, Reads
from portway.cli.output import Format, age, dump, parse_format, table
from portway.cli.secrets import secret_app
from portway.cli.volumes import volume_app
from portway.errors import InputError, NotFoundError, PortwayError
from portway.spec.model import Isolation

app = typer.Typer(
    name="portway",
    help="Run one portable workload description on many container backends.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
get_app = typer.Typer(help="List workloads, replicas, targets or events.", no_args_is_help=True)
describe_app = typer.Typer(help="Show details of one object.", no_args_is_help=True)
app.add_typer(get_app, name="get")
app.add_typer(describe_app, name="describe")
app.add_typer(targets_cli.target_app, name="target")
policy_cli.register(app, get_app, describe_app)
top_cli.register(app)  # portway top
app.add_typer(artifact_app, name="artifact")
app.add_typer(secret_app, name="secret")
app.add_typer(volume_app, name="volume")
access_cli.register(app)  # token, rolebinding, audit-log
app.add_typer(contexts_cli.context_app, name="context")
server_cli.register(app)  # portway server
migrate_cli.register(app)  # portway migrate
events_cli.register(app)  # portway events [-w]
export_cli.register(app)  # portway export --to kubernetes

T = TypeVar("T")

NamespaceOpt = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the workload.")]
AllNamespacesOpt = Annotated[
    bool, typer.Option("--all-namespaces", "-A", help="List across all namespaces.")
]
OutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="wide, json or yaml.")]


def _fail(message: str, code: int) -> None:
    lines = message.splitlines() or [message]
    output.err.print(f"error: {lines[0]}", markup=False)
    for line in lines[1:]:
        output.err.print(line, markup=False)
    raise typer.Exit(code)


def _guard(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except PortwayError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    raise AssertionError("unreachable")


#: commands that drive this machine's engines or files; with a context in
#: use they refuse before starting (others refuse in ``_app``)
_LOCAL_ONLY = frozenset({"server", "controller", "conformance", "audit", "artifact", "migrate"})


@app.callback()
def _options(
    ctx: typer.Context,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            help="Context (server) for this command; `local` for the embedded store. "
            "Default: PORTWAY_CONTEXT, else the current context (`portway context ls`).",
        ),
    ] = None,
) -> None:
    contexts_cli.set_override(context)
    ctx.call_on_close(contexts_cli.close_clients)
    if ctx.invoked_subcommand != "server":  # the server also reads --otlp-endpoint
        _guard(tracing.configure)
    if ctx.invoked_subcommand in _LOCAL_ONLY:
        current = _guard(contexts_cli.active_context)
        if current is not None:
            command = f"{ctx.command_path} {ctx.invoked_subcommand}"
            _fail(str(remote_cli.refuse_local_only(command, current.name)), 2)
    elif tracing.enabled() and ctx.invoked_subcommand not in ("server", "context"):
        current = _guard(contexts_cli.active_context)
        if current is not None:
            # a root span for the whole command, whose context every request
            # carries (traceparent): the server's spans join this trace
            attributes = {"portway.command": str(ctx.invoked_subcommand)}
            attributes["portway.server"] = current.server
            ctx.with_resource(tracing.span(f"portway.cli.{ctx.invoked_subcommand}", attributes))


def _app() -> Any:
    """The embedded store and local engines. Every command that has no remote
    form comes here, so this is where it refuses while a context is in use."""
    from portway.service.app import App

    context = _guard(contexts_cli.active_context)
    if context is not None:
        import click

        current = click.get_current_context(silent=True)
        command = current.command_path if current is not None else "this command"
        _fail(str(remote_cli.refuse_local_only(command, context.name)), 2)
    return App()


def _remote() -> Any:
    """The client of the server in use, or None on the embedded store."""
    return contexts_cli.open_client()


def _reads() -> Reads:
    client = _remote()
    return LocalReads(_app()) if client is None else remote_cli.RemoteReads(client)


def _load(file: Path, compose: compose_cli.ComposeArgs | None = None) -> list[Any]:
    return _load_all(file, compose)[0]


def _load_all(
    file: Path, compose: compose_cli.ComposeArgs | None = None
) -> tuple[list[Any], list[Any]]:
    """The file's workloads and namespace policies, each with where it came from
    (``compose``: the options a Compose file is read with)."""
    from portway.service.namespaces import SourcedNamespace
    from portway.service.workloads import Sourced
    from portway.spec.loader import load_objects
    from portway.spec.model import Workload

    if compose_cli.is_compose(file):
        loaded = compose_cli.load(file, compose or compose_cli.ComposeArgs())
        return list(loaded.workloads), []
    if kube_cli.is_kubernetes(file):
        return kube_cli.load_sourced(file)
    workloads: list[Any] = []
    namespaces: list[Any] = []
    for item in load_objects(file):
        if isinstance(item.object, Workload):
            workloads.append(Sourced(item.object, str(file), item.document, item.lines))
        else:
            namespaces.append(SourcedNamespace(item.object, str(file), item.document))
    return workloads, namespaces


# --- apply / delete -----------------------------------------------------


@app.command()
def apply(
    file: Annotated[Path, typer.Option("--filename", "-f", help="Workload YAML file.")],
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Return once the desired state is recorded.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness.")] = 300.0,
    env_file: compose_cli.EnvFileOpt = None,
    profile: compose_cli.ProfileOpt = None,
    image_map: compose_cli.ImageMapOpt = None,
    strict: compose_cli.StrictOpt = False,
) -> None:
    """Create or update the workloads in FILE (a workload file or a Compose
    file) and wait until they are ready."""
    args = compose_cli.ComposeArgs(env_file or [], profile or [], image_map, strict)
    _guard(lambda: _apply(file, no_wait, timeout, args))


def _apply(file: Path, no_wait: bool, timeout: float, args: compose_cli.ComposeArgs) -> None:
    from portway.service import workloads as svc

    client = _remote()
    if compose_cli.is_compose(file):
        if client is not None:
            from portway.cli import remote_files

            raise typer.Exit(remote_files.apply_compose(client, file, args, no_wait, timeout))
        compose_cli.apply_compose(
            _app(), file, args, no_wait, timeout, _wait_with_progress, _report_wait
        )
        return
    if kube_cli.is_kubernetes(file):
        if client is not None:
            from portway.cli import remote_files

            raise typer.Exit(
                remote_files.apply_kubernetes(client, file, args.strict, no_wait, timeout)
            )
        items, namespaces = kube_cli.prepare_apply(_app, file, args.strict)
    elif client is not None:
        raise typer.Exit(remote_cli.apply(client, file, no_wait, timeout))
    else:
        items, namespaces = _load_all(file)
    service = _app()
    with svc.controller_running(service, embed=not no_wait) as link:
        written, applied = svc.apply_all(service, items, namespaces)
        policy_cli.report_namespaces(written)
        link.notify([r.workload.key for r in applied])
        for result in applied:
            output.out.print(f"workload/{result.workload.metadata.name} {result.outcome.value}")
        if no_wait:
            if link.other is None:
                # no controller will pick this up after we exit: do one pass now
                for result in applied:
                    _one_pass(service, result.workload.key)
                output.err.print(
                    "note: no controller is running; run `portway controller` to keep "
                    "workloads at their desired state",
                    markup=False,
                )
            return
        keys = [
            (r.workload.metadata.namespace, r.workload.metadata.name, r.generation) for r in applied
        ]
        results = _wait_with_progress(service, keys, timeout, link.observed)
    _report_wait(service, results)


def _one_pass(service: Any, key: str) -> None:
    from portway.controller.runner import Controller

    controller = Controller(service.store, targets=service.targets)
    controller.targets.check_all()
    try:
        controller.reconciler.reconcile(key)
    except PortwayError as exc:
        output.err.print(f"warning: {exc}", markup=False)
    finally:
        controller.reconciler.close()


def _wait_with_progress(
    service: Any,
    keys: list[tuple[str, str, int]],
    timeout: float,
    observed: Callable[[str], bool] | None = None,
) -> Any:
    from rich.live import Live

    from portway.service import workloads as svc

    def render(records: list[Any]) -> Any:
        from rich.table import Table

        grid = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
        for header in ("WORKLOAD", "READY", "UP-TO-DATE", "PHASE", "MESSAGE"):
            grid.add_column(header, no_wrap=header != "MESSAGE")
        for (ns, name, _), record in zip(keys, records, strict=True):
            status = record.status if record else {}
            counts = status.get("replicas", {})
            grid.add_row(
                f"{ns}/{name}",
                f"{counts.get('ready', 0)}/{counts.get('desired', '?')}",
                str(counts.get("updated", 0)),
                str(status.get("phase", "Pending")),
                str(status.get("message", "")),
            )
        return grid

    if not output.out.is_terminal:
        return svc.wait_for(service, keys, timeout=timeout, observed=observed)
    with Live(render([None] * len(keys)), console=output.out, refresh_per_second=8) as live:
        return svc.wait_for(
            service,
            keys,
            timeout=timeout,
            on_progress=lambda recs: live.update(render(recs)),
            observed=observed,
        )


def _report_wait(service: Any, results: dict[str, Any]) -> None:
    from portway.service import workloads as svc

    failed = False
    for key, result in results.items():
        namespace, _, name = key.partition("/")
        if result is svc.WaitResult.READY:
            endpoints = [
                e.split(" -> ")[1]
                for r in svc.replicas_of(service, namespace, name)
                for e in r.endpoints
                if e.startswith("tcp ")
            ]
            where = f" at {' '.join(endpoints)}" if endpoints else ""
            output.out.print(f"workload/{name} ready{where}", markup=False)
        else:
            failed = True
            record = service.store.get("Workload", namespace, name)
            message = record.status.get("message", "") if record else ""
            output.err.print(
                f"error: workload/{name} {result.value}" + (f": {message}" if message else ""),
                markup=False,
            )
    if failed:
        raise typer.Exit(1)


@app.command()
def plan(
    file: Annotated[Path, typer.Option("--filename", "-f", help="Workload YAML file.")],
    target: Annotated[
        list[str] | None, typer.Option("--target", "-t", help="Only these targets.")
    ] = None,
    output_format: OutputOpt = None,
    env_file: compose_cli.EnvFileOpt = None,
    profile: compose_cli.ProfileOpt = None,
    image_map: compose_cli.ImageMapOpt = None,
    strict: compose_cli.StrictOpt = False,
) -> None:
    """Show, per field and target, what each backend will do with the spec:
    honored, emulated (how), dropped (why) or rejected (why). For a Compose
    file, also every Compose key with a verdict per target."""
    args = compose_cli.ComposeArgs(env_file or [], profile or [], image_map, strict)
    _guard(lambda: _plan(file, target or [], output_format, args))


def _plan(
    file: Path, targets: list[str], fmt_text: str | None, args: compose_cli.ComposeArgs
) -> None:
    fmt = parse_format(fmt_text)
    client = _remote()

    def plan(sourced: list[Any], namespaces: list[Any]) -> list[dict[str, Any]]:
        if client is None:
            return _plan_sourced(sourced, namespaces, targets)
        from portway.cli import remote_files

        return remote_files.plan_translated(client, file, sourced, namespaces, targets)

    if compose_cli.is_compose(file):
        items = compose_cli.plan_items(file, args, plan)
    elif kube_cli.is_kubernetes(file):
        items = kube_cli.plan_items(file, args.strict, plan)
    elif client is None:
        items = _plan_items(file, targets)
    else:
        items = remote_cli.plan_items(client, file, targets)
    if fmt in (Format.JSON, Format.YAML):
        dump({"items": items}, fmt)
        return
    for item in items:
        _print_plan(item)
        compose_cli.print_keys(item)
        kube_cli.print_keys(item)


def _plan_items(file: Path, targets: list[str]) -> list[dict[str, Any]]:
    """The plan of FILE's workloads on the embedded store, as ``plan -o json``
    prints it (and the server answers ``POST /v1/plan``)."""

    sourced, namespaces = _load_all(file)
    return _plan_sourced(sourced, namespaces, targets)


def _plan_sourced(sourced: list[Any], namespaces: list[Any], targets: list[str]) -> list[Any]:
    from portway.service.planning import plan_workloads

    items = [(s.workload, s.file, s.document) for s in sourced]
    plans = plan_workloads(_app(), items, targets, namespaces)
    return [
        {
            "workload": p.workload.key,
            "file": p.file,
            "document": p.document,
            "isolation": p.workload.spec.isolation.value,
            "portability": p.workload.spec.portability.value,
            "policy": policy_cli.policy_json(p),
            "targets": [
                {
                    **t.to_json(),
                    "extensionProblems": p.extension_problems.get(t.target, []),
                }
                for t in p.targets
            ],
        }
        for p in plans
    ]


def _print_plan(item: dict[str, Any]) -> None:
    """One workload's plan table and notes, from its ``plan -o json`` item."""
    p_ = output.out.print
    mode = str(item["portability"])
    p_(
        f"[bold]workload {item['workload']}[/bold] ({item['file']}, document {item['document']}; "
        f"isolation {item['isolation']}, portability {mode})"
    )
    namespace = str(item["workload"]).partition("/")[0]
    violations = item.get("policy") or []
    if not violations:
        p_(f"  policy: [green]allowed[/] by namespace {namespace}")
    else:
        p_(f"  policy: [red]refused[/] by namespace {namespace} ({len(violations)} violation(s))")
        for v in violations:
            p_(f"    {v['path']}: {v['message']} [{v['rule']}]", markup=False)
    plans = item.get("targets") or []
    if not plans:
        p_("  no targets: see `portway get targets`", markup=False)
        return
    rows = []
    for i, field in enumerate(plans[0]["fields"]):
        cells = [f"  {field['path']}", str(field["feature"])]
        for tp in plans:
            verdict = tp["fields"][i]["verdict"]
            cells.append(output.verdict_cell(verdict))
        rows.append(cells)
    table(["  FIELD", "FEATURE", *[t["target"] for t in plans]], rows)
    for tp in plans:
        for field in tp["fields"]:
            if field["verdict"] != "honored":
                p_(
                    f"  {tp['target']}: {field['path']} {field['verdict']}: {field['reason']}",
                    markup=False,
                )
        for ext in tp["extensions"]:
            state = "applies" if ext["applies"] else "ignored (not this backend)"
            p_(
                f"  {tp['target']}: {ext['path']} ({', '.join(ext['keys']) or 'empty'}) {state}",
                markup=False,
            )
        for note in tp["notes"]:
            p_(f"  note: {note}", markup=False)
        for problem in tp.get("extensionProblems", []):
            p_(f"  {tp['target']}: [red]invalid extension[/]: {problem}")
    # lenient refuses rejected fields only; strict refuses dropped ones too
    refusing = ("rejected",) if mode == "lenient" else ("rejected", "dropped")
    for tp in plans:
        refused = [f["verdict"] for f in tp["fields"] if f["verdict"] in refusing]
        if refused:
            counts = ", ".join(
                f"{refused.count(v)} {v}" for v in ("rejected", "dropped") if v in refused
            )
            p_(f"  {tp['target']}: [red]refused[/] in {mode} mode ({counts})")
        else:
            p_(f"  {tp['target']}: [green]deployable[/] in {mode} mode")
    if len(plans) > 1:
        by_path: dict[str, set[str]] = {}
        for tp in plans:
            for field in tp["fields"]:
                by_path.setdefault(field["path"], set()).add(field["verdict"])
        differing = [path for path, verdicts in by_path.items() if len(verdicts) > 1]
        p_(f"  {len(differing)} field(s) differ between targets", markup=False)
    p_("")


@app.command()
def delete(
    target: Annotated[list[str] | None, typer.Argument(help="NAME, or `workload NAME`.")] = None,
    file: Annotated[
        Path | None, typer.Option("--filename", "-f", help="Delete what FILE defines.")
    ] = None,
    namespace: NamespaceOpt = "default",
    no_wait: Annotated[bool, typer.Option("--no-wait")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for removal.")] = 120.0,
    env_file: compose_cli.EnvFileOpt = None,
    profile: compose_cli.ProfileOpt = None,
) -> None:
    """Delete workloads (by name or by file) and everything they run."""
    args = compose_cli.ComposeArgs(env_file or [], profile or [])
    _guard(lambda: _delete(target or [], file, namespace, no_wait, timeout, args))


def _delete(
    names: list[str],
    file: Path | None,
    namespace: str,
    no_wait: bool,
    timeout: float,
    compose: compose_cli.ComposeArgs,
) -> None:
    from portway.service import workloads as svc

    if names and names[0] in ("workload", "workloads", "wl"):
        names = names[1:]
    keys: list[tuple[str, str]] = [(namespace, n) for n in names]
    if file is not None:
        keys += [
            (s.workload.metadata.namespace, s.workload.metadata.name) for s in _load(file, compose)
        ]
    if not keys:
        raise InputError("name a workload or pass -f FILE")
    client = _remote()
    if client is not None:
        raise typer.Exit(remote_cli.delete(client, keys, no_wait, timeout))
    service = _app()
    svc.check_deletable(service, keys)
    with svc.controller_running(service, embed=not no_wait) as link:
        for ns, name in keys:
            svc.delete(service, ns, name)
            output.out.print(f"workload/{name} deleted")
        link.notify([f"{ns}/{name}" for ns, name in keys])
        if no_wait:
            if link.other is None:
                for ns, name in keys:
                    _one_pass(service, f"{ns}/{name}")
            return
        results = svc.wait_for(
            service, [(ns, n, 0) for ns, n in keys], timeout=timeout, deleting=True
        )
    gone = [k for k, r in results.items() if r is not svc.WaitResult.DELETED]
    if gone:
        _fail(f"timed out waiting for removal of {', '.join(gone)}", 1)


# --- get ------------------------------------------------------------------


@get_app.command("workloads")
def get_workloads(
    name: Annotated[str | None, typer.Argument()] = None,
    namespace: NamespaceOpt = "default",
    all_namespaces: AllNamespacesOpt = False,
    output_format: OutputOpt = None,
) -> None:
    """List workloads."""
    _guard(lambda: _get_workloads(name, None if all_namespaces else namespace, output_format))


get_app.command("workload", hidden=True)(get_workloads)
get_app.command("wl", hidden=True)(get_workloads)


def _get_workloads(name: str | None, namespace: str | None, fmt_text: str | None) -> None:
    from portway.controller.records import workload_of

    fmt = parse_format(fmt_text)
    records = _reads().list_workloads(namespace)
    if name is not None:
        records = [r for r in records if r.name == name]
        if not records:
            raise NotFoundError(f"workload {namespace}/{name} not found")
    if fmt in (Format.JSON, Format.YAML):
        items = [
            {
                **dict(r.spec["workload"]),
                "status": dict(r.status),
                "generation": r.generation,
                "version": r.version,
            }
            for r in records
        ]
        dump(items[0] if name and items else {"items": items}, fmt)
        return
    rows = []
    for r in records:
        counts = r.status.get("replicas", {})
        workload = workload_of(r)
        row = [
            r.namespace,
            r.name,
            f"{counts.get('ready', 0)}/{workload.spec.replicas}",
            counts.get("updated", 0),
            "Deleting" if r.deleting else r.status.get("phase", "Pending"),
            age(r.created_at),
        ]
        if fmt is Format.WIDE:
            row += [workload.spec.image, r.status.get("target", ""), r.status.get("message", "")]
        rows.append(row)
    headers = ["NAMESPACE", "NAME", "READY", "UP-TO-DATE", "PHASE", "AGE"]
    if fmt is Format.WIDE:
        headers += ["IMAGE", "TARGET", "MESSAGE"]
    table(headers, rows)


@get_app.command("replicas")
def get_replicas(
    workload: Annotated[str | None, typer.Argument(help="Only this workload's replicas.")] = None,
    namespace: NamespaceOpt = "default",
    all_namespaces: AllNamespacesOpt = False,
    output_format: OutputOpt = None,
) -> None:
    """List replicas: where each runs, its state and endpoints."""
    _guard(lambda: _get_replicas(workload, None if all_namespaces else namespace, output_format))


get_app.command("replica", hidden=True)(get_replicas)


def _get_replicas(workload: str | None, namespace: str | None, fmt_text: str | None) -> None:
    from portway.service.targets import topology_of

    fmt = parse_format(fmt_text)
    reads = _reads()
    pairs = [
        (ns, v)
        for ns, v in reads.all_replicas(namespace)
        if workload is None or v.workload == workload
    ]
    views = {t.name: t for t in reads.target_views()}
    topology = {v.target: topology_of(views.get(v.target)) for _, v in pairs}
    if fmt in (Format.JSON, Format.YAML):
        items = [
            {
                "namespace": ns,
                **v.to_status(),
                "region": topology[v.target][0],
                "zone": topology[v.target][1],
            }
            for ns, v in pairs
        ]
        dump({"items": items}, fmt)
        return
    rows = []
    for ns, v in pairs:
        row = [
            ns,
            f"{v.workload}-{v.index}",
            v.state,
            "yes" if v.ready else "no",
            v.restart_count,
            v.target,
        ]
        if fmt is Format.WIDE:
            region, zone = topology[v.target]
            row += [
                region or "-",
                zone or "-",
                v.generation,
                v.container_name,
                ", ".join(v.endpoints),
                v.placement_reason or "-",
                v.message,
            ]
        rows.append(row)
    headers = ["NAMESPACE", "REPLICA", "STATE", "READY", "RESTARTS", "TARGET"]
    if fmt is Format.WIDE:
        headers += [
            "REGION",
            "ZONE",
            "GENERATION",
            "CONTAINER",
            "ENDPOINTS",
            "PLACED BECAUSE",
            "MESSAGE",
        ]
    table(headers, rows)


targets_cli.register(get_app)  # get targets, listed after get replicas


@get_app.command("services")
def get_services(
    namespace: NamespaceOpt = "default",
    all_namespaces: AllNamespacesOpt = False,
    output_format: OutputOpt = None,
) -> None:
    """Services (workloads with named ports): their ports, ingress listeners and endpoints."""
    _guard(lambda: _get_services(None if all_namespaces else namespace, output_format))


get_app.command("svc", hidden=True)(get_services)
get_app.command("service", hidden=True)(get_services)


def _get_services(namespace: str | None, fmt_text: str | None) -> None:
    from portway.controller.records import KIND_WORKLOAD
    from portway.controller.services import service_rows

    fmt = parse_format(fmt_text)
    service = _app()
    rows = service_rows(service.store.list(KIND_WORKLOAD, namespace))
    if fmt in (Format.JSON, Format.YAML):
        dump({"items": rows}, fmt)
        return

    def state(e: dict[str, Any]) -> str:
        return "draining" if e["draining"] else "ready" if e["ready"] else "not-ready"

    table_rows = []
    for r in rows:
        ready = sum(1 for e in r["endpoints"] if e["ready"] and not e["draining"])
        ingress = ", ".join(
            f"{i['listen']}/{i['mode']}"
            + (f" host={i['host']}" if i["host"] else "")
            + (f" path={i['pathPrefix']}" if i["pathPrefix"] else "")
            + f" -> {i['port']}"
            for i in r["ingress"]
        )
        ports = ", ".join(f"{k}:{v}" for k, v in r["ports"].items())
        row = [r["namespace"], r["name"], ports, ingress or "-", f"{ready}/{len(r['endpoints'])}"]
        if fmt is Format.WIDE:
            row.append(
                ", ".join(
                    f"{e['replica']}@{e['target']} {e['address']}:{e['port']} {state(e)}"
                    for e in r["endpoints"]
                )
                or "-"
            )
        table_rows.append(row)
    headers = ["NAMESPACE", "NAME", "PORTS", "INGRESS", "READY"]
    if fmt is Format.WIDE:
        headers.append("ENDPOINTS")
    table(headers, table_rows)


@get_app.command("events")
def get_events(
    workload: Annotated[str | None, typer.Argument()] = None,
    namespace: NamespaceOpt = "default",
    limit: Annotated[int, typer.Option(help="Newest N events.")] = 50,
    output_format: OutputOpt = None,
) -> None:
    """Recent events (scheduled, started, exited, restarted, removed, failed, ...)."""
    _guard(lambda: _get_events(workload, namespace, limit, output_format))


def _get_events(workload: str | None, namespace: str, limit: int, fmt_text: str | None) -> None:
    fmt = parse_format(fmt_text)
    events = _reads().events(
        kind=None, namespace=namespace if workload else None, name=workload, limit=limit
    )
    if fmt in (Format.JSON, Format.YAML):
        dump({"items": [e.__dict__ for e in events]}, fmt)
        return
    table(
        ["AGE", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        [[age(e.ts), e.type, e.reason, f"{e.kind.lower()}/{e.name}", e.message] for e in events],
    )


# --- describe ---------------------------------------------------------------


@describe_app.command("workload")
def describe_workload(
    name: Annotated[str, typer.Argument()],
    namespace: NamespaceOpt = "default",
) -> None:
    """Spec, status, replicas and recent events of one workload."""
    _guard(lambda: _describe(name, namespace))


describe_app.command("wl", hidden=True)(describe_workload)


def _describe(name: str, namespace: str) -> None:
    import yaml

    reads = _reads()
    record, workload = reads.resolve_workload(namespace, name)
    status = record.status
    counts = status.get("replicas", {})
    p = output.out.print
    p(f"Name:          {name}", markup=False)
    p(f"Namespace:     {namespace}", markup=False)
    p(f"Labels:        {output.labels_text(workload.metadata.labels)}", markup=False)
    p(f"Created:       {age(record.created_at)} ago", markup=False)
    p(
        f"Generation:    {record.generation} (template {record.spec.get('templateGeneration')}, "
        f"observed {status.get('observedGeneration', '-')})",
        markup=False,
    )
    p(f"Target:        {status.get('target', '-')}", markup=False)
    p(
        f"Phase:         {'Deleting' if record.deleting else status.get('phase', 'Pending')}",
        markup=False,
    )
    p(
        f"Replicas:      {workload.spec.replicas} desired | {counts.get('updated', 0)} updated | "
        f"{counts.get('ready', 0)} ready | {counts.get('available', 0)} available",
        markup=False,
    )
    if status.get("message"):
        p(f"Message:       {status['message']}", markup=False)
    degraded = record.spec.get("degradations") or []
    p(f"Portability:   {workload.spec.portability.value}", markup=False)
    if degraded:
        p(f"Degradations:  {len(degraded)} (accepted in lenient mode)", markup=False)
        for item in degraded:
            p(
                f"  {item['path']} {item['verdict']} on {item['target']}: {item['reason']}",
                markup=False,
            )
    p("Spec:", markup=False)
    spec_yaml = yaml.safe_dump(record.spec["workload"]["spec"], sort_keys=False)
    for line in spec_yaml.splitlines():
        p(f"  {line}", markup=False)
    p("Replicas:", markup=False)
    table(
        ["  INDEX", "STATE", "READY", "RESTARTS", "LAST EXIT", "CONTAINER", "ENDPOINTS"],
        [
            [
                f"  {v.index}",
                v.state,
                "yes" if v.ready else "no",
                v.restart_count,
                f"{v.last_reason} ({v.last_exit_code})" if v.last_reason else "-",
                v.container_name,
                ", ".join(v.endpoints),
            ]
            for v in reads.replicas_of(namespace, name)
        ],
    )
    p("Events:", markup=False)
    events = reads.events(kind="Workload", namespace=namespace, name=name, limit=25)
    table(
        ["  AGE", "TYPE", "REASON", "MESSAGE"],
        [[f"  {age(e.ts)}", e.type, e.reason, e.message] for e in events],
    )


# --- logs / exec ------------------------------------------------------------


@app.command()
def logs(
    name: Annotated[str, typer.Argument(help="Workload name.")],
    namespace: NamespaceOpt = "default",
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep streaming, across replacements.")
    ] = False,
    replica: Annotated[int | None, typer.Option(help="Only this replica index.")] = None,
    target: Annotated[str | None, typer.Option(help="Only replicas on this target.")] = None,
    tail: Annotated[int | None, typer.Option(help="Last N lines per replica.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only newer lines: a duration (10m, 1h) or RFC 3339 time.")
    ] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t")] = False,
    prefix: Annotated[bool, typer.Option(help="[workload-replica target] before lines.")] = False,
    output_format: Annotated[str | None, typer.Option("--output", "-o", help="json.")] = None,
) -> None:
    """Print the logs of all a workload's replicas on all targets, merged in time
    order (prefixed and timestamped when several replicas speak)."""
    from portway.cli import logs as logs_cli

    def run() -> None:
        if output_format not in (None, "", "json"):
            raise InputError(f"-o {output_format}: expected json (or nothing for text)")
        style = logs_cli.LogStyle(
            json_lines=output_format == "json", timestamps=timestamps, prefix=prefix
        )
        client = _remote()
        if client is not None:
            code = remote_cli.logs(
                client, name, namespace, follow, replica, tail, style, since=since, target=target
            )
            raise typer.Exit(code)
        raise typer.Exit(_logs_local(name, namespace, follow, replica, target, tail, since, style))

    _guard(run)


def _logs_local(
    name: str,
    namespace: str,
    follow: bool,
    replica: int | None,
    target: str | None,
    tail: int | None,
    since: str | None,
    style: Any,
) -> int:
    from datetime import UTC, datetime

    from portway.cli import logs as logs_cli
    from portway.service import logview
    from portway.service.logmerge import parse_since

    service = _app()
    query = logview.LogQuery(
        namespace,
        name,
        follow=follow,
        tail=tail,
        since=None if since is None else parse_since(since, datetime.now(UTC)),
        replica=replica,
        target=target,
    )
    view = logview.LogView(service, query)
    style = logs_cli.decorated(style, view.speakers(), replica)
    printer = logs_cli.LogPrinter(style)
    try:
        for batch in view:
            printer.write(batch)
    except KeyboardInterrupt:
        view.close()
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly
        view.close()
        logs_cli.silence_stdout()
        return 0
    for problem in view.errors:
        source = problem.source
        output.err.print(
            f"error: replica {source.replica} on {source.target}: {problem.message}", markup=False
        )
    return 1 if view.errors else 0


@app.command(
    name="exec",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def exec_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Workload name.")],
    namespace: NamespaceOpt = "default",
    replica: Annotated[int, typer.Option(help="Replica index.")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds before the command is abandoned.")] = 60.0,
) -> None:
    """Run a command in a replica: portway exec NAME -- CMD [ARGS...]."""
    command = list(ctx.args)
    _guard(lambda: _exec(name, namespace, replica, command, timeout))


def _exec(name: str, namespace: str, replica: int, command: list[str], timeout: float) -> None:
    from portway.service import operations

    if not command:
        raise InputError("no command given; usage: portway exec NAME -- CMD [ARGS...]")
    client = _remote()
    if client is not None:
        raise typer.Exit(remote_cli.exec_in(client, name, namespace, replica, command, timeout))
    service = _app()
    result = operations.exec_in(service, namespace, name, replica, command, timeout)
    sys.stdout.buffer.write(result.output)
    sys.stdout.flush()
    raise typer.Exit(result.exit_code)


# --- conformance -------------------------------------------------------------


@app.command()
def conformance(
    target: Annotated[
        list[str] | None, typer.Option("--target", "-t", help="Targets to test (default: all).")
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Case ids, groups or globs (e.g. probes.*)."),
    ] = None,
    output_format: Annotated[
        str | None, typer.Option("--output", "-o", help="markdown or json.")
    ] = None,
    write_matrix: Annotated[
        bool,
        typer.Option("--write-matrix", help="Keep the results as the planner's capability matrix."),
    ] = False,
    tier: Annotated[
        list[str] | None,
        typer.Option(
            "--tier", help="Isolation tiers to test (default: every tier each target offers)."
        ),
    ] = None,
) -> None:
    """Run the behaviour cases against real targets and print the capability
    matrix; the planner's "honored" verdicts come from the kept matrix. Each
    isolation tier of a target is its own column (docker, docker@sandboxed)."""
    _guard(lambda: _conformance(target or [], only, output_format, write_matrix, tier or []))


def _conformance(
    names: list[str],
    only: list[str] | None,
    fmt_text: str | None,
    keep: bool,
    tiers: list[str],
) -> None:
    import json

    from portway import conformance as suite

    if fmt_text not in (None, "markdown", "json"):
        raise InputError(f"-o {fmt_text}: expected markdown or json")
    service = _app()
    views = service.target_views()
    if names:
        known = {v.name for v in views}
        unknown = sorted(set(names) - known)
        if unknown:
            raise InputError(
                f"no target named {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        views = [v for v in views if v.name in names]
    if not views:
        raise InputError("no targets to test: see `portway get targets`")
    pairs = [(v.name, service.targets.driver(v)) for v in views]

    def progress(target_name: str, result: Any) -> None:
        mark = {"pass": "ok  ", "fail": "FAIL", "unsupported": "n/a "}[result.outcome.value]
        line = f"{mark} {target_name:<16} {result.case_id:<40} {result.duration:5.1f}s"
        if result.outcome.value != "pass":
            line += f"  {result.message.splitlines()[0][:150] if result.message else ''}"
        output.err.print(line, markup=False)

    known_tiers = {t.value for t in Isolation}
    bad = sorted(set(tiers) - known_tiers)
    if bad:
        raise InputError(f"--tier {bad[0]}: expected one of {', '.join(sorted(known_tiers))}")
    results = []
    for pair in pairs:
        offered = pair[1].capabilities().isolation_tiers
        chosen = [t for t in tiers if t in offered] if tiers else sorted(offered)
        for t in sorted(set(tiers) - offered):
            output.err.print(f"skip   {pair[0]:<16} tier {t}: not offered", markup=False)
        results += suite.conformance([pair], only=only, progress=progress, tiers=chosen)
    json_path, md_path = suite.kept_matrix_paths()
    matrix = suite.matrix_of(results, suite.load_matrix(json_path))
    if keep:
        partial = [r.target for r in results if not r.complete]
        if partial:
            raise InputError("--write-matrix needs full runs (drop --only)")
        suite.write_matrix(matrix, json_path, md_path)
        output.err.print(
            f"kept the matrix in {json_path}" + (f" and {md_path}" if md_path else ""), markup=False
        )
    if fmt_text == "json":
        sys.stdout.write(json.dumps(matrix.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(suite.render_markdown(matrix))
    for result in results:
        output.err.print(
            f"{result.target} ({result.column}): {result.passed} passed, {result.failed} failed, "
            f"{result.unsupported} not declared, in {result.duration:.0f}s",
            markup=False,
        )
    if any(r.failed for r in results):
        raise typer.Exit(1)


# --- schema / controller / version ---------------------------------------------


@app.command()
def schema() -> None:
    """Print the JSON Schema of the workload file format."""
    import json

    from portway.spec.schema import workload_json_schema

    sys.stdout.write(json.dumps(workload_json_schema(), indent=2) + "\n")


@app.command()
def controller(
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the reconcile loop in the foreground until interrupted."""
    _guard(lambda: _controller(verbose))


def _controller(verbose: bool) -> None:
    from portway.controller.runner import Controller

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    service = _app()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    loop = Controller(service.store, targets=service.targets, ingress_home=service.settings.home)
    output.err.print(f"controller {loop.holder} starting; Ctrl-C stops it", markup=False)
    loop.run_forever(stop)


@app.command()
def whoami(output_format: OutputOpt = None) -> None:
    """Who the current context's token speaks for, and its role bindings."""

    def go() -> None:
        fmt = parse_format(output_format)
        client = _remote()
        if client is not None:
            remote_cli.whoami(client, fmt)
            return
        local = {
            "user": "",
            "tokenName": "",
            "context": "local",
            "note": "embedded store: no token; whoever can open the store file has full access",
        }
        if fmt in (Format.JSON, Format.YAML):
            dump(local, fmt)
        else:
            output.out.print(f"local ({local['note']})", markup=False)

    _guard(go)


@app.command()
def version() -> None:
    """Print portway's version."""
    from portway import __version__

    output.out.print(f"portway {__version__}")


def run() -> None:
    """Console-script entry point."""
    start = time.monotonic()
    try:
        app()
    finally:
        logging.getLogger(__name__).debug("took %.3fs", time.monotonic() - start)
