"""Access commands: ``portway token create|ls|revoke``, ``portway rolebinding
create|ls|delete`` and ``portway audit-log``.

Locally these act on the store directly: whoever can open the store file (or
the PostgreSQL URL) holds every key anyway. Each command body is one call of a
``_local_*`` function returning plain JSON data (the API's shapes), and one
``print_*`` function rendering it, so remote mode can swap the first for an
HTTP call and keep the second. Local changes are written to the audit log as
user ``local:<login>``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from portway.cli import output, remote_access
from portway.cli.output import Format, age, dump, parse_format, table
from portway.cli.remote_access import routed
from portway.errors import InputError

token_app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)
rolebinding_app = typer.Typer(
    help="Role bindings: give a user a role (viewer, deployer, admin) in a namespace "
    "('*' for every namespace; admin in '*' is cluster admin).",
    no_args_is_help=True,
)

OutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="json or yaml.")]
UserOpt = Annotated[str, typer.Option("--user", "-u", help="User name (a DNS-1123 label).")]
RoleOpt = Annotated[str, typer.Option("--role", "-r", help="viewer, deployer or admin.")]
NamespaceOpt = Annotated[
    str, typer.Option("--namespace", "-n", help="Namespace, or '*' for every namespace.")
]

JSON = dict[str, Any]


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
    app.add_typer(rolebinding_app, name="rolebinding")
    app.command("audit-log")(audit_log)


def _guard(fn: Any) -> None:
    from portway.cli.main import _guard as guard  # main imports this module first

    guard(fn)


def _app() -> Any:
    from portway.cli.main import _app as make

    return make()


def _say(text: str) -> None:
    output.out.print(text, markup=False)


def _note(text: str) -> None:
    output.err.print(text, markup=False)


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _pairs(roles: Sequence[str], namespaces: Sequence[str]) -> list[tuple[str, str]]:
    """``--role`` and ``--namespace`` given together, the n-th with the n-th."""
    if len(roles) != len(namespaces):
        raise InputError(
            f"--role given {len(roles)} time(s) and --namespace {len(namespaces)} time(s): "
            "give one --namespace for each --role (e.g. --role deployer --namespace team-a)"
        )
    return list(zip(roles, namespaces, strict=True))


def _record_local(
    service: Any, verb: str, resource: str, name: str, namespace: str, message: str
) -> None:
    from portway.service import auditlog

    entry = auditlog.AuditRecord(
        verb=verb,
        resource=resource,
        outcome=auditlog.Outcome.SUCCEEDED,
        status=0,
        user=auditlog.local_user(),
        namespace=namespace,
        name=name,
        message=message,
        remote="local",
    )
    auditlog.record(service, entry)


# --- token -----------------------------------------------------------------------


@token_app.command("create")
def token_create(
    user: UserOpt,
    role: Annotated[
        list[str] | None,
        typer.Option("--role", "-r", help="viewer, deployer or admin; repeatable, with -n."),
    ] = None,
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--namespace", "-n", help="Namespace for the --role at the same position, or '*'."
        ),
    ] = None,
    ttl: Annotated[str, typer.Option(help="Lifetime: 90s, 30m, 24h, 7d, or 'never'.")] = "never",
    name: Annotated[
        str | None, typer.Option(help="A label for the token (default: the user name).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the token to this file (mode 0600) instead of stdout."),
    ] = None,
) -> None:
    """Create a token for USER, first binding USER to each --role/--namespace pair.
    The token is shown once; only its hash is stored."""
    create = routed(_local_token_create, remote_access.token_create)
    _guard(
        lambda: print_token_created(
            *create(user, _pairs(role or [], namespace or []), ttl, name), out
        )
    )


def _local_token_create(
    user: str, pairs: Sequence[tuple[str, str]], ttl: str, name: str | None
) -> tuple[str, JSON]:
    from portway.access.tokens import parse_ttl
    from portway.service import access

    ttl_seconds = parse_ttl(ttl)
    service = _app()
    token, info = access.create_token(service, user, name, ttl_seconds, pairs)
    roles = ", ".join(b.describe() for b in info.bindings) or "no roles"
    message = f"token {info.name} for user {user} ({roles})"
    _record_local(service, "create", "tokens", info.id, "", message)
    return token, info.to_json()


def print_token_created(token: str, info: Mapping[str, Any], out: Path | None) -> None:
    """The token goes to stdout alone (so ``$(portway token create …)`` works)
    or to ``out``; what it is goes to stderr."""
    from portway.service.access import write_secret_file

    bindings = ", ".join(f"{b['role']} in {b['namespace']}" for b in info["bindings"]) or "none"
    expires = _when(info.get("expiresAt"))
    _note(
        f"token {info['id']} ({info['name']}) for user {info['user']}, expires {expires}, "
        f"roles: {bindings}"
    )
    if out is None:
        _say(token)
        _note("this is the only time the token is shown; store it now")
    else:
        write_secret_file(out, token)
        _note(f"token written to {out} (mode 0600)")


@token_app.command("ls")
def token_ls(
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user's.")] = None,
    output_format: OutputOpt = None,
) -> None:
    """List tokens (never the tokens themselves): id, name, user, created,
    expires, revoked, and the user's role bindings."""
    listing = routed(_local_token_ls, remote_access.token_ls)
    _guard(lambda: print_tokens(listing(user), parse_format(output_format)))


def _local_token_ls(user: str | None) -> list[JSON]:
    from portway.service import access

    return [t.to_json() for t in access.list_tokens(_app(), user)]


def print_tokens(items: Sequence[Mapping[str, Any]], fmt: Format) -> None:
    if fmt in (Format.JSON, Format.YAML):
        dump({"items": list(items)}, fmt)
        return
    rows = []
    for t in items:
        state = "revoked" if t["revoked"] else "expired" if t.get("expired") else "active"
        bindings = ",".join(f"{b['role']}@{b['namespace']}" for b in t["bindings"]) or "<none>"
        rows.append(
            [
                t["id"],
                t["name"],
                t["user"],
                state,
                age(t["createdAt"]),
                _when(t["expiresAt"]),
                bindings,
            ]
        )
    table(["ID", "NAME", "USER", "STATE", "AGE", "EXPIRES", "BINDINGS"], rows)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="Token id (see 'token ls').")],
) -> None:
    """Revoke a token: it stops working within a second everywhere."""
    revoke = routed(_local_token_revoke, remote_access.token_revoke)
    _guard(lambda: print_token_revoked(revoke(token_id)))


def _local_token_revoke(token_id: str) -> JSON:
    from portway.service import access

    service = _app()
    info = access.revoke_token(service, token_id)
    _record_local(service, "delete", "tokens", info.id, "", f"revoked token {info.name}")
    return info.to_json()


def print_token_revoked(info: Mapping[str, Any]) -> None:
    _say(f"token/{info['id']} ({info['name']}, user {info['user']}) revoked")


# --- rolebinding -----------------------------------------------------------------


@rolebinding_app.command("create")
def rolebinding_create(user: UserOpt, role: RoleOpt, namespace: NamespaceOpt) -> None:
    """Give USER a role in a namespace (every token of USER gets it)."""
    bind = routed(_local_bind, remote_access.bind)
    _guard(lambda: print_binding_change(bind(user, role, namespace)))


def _local_bind(user: str, role: str, namespace: str) -> JSON:
    from portway.service import access

    service = _app()
    binding, created = access.bind(service, user, role, namespace)
    [data] = access.bindings_json([binding])
    if created:
        _record_local(service, "create", "rolebindings", f"{user}.{role}", namespace, "bound")
    return {**data, "outcome": "created" if created else "unchanged"}


@rolebinding_app.command("delete")
def rolebinding_delete(user: UserOpt, role: RoleOpt, namespace: NamespaceOpt) -> None:
    """Take a role away from USER in a namespace."""
    unbind = routed(_local_unbind, remote_access.unbind)
    _guard(lambda: print_binding_change(unbind(user, role, namespace)))


def _local_unbind(user: str, role: str, namespace: str) -> JSON:
    from portway.service import access

    service = _app()
    [data] = access.bindings_json([access.unbind(service, user, role, namespace)])
    _record_local(service, "delete", "rolebindings", f"{user}.{role}", namespace, "unbound")
    return {**data, "outcome": "deleted"}


def print_binding_change(data: Mapping[str, Any]) -> None:
    _say(f"rolebinding/{data['user']}.{data['role']}.{data['namespace']} {data['outcome']}")


@rolebinding_app.command("ls")
def rolebinding_ls(
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user's.")] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Only bindings in this namespace.")
    ] = None,
    output_format: OutputOpt = None,
) -> None:
    """List role bindings."""
    listing = routed(_local_bindings, remote_access.bindings)
    _guard(lambda: print_bindings(listing(user, namespace), parse_format(output_format)))


def _local_bindings(user: str | None, namespace: str | None) -> list[JSON]:
    from portway.service import access

    return [dict(b) for b in access.bindings_json(access.list_bindings(_app(), user, namespace))]


def print_bindings(items: Sequence[Mapping[str, Any]], fmt: Format) -> None:
    if fmt in (Format.JSON, Format.YAML):
        dump({"items": list(items)}, fmt)
        return
    table(["USER", "ROLE", "NAMESPACE"], [[b["user"], b["role"], b["namespace"]] for b in items])


# --- audit-log -------------------------------------------------------------------


def audit_log(
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user's.")] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Only this namespace's.")
    ] = None,
    limit: Annotated[int, typer.Option(help="The newest N entries (1 to 10000).")] = 100,
    output_format: OutputOpt = None,
) -> None:
    """Show the audit log: every mutating API request and every denied attempt,
    oldest first (the newest --limit ones)."""
    entries = routed(_local_audit, remote_access.audit)
    _guard(lambda: print_audit(entries(user, namespace, limit), parse_format(output_format)))


def _local_audit(user: str | None, namespace: str | None, limit: int) -> list[JSON]:
    from portway.service import auditlog

    filters = auditlog.AuditFilter(user=user, namespace=namespace, limit=limit)
    return [auditlog.entry_json(e) for e in auditlog.entries(_app(), filters)]


def print_audit(items: Sequence[Mapping[str, Any]], fmt: Format) -> None:
    if fmt in (Format.JSON, Format.YAML):
        dump({"items": list(items)}, fmt)
        return
    rows = [
        [
            _when(e["ts"]),
            e["user"] or "<unauthenticated>",
            e["verb"],
            e["resource"],
            e["namespace"] or "-",
            e["name"] or "-",
            e["outcome"],
            e["status"] or "-",
            e["remote"] or "-",
            e["message"],
        ]
        for e in items
    ]
    table(
        [
            "TIME",
            "USER",
            "VERB",
            "RESOURCE",
            "NAMESPACE",
            "NAME",
            "OUTCOME",
            "STATUS",
            "REMOTE",
            "MESSAGE",
        ],
        rows,
    )
