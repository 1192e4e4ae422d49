"""Policy commands: ``get namespaces``, ``describe namespace``, ``audit``,
and how ``apply``/``plan`` show namespace policy results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer

from portway.cli import output
from portway.cli.output import Format, age, dump, parse_format, table

OutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="wide, json or yaml.")]


def register(app: typer.Typer, get_app: typer.Typer, describe_app: typer.Typer) -> None:
    get_app.command("namespaces")(get_namespaces)
    get_app.command("namespace", hidden=True)(get_namespaces)
    get_app.command("ns", hidden=True)(get_namespaces)
    describe_app.command("namespace")(describe_namespace)
    describe_app.command("ns", hidden=True)(describe_namespace)
    app.command()(audit)


def _guard(fn: Any) -> None:
    from portway.cli.main import _guard as guard

    guard(fn)


def _app() -> Any:
    from portway.cli.main import _app as make

    return make()


# --- apply / plan ------------------------------------------------------------------


def report_namespaces(written: Sequence[Any]) -> None:
    """What ``apply`` did with each namespace, and which running workloads the
    new policy would refuse (they keep running; new replicas are refused)."""
    for item in written:
        output.out.print(f"namespace/{item.namespace.name} {item.outcome}", markup=False)
        if item.violators:
            output.err.print(
                f"warning: existing workloads violate the policy of namespace "
                f"{item.namespace.name} (they keep running; new replicas will be refused):",
                markup=False,
            )
            for line in item.violators:
                output.err.print(f"  {line}", markup=False)


def policy_json(plan: Any) -> list[dict[str, str]]:
    return [{"path": v.path, "rule": v.rule, "message": v.message} for v in plan.policy]


def print_policy(plan: Any) -> None:
    namespace = plan.workload.metadata.namespace
    if not plan.policy:
        output.out.print(f"  policy: [green]allowed[/] by namespace {namespace}")
        return
    output.out.print(
        f"  policy: [red]refused[/] by namespace {namespace} ({len(plan.policy)} violation(s))"
    )
    for v in plan.policy:
        output.out.print(f"    {v.path}: {v.message} [{v.rule}]", markup=False)


# --- get / describe -------------------------------------------------------------------


def _policy_dict(info: Any) -> dict[str, Any]:
    return {
        "name": info.name,
        "source": "object" if info.explicit else "defaults",
        "spec": info.policy.model_dump(mode="json", by_alias=True, exclude_none=True),
        "workloads": info.workloads,
    }


def get_namespaces(output_format: OutputOpt = None) -> None:
    """List namespaces and their policy (objects, and namespaces only workloads name)."""
    _guard(lambda: _get_namespaces(output_format))


def _get_namespaces(fmt_text: str | None) -> None:
    from portway.service.namespaces import list_namespaces

    fmt = parse_format(fmt_text)
    infos = list_namespaces(_app())
    if fmt in (Format.JSON, Format.YAML):
        dump({"items": [_policy_dict(i) for i in infos]}, fmt)
        return
    headers = ["NAME", "POD-SECURITY", "DEFAULT-TIER", "MINIMUM-TIER", "WORKLOADS", "AGE"]
    if fmt is Format.WIDE:
        headers += ["HOST-PORTS", "IMAGES", "SOURCE"]
    rows = []
    for info in infos:
        policy = info.policy
        row: list[Any] = [
            info.name,
            policy.pod_security.value,
            policy.isolation.default.value,
            policy.isolation.minimum.value if policy.isolation.minimum else "-",
            len(info.workloads),
            age(info.created_at),
        ]
        if fmt is Format.WIDE:
            images = ",".join(policy.images.allowed_prefixes) or "any"
            if policy.images.require_digest:
                images += " (digest)"
            row += [
                ",".join(policy.host_ports) or "none",
                images,
                "object" if info.explicit else "defaults",
            ]
        rows.append(row)
    table(headers, rows)


def describe_namespace(name: Annotated[str, typer.Argument()]) -> None:
    """Show a namespace's policy, its workloads and what violates the policy now."""
    _guard(lambda: _describe_namespace(name))


def _describe_namespace(name: str) -> None:
    from portway.service.namespaces import get_namespace, running_violators

    service = _app()
    info = get_namespace(service, name)
    policy = info.policy
    p_ = output.out.print
    p_(f"Name:          {info.name}", markup=False)
    source = "Namespace object" if info.explicit else "defaults (no Namespace object)"
    p_(f"Policy from:   {source}", markup=False)
    p_(f"Pod security:  {policy.pod_security.value}", markup=False)
    minimum = policy.isolation.minimum.value if policy.isolation.minimum else "none"
    p_(f"Isolation:     default {policy.isolation.default.value}, minimum {minimum}", markup=False)
    prefixes = ", ".join(policy.images.allowed_prefixes) or "any"
    digest = "required" if policy.images.require_digest else "not required"
    p_(f"Images:        allowed prefixes {prefixes}; digest {digest}", markup=False)
    p_(f"Host ports:    {', '.join(policy.host_ports) or 'none'}", markup=False)
    p_(f"Workloads:     {', '.join(info.workloads) or '<none>'}", markup=False)
    violations = running_violators(service, name, policy)
    p_("Violations:" + ("" if violations else "    <none>"), markup=False)
    for line in violations:
        p_(f"  {line}", markup=False)


# --- audit -------------------------------------------------------------------------------


_LEVEL_STYLE = {"pass": "green", "warn": "yellow", "fail": "red"}


def audit(
    target: Annotated[
        list[str] | None, typer.Option("--target", "-t", help="Only these targets.")
    ] = None,
    output_format: OutputOpt = None,
) -> None:
    """Check running replicas against the CIS Docker Benchmark, section 5.

    Each replica's settings come from its engine. Exit code 1 when any rule
    fails (so CI can gate on it); warnings alone exit 0.
    """
    _guard(lambda: _audit(target or [], output_format))


def _audit(targets: list[str], fmt_text: str | None) -> None:
    from portway.service.audit import audit as run_audit

    fmt = parse_format(fmt_text)
    results = run_audit(_app(), targets)
    replicas = [r for t in results for r in t.replicas]
    counts = dict.fromkeys(("fail", "warn", "pass"), 0)
    for replica in replicas:
        for finding in replica.findings:
            counts[finding.level.value] += 1
    failed = counts["fail"] > 0 or any(r.error for r in replicas)
    if fmt in (Format.JSON, Format.YAML):
        dump(
            {
                "targets": [
                    {
                        "target": t.target,
                        "driver": t.driver,
                        "auditable": not t.not_auditable,
                        "reason": t.not_auditable,
                        "replicas": [
                            {
                                "workload": r.workload,
                                "replica": r.replica,
                                "container": r.container,
                                "error": r.error,
                                "findings": [
                                    {
                                        "rule": f.rule,
                                        "title": f.title,
                                        "level": f.level.value,
                                        "detail": f.detail,
                                    }
                                    for f in r.findings
                                ],
                            }
                            for r in t.replicas
                        ],
                    }
                    for t in results
                ],
                "summary": {**counts, "replicas": len(replicas)},
            },
            fmt,
        )
    else:
        _print_audit(results, fmt is Format.WIDE)
        audited = sum(1 for t in results if not t.not_auditable)
        output.out.print(
            f"{len(replicas)} replica(s) on {audited} target(s): {counts['fail']} fail, "
            f"{counts['warn']} warn, {counts['pass']} pass",
            markup=False,
        )
    if failed:
        raise typer.Exit(1)


def _print_audit(results: Sequence[Any], wide: bool) -> None:
    p_ = output.out.print
    for t in results:
        if t.not_auditable:
            p_(f"target {t.target} ({t.driver}): {t.not_auditable}", markup=False)
            continue
        if not t.replicas:
            p_(f"target {t.target} ({t.driver}): no running replicas", markup=False)
            continue
        for r in t.replicas:
            p_(
                f"[bold]{r.workload} replica {r.replica}[/bold] on {t.target} ({r.container})",
            )
            if r.error:
                p_(f"  error: {r.error}", markup=False)
                continue
            rows = []
            for f in r.findings:
                if f.level.value == "pass" and not wide:
                    continue  # passes only with -o wide: findings first
                style = _LEVEL_STYLE[f.level.value]
                rows.append([f"  {f.rule}", f"[{style}]{f.level.value}[/]", f.title, f.detail])
            if rows:
                table(["  RULE", "LEVEL", "TITLE", "DETAIL"], rows)
            passed = sum(1 for f in r.findings if f.level.value == "pass")
            if not wide:
                p_(f"  {passed} rule(s) pass (-o wide lists them)", markup=False)
