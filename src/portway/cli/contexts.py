"""``portway context add|use|ls|rm|current``: which server the CLI talks to.

With no context in use the CLI works on the embedded store and the local
engines, as it always did; with one, the commands that make sense remotely
go to that server (cli/remote.py) and the rest refuse with exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from portway.cli import output
from portway.client.config import (
    CONTEXT_ENV,
    LOCAL,
    Context,
    ContextConfig,
    check_name,
    check_server,
    config_path,
    load_config,
    save_config,
)
from portway.errors import InputError

if TYPE_CHECKING:  # httpx loads only when a context is in use
    from portway.client.http import PortwayClient

context_app = typer.Typer(
    help="Name servers to talk to (contexts) and choose one; without one the CLI "
    "uses the embedded local store.",
    no_args_is_help=True,
)

#: ``portway --context NAME``: set by the main callback for this one invocation
_override: str | None = None


def set_override(name: str | None) -> None:
    global _override
    _override = name


def active_context() -> Context | None:
    """The context commands use now (None: the embedded local store)."""
    return load_config().active(_override)


def active_name() -> str:
    context = active_context()
    return context.name if context else LOCAL


#: the client of this invocation, closed when the command ends (main's callback)
_open: dict[str, PortwayClient] = {}


def open_client() -> PortwayClient | None:
    """The client of the context in use (one per invocation), or None: local."""
    context = active_context()
    if context is None:
        return None
    if context.name not in _open:
        _open[context.name] = client_for(context)
    return _open[context.name]


def close_clients() -> None:
    while _open:
        _open.popitem()[1].close()


def client_for(context: Context) -> PortwayClient:
    from portway import tracing
    from portway.client.http import PortwayClient

    return PortwayClient(
        context.server,
        context.read_token(),
        ca_file=context.ca_file,
        insecure=context.insecure,
        per_request_headers=tracing.propagation_headers,
    )


def _guard(fn: typer.models.CommandFunctionType) -> None:
    from portway.cli.main import _guard as guard  # main imports this module first

    guard(fn)


def _say(text: str) -> None:
    output.out.print(text, markup=False)


@context_app.command("add")
def context_add(
    name: Annotated[str, typer.Argument(help="Context name, e.g. prod.")],
    server: Annotated[str, typer.Option(help="Server URL, e.g. https://cp.example:8443.")],
    token_file: Annotated[
        Path, typer.Option("--token-file", help="File holding the bearer token (keep it 0600).")
    ],
    ca_file: Annotated[
        Path | None, typer.Option("--ca-file", help="CA certificate (PEM) the server's TLS uses.")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Do not verify the server's TLS certificate.")
    ] = False,
    use: Annotated[bool, typer.Option("--use", help="Also make it the current context.")] = False,
) -> None:
    """Add (or replace) a context. The token stays in its file; the config only names it."""

    def go() -> None:
        check_name(name)
        url = check_server(server)
        token_path = token_file.expanduser().absolute()
        context = Context(
            name=name,
            server=url,
            token_file=token_path,
            ca_file=ca_file.expanduser().absolute() if ca_file else None,
            insecure=insecure,
        )
        context.read_token()  # fail now, not at the first command
        if context.ca_file is not None and not context.ca_file.is_file():
            raise InputError(f"--ca-file {context.ca_file}: no such file")
        if insecure and url.startswith("http://"):
            raise InputError("--insecure: only meaningful for an https:// server")
        config = load_config()
        existed = name in config.contexts
        config = config.with_context(context)
        if use:
            config = config.using(name)
        path = save_config(config)
        _say(f"context/{name} {'replaced' if existed else 'added'} ({url}) in {path}")
        if use:
            _say(f"now using context {name}")

    _guard(go)


@context_app.command("use")
def context_use(
    name: Annotated[str | None, typer.Argument(help="Context name.")] = None,
    local: Annotated[
        bool, typer.Option("--local", help="Back to the embedded local store.")
    ] = False,
) -> None:
    """Make NAME the current context (or --local: the embedded store)."""

    def go() -> None:
        if (name is None) == (not local):
            raise InputError("give a context name or --local (not both)")
        config = load_config()
        save_config(config.using(None if local else name))
        _say("now using the embedded local store" if local else f"now using context {name}")
        import os

        if os.environ.get(CONTEXT_ENV):
            output.err.print(
                f"note: {CONTEXT_ENV}={os.environ[CONTEXT_ENV]} overrides this in this shell",
                markup=False,
            )

    _guard(go)


@context_app.command("ls")
def context_ls(
    output_format: Annotated[
        str | None, typer.Option("--output", "-o", help="json or yaml.")
    ] = None,
) -> None:
    """List contexts; the current one is marked with *."""

    def go() -> None:
        fmt = output.parse_format(output_format)
        config = load_config()
        current = active_name()
        if fmt in (output.Format.JSON, output.Format.YAML):
            output.dump({**config.to_json(), "active": current}, fmt)
            return
        rows = [["*" if current == LOCAL else "", LOCAL, "(embedded store)", "", ""]]
        for name, c in sorted(config.contexts.items()):
            tls = "insecure" if c.insecure else (str(c.ca_file) if c.ca_file else "system CAs")
            if c.server.startswith("http://"):
                tls = "none"
            rows.append(["*" if current == name else "", name, c.server, str(c.token_file), tls])
        output.table(["CURRENT", "NAME", "SERVER", "TOKEN FILE", "TLS"], rows)

    _guard(go)


@context_app.command("rm")
def context_rm(name: Annotated[str, typer.Argument(help="Context name.")]) -> None:
    """Remove a context (the token file is left alone)."""

    def go() -> None:
        config = load_config()
        was_current = config.current == name
        save_config(config.without(name))
        _say(
            f"context/{name} removed"
            + ("; now using the embedded local store" if was_current else "")
        )

    _guard(go)


@context_app.command("current")
def context_current() -> None:
    """Print the context in use (``local`` for the embedded store) and why."""

    def go() -> None:
        import os

        context = active_context()
        if context is None:
            _say(LOCAL)
            return
        source = (
            "--context"
            if _override
            else f"{CONTEXT_ENV}"
            if os.environ.get(CONTEXT_ENV)
            else str(config_path())
        )
        _say(f"{context.name} ({context.server}, token file {context.token_file}; from {source})")

    _guard(go)


def load() -> ContextConfig:
    return load_config()
