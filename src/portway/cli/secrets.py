"""``portway secret create|ls|rm``: values go in, only names come out.

Like ``kubectl create secret generic``: ``create`` refuses a name that
exists; ``create --update`` replaces all its values (keys not given are
dropped), and workloads using it roll only if a value changed.

With a context in use, the server does the work (cli/remote_secrets.py):
files are read here and their bytes sent base64-encoded over the API; the
answers, local or remote, are the API's JSON, rendered by one printer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from portway.cli import output, remote_secrets
from portway.cli.output import Format, age, dump, parse_format, table
from portway.cli.remote_access import routed
from portway.errors import InputError, Issue

secret_app = typer.Typer(
    help="Secrets: encrypted at rest, delivered into replicas as tmpfs files.",
    no_args_is_help=True,
)

NamespaceOpt = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the secret.")]
OutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="wide, json or yaml.")]

JSON = dict[str, Any]


def _guard(fn: Any) -> None:
    from portway.cli.main import _guard as guard

    guard(fn)


def _app() -> Any:
    from portway.cli.main import _app as make

    return make()


def read_sources(from_files: list[str], from_literals: list[str]) -> dict[str, bytes]:
    """``[KEY=]FILE`` and ``KEY=VALUE`` items -> key -> value; every problem
    (missing file, bad item, a key given twice) reported at once."""
    data: dict[str, bytes] = {}
    issues: list[Issue] = []

    def put(key: str, value: bytes, flag: str) -> None:
        if key in data:
            issues.append(Issue(f"key {key!r} is given twice", path=flag))
        data[key] = value

    for item in from_files:
        key, sep, name = item.partition("=")
        path = Path(name if sep else item)
        key = key if sep else path.name
        if not key or not str(path):
            issues.append(Issue(f"{item!r}: expected [KEY=]FILE", path="--from-file"))
            continue
        try:
            put(key, path.read_bytes(), "--from-file")
        except OSError as exc:
            issues.append(Issue(f"{path}: cannot read ({exc.strerror or exc})", path="--from-file"))
    for item in from_literals:
        key, sep, value = item.partition("=")
        if not sep or not key:
            # never echo the item: it may be the value itself
            issues.append(Issue("expected KEY=VALUE", path="--from-literal"))
            continue
        put(key, value.encode(), "--from-literal")
    if issues:
        raise InputError(issues)
    if not data:
        raise InputError(
            Issue("give at least one --from-file [KEY=]FILE or --from-literal KEY=VALUE")
        )
    return data


def create(
    name: Annotated[str, typer.Argument(help="Secret name (DNS-1123 label).")],
    from_file: Annotated[
        list[str] | None,
        typer.Option(
            "--from-file",
            help="[KEY=]FILE: the file's bytes under KEY (default: the file's name). Repeatable.",
        ),
    ] = None,
    from_literal: Annotated[
        list[str] | None,
        typer.Option(
            "--from-literal",
            help="KEY=VALUE (repeatable). The value lands in your shell history: prefer files.",
        ),
    ] = None,
    namespace: NamespaceOpt = "default",
    update: Annotated[
        bool,
        typer.Option("--update", help="Replace the values of an existing secret (all keys)."),
    ] = False,
) -> None:
    """Create a secret (or, with --update, replace its values)."""
    _guard(lambda: _create(name, from_file or [], from_literal or [], namespace, update))


def _create(
    name: str, from_files: list[str], from_literals: list[str], namespace: str, update: bool
) -> None:
    data = read_sources(from_files, from_literals)  # files are read here, in either mode
    write = routed(_local_write, remote_secrets.write)
    info, outcome = write(namespace, name, data, update)
    output.out.print(
        f"secret/{name} {outcome} in namespace {namespace} "
        f"(keys: {', '.join(info['keys'])}; version {info['version']})",
        markup=False,
    )


def _local_write(
    namespace: str, name: str, data: dict[str, bytes], update: bool
) -> tuple[JSON, str]:
    """(the secret's info as the API shows it, created|configured|unchanged)."""
    from portway.service import secrets as svc

    service = _app()
    before = None
    if update:
        before = next((i for i in svc.list_secrets(service, namespace) if i.name == name), None)
        info = svc.create_or_update(service, namespace, name, data)
    else:
        info = svc.create(service, namespace, name, data)
    if before is None:
        outcome = "created"
    elif before.version == info.version and before.keys == info.keys:
        outcome = "unchanged"
    else:
        outcome = "configured"
    return info.to_json(), outcome


def list_command(
    namespace: NamespaceOpt = "default",
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="List across all namespaces.")
    ] = False,
    output_format: OutputOpt = None,
) -> None:
    """List secrets: names, keys, sizes and versions (never values)."""
    _guard(lambda: _list(None if all_namespaces else namespace, output_format))


def _list(namespace: str | None, fmt_text: str | None) -> None:
    fmt = parse_format(fmt_text)
    infos = routed(_local_list, remote_secrets.listing)(namespace)
    if fmt in (Format.JSON, Format.YAML):
        dump({"items": infos}, fmt)
        return
    rows = [
        [
            i["namespace"],
            i["name"],
            ",".join(f"{k}({i['sizes'][k]}B)" for k in i["keys"]),
            i["version"],
            age(i["createdAt"]),
        ]
        for i in infos
    ]
    table(["NAMESPACE", "NAME", "KEYS", "VERSION", "AGE"], rows)


def _local_list(namespace: str | None) -> list[JSON]:
    from portway.service import secrets as svc

    return [i.to_json() for i in svc.list_secrets(_app(), namespace)]


def remove(
    name: Annotated[str, typer.Argument(help="Secret name.")],
    namespace: NamespaceOpt = "default",
) -> None:
    """Remove a secret (refused while a workload uses it)."""
    _guard(lambda: _remove(name, namespace))


def _remove(name: str, namespace: str) -> None:
    routed(_local_remove, remote_secrets.remove)(namespace, name)
    output.out.print(f"secret/{name} removed from namespace {namespace}", markup=False)


def _local_remove(namespace: str, name: str) -> None:
    from portway.service import secrets as svc

    svc.delete(_app(), namespace, name)


secret_app.command("create")(create)
secret_app.command("ls")(list_command)
secret_app.command("list", hidden=True)(list_command)
secret_app.command("rm")(remove)
secret_app.command("delete", hidden=True)(remove)
