"""``apply -f`` of a Compose file or Kubernetes manifests against a server.

The files are read here, as locally: the paths they name (env files,
secret and config files, ``--image-map``) are on this machine, as with
``docker compose`` pointed at a remote engine. What goes to the server is
what the file translates to: its secrets (PUT, created or replaced) and
then its workloads as portway documents through the same apply as
``apply -f workload.yaml``. The server decides the rest: its namespace
policy, placement and portability.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portway.cli import output
from portway.cli import remote as remote_cli
from portway.errors import InputError, Issue

if TYPE_CHECKING:
    from portway.cli.compose import ComposeArgs
    from portway.client.http import PortwayClient
    from portway.service.namespaces import SourcedNamespace
    from portway.service.workloads import Sourced

__all__ = ["apply_compose", "apply_kubernetes", "plan_translated"]


def _say(text: str) -> None:
    output.out.print(text, markup=False)


def _documents(
    workloads: Sequence[Sourced], namespaces: Sequence[SourcedNamespace] = ()
) -> list[dict[str, Any]]:
    """Namespaces first, as in a file: the server applies a namespace's
    policy before judging the workloads in it."""
    objects: list[Any] = [n.namespace for n in namespaces] + [w.workload for w in workloads]
    return [o.model_dump(mode="json", by_alias=True, exclude_none=True) for o in objects]


def _submit(
    client: PortwayClient,
    file: Path,
    workloads: Sequence[Sourced],
    namespaces: Sequence[SourcedNamespace] = (),
    locate: Callable[[Sourced, str, str], Issue] | None = None,
) -> list[tuple[str, str, int]]:
    """``remote.submit`` of what the file translates to. The server names
    the translated documents it refused (``document 2, spec.security.hostPid``);
    each of its issues is told in the user's file instead, as local mode
    tells it: the manifest's own document, or with ``locate`` the Compose
    key and line."""
    try:
        return remote_cli.submit(client, _documents(workloads, namespaces), str(file))
    except InputError as exc:
        sent: list[Sourced | SourcedNamespace] = [*namespaces, *workloads]
        raise type(exc)([_in_file(issue, sent, locate) for issue in exc.issues]) from None


def _in_file(
    issue: Issue,
    sent: Sequence[Sourced | SourcedNamespace],
    locate: Callable[[Sourced, str, str], Issue] | None,
) -> Issue:
    from portway.service.workloads import Sourced as SourcedWorkload

    number = issue.document
    if number is None or not 1 <= number <= len(sent):
        return issue  # not about one of the documents sent
    origin = sent[number - 1]
    if locate is not None and isinstance(origin, SourcedWorkload):
        message = f"{issue.message} ({issue.path})" if issue.path else issue.message
        return locate(origin, message, issue.path)
    return Issue(
        issue.message, file=origin.file, document=origin.document, path=issue.path, hint=issue.hint
    )


def apply_kubernetes(
    client: PortwayClient, file: Path, strict: bool, no_wait: bool, timeout: float
) -> int:
    """Store the manifests' Secrets and ConfigMaps on the server, then apply
    their workloads; the exit code."""
    from portway.service import kubernetes as kube

    loaded = kube.load(file, strict=strict)
    for secret in loaded.translated.secrets:
        client.put_secret(secret.namespace, secret.name, dict(secret.data), create_only=False)
        _say(f"secret/{secret.namespace}/{secret.name} stored")
    keys = _submit(client, file, loaded.workloads, loaded.namespaces)
    if no_wait:
        return 0
    return remote_cli.report_wait(client, remote_cli.wait_for(client, keys, timeout))


def apply_compose(
    client: PortwayClient, file: Path, args: ComposeArgs, no_wait: bool, timeout: float
) -> int:
    """Refuse the keys Compose's table rejects (all at once), store the
    file secrets and configs, then apply one depends_on level at a time and
    wait for it (Ready, or exited 0 for service_completed_successfully)
    before the next, as local mode does; the exit code."""
    from portway.cli import compose as compose_cli
    from portway.errors import SpecError
    from portway.service import compose

    loaded = compose_cli.load(file, args)

    def locate(sourced: Sourced, message: str, field: str) -> Issue:
        return compose.located(loaded, sourced, message, field)

    refused = compose.rejected_keys(loaded) + _policy_refusals(client, file, loaded, locate)
    if refused:
        raise SpecError(refused)
    project = loaded.mapped.project
    for secret in loaded.mapped.secrets:
        client.put_secret(project, secret.name, {secret.key: secret.data}, create_only=False)
        _say(f"secret/{secret.name} stored")
    reads = remote_cli.RemoteReads(client)
    must_finish = compose_cli.must_complete(loaded)
    for level in loaded.by_level():
        keys = _submit(client, file, level, locate=locate)
        if no_wait:
            continue
        ready = [key for key in keys if key[1] not in must_finish]
        if ready:
            code = remote_cli.report_wait(client, remote_cli.wait_for(client, ready, timeout))
            if code:
                return code
        for sourced in level:
            if sourced.workload.metadata.name in must_finish:
                # the server's controller hears of exits from the engine's
                # events: nothing to nudge from here
                compose_cli.wait_completed(reads.replicas_of, sourced.workload, timeout)
    if no_wait:
        output.err.print(
            "note: --no-wait records every service at once; depends_on order is kept "
            "only when apply waits",
            markup=False,
        )
    return 0


def _policy_refusals(
    client: PortwayClient,
    file: Path,
    loaded: Any,
    locate: Callable[[Sourced, str, str], Issue],
) -> list[Issue]:
    """What the server's namespace policy refuses in the whole project, asked
    (by a plan) before anything is stored or started, so that a refused
    project leaves nothing behind, as in local mode; each placed at its
    Compose key."""
    answer = client.plan(_documents(loaded.workloads), str(file), [])
    items = [item for item in answer.get("items") or [] if isinstance(item, dict)]
    issues = []
    for item, sourced in zip(items, loaded.workloads, strict=True):
        for violation in item.get("policy") or []:
            path = str(violation.get("path", ""))
            message = f"{violation.get('message')} [{violation.get('rule')}] ({path})"
            issues.append(locate(sourced, message, path))
    return issues


def plan_translated(
    client: PortwayClient,
    file: Path,
    workloads: Sequence[Sourced],
    namespaces: Sequence[SourcedNamespace],
    targets: Sequence[str],
) -> list[dict[str, Any]]:
    """The server's plan (``plan -o json`` items) of what a Compose or
    manifest file translates to, one item per workload in order; the caller
    adds the file's own keys and their verdicts."""
    answer = client.plan(_documents(workloads, namespaces), str(file), list(targets))
    items = [item for item in answer.get("items") or [] if isinstance(item, dict)]
    for item, sourced in zip(items, workloads, strict=True):
        # the server numbered the translated documents; the user's file has its own
        item["file"], item["document"] = sourced.file, sourced.document
    return items
