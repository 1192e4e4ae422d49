"""The CLI in remote mode against the real API app in-process (fake engines,
tests/unit/api_support.py): each command prints what local mode prints for
the same store, fails with local mode's exit codes (401 -> 4, 403 -> 5 with
the server's message, 404 -> 3, 422 -> 2), and streams logs."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from tests.unit.api_support import Api, api  # noqa: F401  (the fixture)
from tests.unit.test_tracing import spans  # noqa: F401  (the fixture)
from typer.testing import CliRunner

from portway.cli import contexts, output
from portway.cli import main as cli_main
from portway.cli.main import app
from portway.client.config import Context
from portway.client.http import PortwayClient
from portway.controller.runner import Controller
from portway.drivers.base import ExecResult
from portway.service import auditlog
from portway.service.migration_steps import KIND_MIGRATION, Migration, Step
from portway.spec.model import KIND_WORKLOAD

WORKLOAD = textwrap.dedent(
    """\
    apiVersion: portway.dev/v1
    kind: Workload
    metadata: {name: web, namespace: team-a, labels: {tier: front}}
    spec:
      image: portway/busybox:latest
      command: ["sleep", "3600"]
      replicas: 2
    """
)

#: the real one, kept before any fixture replaces it
_REAL_CLIENT_FOR = contexts.client_for

_HOP_HEADERS = {"content-length", "transfer-encoding", "content-encoding", "connection"}


def _bridge(api: Api) -> httpx.MockTransport:  # noqa: F811
    """httpx transport that hands each request to the app's test client."""

    def handler(request: httpx.Request) -> httpx.Response:
        answer = api.client.request(
            request.method,
            request.url.raw_path.decode(),
            content=request.content,
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
        )
        headers = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_HEADERS}
        return httpx.Response(answer.status_code, headers=headers, content=answer.content)

    return httpx.MockTransport(handler)


@pytest.fixture
def remote(
    api: Api,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., Result]]:
    """``run(*argv, who="admin")``: the CLI with context ``test`` on the app."""
    monkeypatch.setenv("PORTWAY_HOME", str(api.app.settings.home))
    monkeypatch.setenv("PORTWAY_DOCKER_SOCKET", str(tmp_path / "no-docker.sock"))
    monkeypatch.setenv("PORTWAY_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.delenv("PORTWAY_CONTEXT", raising=False)
    monkeypatch.delenv("PORTWAY_STORE", raising=False)
    transport = _bridge(api)

    def client_for(context: Context) -> PortwayClient:
        return PortwayClient(context.server, context.read_token(), transport=transport)

    monkeypatch.setattr(contexts, "client_for", client_for)
    runner = CliRunner()
    for who, token in api.tokens.items():
        path = tmp_path / f"{who}.token"
        path.write_text(token)
        added = runner.invoke(
            app, ["context", "add", who, "--server", "http://testserver", "--token-file", str(path)]
        )
        assert added.exit_code == 0, added.output

    def run(*argv: str, who: str = "admin") -> Result:
        return runner.invoke(app, ["--context", who, *argv])

    yield run


def _converge(api: Api, *keys: str) -> None:  # noqa: F811
    """Two reconcile passes on the server's store (no controller runs in the test app)."""
    controller = Controller(api.app.store, targets=api.app.targets)
    controller.targets.check_all()
    try:
        for _ in range(2):
            for key in keys:
                controller.reconciler.reconcile(key)
    finally:
        controller.reconciler.close()


def test_apply_get_describe_match_local_output(
    remote: Callable[..., Result],
    api: Api,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ages read the clock; both runs of a command must see the same second
    frozen = time.time()
    monkeypatch.setattr(cli_main, "age", lambda since, now=None: output.age(since, frozen))
    spec = tmp_path / "web.yaml"
    spec.write_text(WORKLOAD)
    applied = remote("apply", "-f", str(spec), "--no-wait")
    assert applied.exit_code == 0, applied.output
    assert applied.output.strip() == "workload/web created"
    _converge(api, "team-a/web")

    for argv in (
        ["get", "workloads", "-n", "team-a", "-o", "json"],
        ["get", "workloads", "-A", "-o", "wide"],
        ["get", "workloads", "web", "-n", "team-a", "-o", "yaml"],
        ["get", "replicas", "-A", "-o", "json"],
        ["get", "replicas", "web", "-n", "team-a", "-o", "wide"],
        ["get", "events", "web", "-n", "team-a", "-o", "json"],
        ["events", "-n", "team-a", "--workload", "web", "-o", "json"],
        ["events", "-A", "--reason", "Started", "--type", "Normal", "-o", "json"],
        ["describe", "workload", "web", "-n", "team-a"],
        ["get", "targets", "-o", "json"],
        ["plan", "-f", str(spec)],
        ["plan", "-f", str(spec), "-o", "json"],
    ):
        there, here = remote(*argv), remote(*argv, who="local")
        assert there.exit_code == 0, (argv, there.output)
        assert here.exit_code == 0, (argv, here.output)
        assert there.output == here.output, argv
    planned = remote("plan", "-f", str(spec)).output
    assert "workload team-a/web" in planned and "fake-1: deployable in strict mode" in planned
    listed = json.loads(remote("get", "workloads", "-n", "team-a", "-o", "json").output)
    [item] = listed["items"]
    assert item["metadata"]["labels"] == {"tier": "front"} and item["spec"]["replicas"] == 2


def test_apply_waits_until_ready_then_delete_waits_until_gone(
    remote: Callable[..., Result],
    api: Api,  # noqa: F811
    tmp_path: Path,
) -> None:
    spec = tmp_path / "web.yaml"
    spec.write_text(WORKLOAD)
    stop = threading.Event()

    def controller() -> None:  # the server's controller, which the test app lacks
        while not stop.wait(0.05):
            if api.app.store.get("Workload", "team-a", "web") is not None:
                _converge(api, "team-a/web")

    worker = threading.Thread(target=controller, daemon=True)
    worker.start()
    try:
        applied = remote("apply", "-f", str(spec), "--timeout", "20")
        assert applied.exit_code == 0, applied.output
        assert applied.output.splitlines() == ["workload/web created", "workload/web ready"]
        deleted = remote("delete", "-f", str(spec), "--timeout", "20")
        assert deleted.exit_code == 0, deleted.output
        assert deleted.output.strip() == "workload/web deleted"
    finally:
        stop.set()
        worker.join(5)
    assert remote("get", "workloads", "web", "-n", "team-a").exit_code == 3


def test_logs_exec_delete(
    remote: Callable[..., Result],
    api: Api,  # noqa: F811
    tmp_path: Path,
) -> None:
    spec = tmp_path / "web.yaml"
    spec.write_text(WORKLOAD)
    assert remote("apply", "-f", str(spec), "--no-wait").exit_code == 0
    _converge(api, "team-a/web")
    [driver] = {api.app.targets.driver(v) for v in api.app.target_views()}
    for container in driver.running():
        driver.log(container, f"hello from {container.index}")

    one = remote("logs", "web", "-n", "team-a", "--replica", "1")
    assert one.exit_code == 0, one.output
    assert one.output.strip().splitlines()[-1] == "hello from 1"
    both = remote("logs", "web", "-n", "team-a")
    assert "[web-0 fake-1] hello from 0" in both.output
    assert "[web-1 fake-1] hello from 1" in both.output

    driver.exec_default = ExecResult(3, b"hi\n")
    ran = remote(
        "exec", "web", "-n", "team-a", "--replica", "1", "--", "sh", "-c", "echo hi; exit 3"
    )
    assert (ran.exit_code, ran.stdout) == (3, "hi\n")
    assert remote("exec", "web", "-n", "team-a").exit_code == 2

    gone = remote("delete", "web", "-n", "team-a", "--no-wait")
    assert gone.exit_code == 0 and "workload/web deleted" in gone.output


def test_delete_of_a_file_deletes_nothing_while_one_of_its_workloads_is_refused(
    remote: Callable[..., Result],
    api: Api,  # noqa: F811
    tmp_path: Path,
) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(WORKLOAD + "---\n" + WORKLOAD.replace("name: web", "name: db"))
    assert remote("apply", "-f", str(spec), "--no-wait").exit_code == 0
    migration = Migration("m1", "team-a", "db", "fake-1", "fake-2", 1, (), Step.SNAPSHOTTED)
    api.app.store.create(KIND_MIGRATION, "team-a", "db", migration.to_json())

    # the server's dry run: checked, nothing changes
    checked = api.client.delete(
        "/v1/namespaces/team-a/workloads/web?dryRun=true", headers=api.headers()
    )
    assert checked.status_code == 200 and checked.json()["deleting"] is False
    refused_check = api.client.delete(
        "/v1/namespaces/team-a/workloads/db?dryRun=true", headers=api.headers()
    )
    assert refused_check.status_code == 409, refused_check.text
    missing = api.client.delete(
        "/v1/namespaces/team-a/workloads/ghost?dryRun=true", headers=api.headers()
    )
    assert missing.status_code == 404
    audited = [(e.verb, e.name, e.status) for e in auditlog.entries(api.app)][-3:]
    assert audited == [
        ("delete (dry run)", "web", 200),
        ("delete (dry run)", "db", 409),
        ("delete (dry run)", "ghost", 404),
    ]

    refused = remote("delete", "-f", str(spec), "--no-wait")
    assert refused.exit_code != 0
    assert "team-a/db is being migrated" in refused.output
    for name in ("web", "db"):  # web, first in the file, is not deleted either
        record = api.app.store.get(KIND_WORKLOAD, "team-a", name)
        assert record is not None and not record.deleting, name


def test_errors_keep_local_exit_codes(
    remote: Callable[..., Result],
    api: Api,  # noqa: F811
    tmp_path: Path,
) -> None:
    spec = tmp_path / "web.yaml"
    spec.write_text(WORKLOAD)
    denied = remote("apply", "-f", str(spec), "--no-wait", who="viewer-a")
    assert denied.exit_code == 5, denied.output
    assert "victor" in denied.output and "team-a" in denied.output
    other = remote("get", "workloads", "-n", "team-a", who="deployer-b")
    assert other.exit_code == 5 and "bob" in other.output

    missing = remote("describe", "workload", "ghost", "-n", "team-a")
    assert missing.exit_code == 3 and "ghost" in missing.output

    bad = tmp_path / "bad.yaml"
    bad.write_text(WORKLOAD.replace("replicas: 2", "replicas: -1"))
    invalid = remote("apply", "-f", str(bad), "--no-wait")
    assert invalid.exit_code == 2 and f"{bad}:7" in invalid.output

    token = tmp_path / "admin.token"
    token.write_text("pw_00000000_" + "A" * 43)
    unauthenticated = remote("get", "workloads")
    assert unauthenticated.exit_code == 4, unauthenticated.output


def test_whoami_tokens_and_targets(
    remote: Callable[..., Result],
    api: Api,  # noqa: F811
) -> None:
    me = json.loads(remote("whoami", "-o", "json", who="deployer-a").output)
    assert me["user"] == "alice"
    assert {"role": "deployer", "namespace": "team-a"} in [
        {k: b[k] for k in ("role", "namespace")} for b in me["bindings"]
    ]
    created = remote("token", "create", "--user", "carol", "-r", "viewer", "-n", "team-a")
    assert created.exit_code == 0, created.output
    assert created.stdout.strip().startswith("pw_")
    listed = json.loads(remote("token", "ls", "--user", "carol", "-o", "json").output)
    [carol] = listed["items"]
    revoked = remote("token", "revoke", carol["id"])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    denied = remote("token", "ls", who="deployer-a")
    assert denied.exit_code == 5

    cordoned = remote("target", "cordon", "fake-1")
    assert cordoned.output.strip() == "target/fake-1 cordoned"
    assert remote("target", "cordon", "fake-1").output.strip() == "target/fake-1 already cordoned"
    assert remote("target", "uncordon", "fake-1").exit_code == 0
    labelled = remote("target", "set", "fake-1", "-l", "zone=a")
    assert labelled.exit_code == 0 and "labels zone=a" in labelled.output
    assert remote("target", "cordon", "fake-1", who="deployer-a").exit_code == 5
    added = remote("target", "add", "fake-2", "--address", "fake://y", "-l", "zone=b")
    assert added.exit_code == 0, added.output
    assert added.output.strip() == "target/fake-2 added (fake at fake://y, healthy: fake)"
    drained = remote("target", "drain", "fake-2", "--timeout", "5")
    assert drained.output.splitlines() == ["target/fake-2 cordoned", "target/fake-2 drained"]
    assert remote("target", "remove", "fake-2").output.strip() == "target/fake-2 removed"
    bad = remote("target", "add", "fake-3", "--taint", "nonsense")
    assert bad.exit_code == 2 and "--taint" in bad.output
    log = json.loads(remote("audit-log", "-o", "json").output)
    assert any(e["outcome"] == "denied" and e["user"] == "alice" for e in log["items"])


def test_a_traced_remote_apply_is_one_trace_from_the_cli_into_the_server(
    spans: Any,  # noqa: F811  (first, so that the app is made with tracing on)
    remote: Callable[..., Result],
    api: Api,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With tracing on, the CLI opens a root span for the command and every
    request carries it (traceparent): the server's request span and the
    apply under it are children in the same trace."""
    from portway.client import http as client_http

    transport = _bridge(api)
    real_client = client_http.PortwayClient

    class BridgedClient(real_client):  # type: ignore[misc,valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **{**kwargs, "transport": transport})

    # the real client_for (it wires the trace headers), on the in-process app
    monkeypatch.setattr(client_http, "PortwayClient", BridgedClient)
    monkeypatch.setattr(contexts, "client_for", _REAL_CLIENT_FOR)
    spec = tmp_path / "web.yaml"
    spec.write_text(WORKLOAD)
    applied = remote("apply", "-f", str(spec), "--no-wait")
    assert applied.exit_code == 0, applied.output

    finished = spans.get_finished_spans()
    [root] = [s for s in finished if s.name == "portway.cli.apply"]
    assert root.parent is None
    assert root.attributes is not None and root.attributes["portway.server"] == "http://testserver"
    [post] = [s for s in finished if s.name == "POST /v1/apply"]
    [apply] = [s for s in finished if s.name == "portway.apply"]
    assert post.parent is not None and post.parent.span_id == root.context.span_id
    assert apply.parent is not None and apply.parent.span_id == post.context.span_id
    assert {post.context.trace_id, apply.context.trace_id} == {root.context.trace_id}


def test_without_tracing_requests_carry_no_trace_headers(
    remote: Callable[..., Result],
    api: Api,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from portway.client import http as client_http

    seen: list[str] = []
    bridge = _bridge(api)

    def spy(request: httpx.Request) -> httpx.Response:
        seen.extend(k.lower() for k in request.headers)
        return bridge.handle_request(request)

    real_client = client_http.PortwayClient

    class SpiedClient(real_client):  # type: ignore[misc,valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **{**kwargs, "transport": httpx.MockTransport(spy)})

    monkeypatch.setattr(client_http, "PortwayClient", SpiedClient)
    monkeypatch.setattr(contexts, "client_for", _REAL_CLIENT_FOR)
    assert remote("get", "workloads", "-A").exit_code == 0
    assert "authorization" in seen and "traceparent" not in seen


COMPOSE = textwrap.dedent(
    """\
    services:
      db:
        image: portway/busybox:latest
        command: ["sleep", "3600"]
      web:
        image: portway/busybox:latest
        command: ["sleep", "3600"]
        depends_on:
          db: {condition: service_started}
        secrets: [token]
        deploy: {replicas: 2}
    secrets:
      token: {file: ./token.txt}
    """
)

MANIFESTS = textwrap.dedent(
    """\
    apiVersion: v1
    kind: Secret
    metadata: {name: creds, namespace: team-k}
    stringData: {password: hunter2}
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: api, namespace: team-k}
    spec:
      replicas: 1
      selector: {matchLabels: {app: api}}
      template:
        metadata: {labels: {app: api}}
        spec:
          containers:
            - name: api
              image: portway/busybox:latest
              command: ["sleep", "3600"]
              env:
                - name: PASSWORD
                  valueFrom: {secretKeyRef: {name: creds, key: password}}
    """
)


def test_compose_and_kubernetes_files_plan_and_apply_through_the_server(
    remote: Callable[..., Result],
    api: Api,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The files are read on the CLI's machine; the server gets their
    secrets and translated workloads, and plans them as local mode does."""
    project = tmp_path / "shop"
    project.mkdir()
    (project / "token.txt").write_text("s3cret\n")
    compose = project / "compose.yaml"
    compose.write_text(COMPOSE)
    manifests = tmp_path / "api.yaml"
    manifests.write_text(MANIFESTS)

    for file in (compose, manifests):
        there, here = remote("plan", "-f", str(file)), remote("plan", "-f", str(file), who="local")
        assert there.exit_code == 0, there.output
        assert there.output == here.output
    assert "compose keys of service web" in remote("plan", "-f", str(compose)).output

    applied = remote("apply", "-f", str(compose), "--no-wait")
    assert applied.exit_code == 0, applied.output
    lines = applied.output.splitlines()
    assert lines[:3] == [
        "secret/secret-token stored",
        "workload/db created",
        "workload/web created",
    ]
    applied = remote("apply", "-f", str(manifests), "--no-wait")
    assert applied.exit_code == 0, applied.output
    assert applied.output.splitlines()[:2] == ["secret/team-k/creds stored", "workload/api created"]

    secrets = json.loads(remote("secret", "ls", "-A", "-o", "json").output)
    names = {(s["namespace"], s["name"]) for s in secrets["items"]}
    assert {("shop", "secret-token"), ("team-k", "creds")} <= names
    web = api.app.store.get("Workload", "shop", "web")
    assert web is not None, "web was not recorded"
    spec = web.spec["workload"]["spec"]
    assert spec["replicas"] == 2
    assert spec["secrets"][0]["secret"] == "secret-token"
    assert spec["extensions"]["compose"] == {"project": "shop", "service": "web"}
    assert api.app.store.get("Workload", "team-k", "api") is not None


def test_a_compose_file_the_server_refuses_is_refused_with_every_reason_and_nothing_runs(
    remote: Callable[..., Result],
    api: Api,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The namespace policy (baseline) is the server's to judge: both
    violations come back at once, and nothing is recorded."""
    project = tmp_path / "bad"
    project.mkdir()
    compose = project / "compose.yaml"
    (project / "token.txt").write_text("s3cret\n")
    compose.write_text(
        "services:\n  web:\n    image: portway/busybox:latest\n    privileged: true\n"
        "    pid: host\n    secrets: [token]\nsecrets:\n  token: {file: ./token.txt}\n"
    )
    refused = remote("apply", "-f", str(compose))
    assert refused.exit_code == 2, refused.output
    text = " ".join(refused.output.split())
    assert "2 problems" in text
    # told in the user's file: the Compose key and its line, word for word as local mode
    assert f"{compose}:4, services.web.privileged: privileged replicas" in text
    assert f"{compose}:5, services.web.pid: sharing the host's namespaces" in text
    assert "(spec.security.privileged)" in text and "(spec.security.hostPid)" in text
    assert refused.output == remote("apply", "-f", str(compose), who="local").output
    assert api.app.store.get("Workload", "bad", "web") is None
    # refused before anything was stored: the file's secret too
    stored = json.loads(remote("secret", "ls", "-n", "bad", "-o", "json").output)
    assert stored["items"] == []


def test_manifests_the_server_refuses_name_the_users_documents_as_local_mode_does(
    remote: Callable[..., Result],
    api: Api,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The server numbers the translated documents it was sent (the Secret
    is not among them); the refusal names the manifest's own document."""
    manifests = tmp_path / "api.yaml"
    privileged = MANIFESTS.replace(
        "      containers:\n        - name: api\n",
        "      containers:\n        - name: api\n          securityContext: {privileged: true}\n",
    )
    assert privileged != MANIFESTS
    manifests.write_text(privileged.replace("team-k", "team-p"))
    there = remote("apply", "-f", str(manifests))
    here = remote("apply", "-f", str(manifests), who="local")
    assert there.exit_code == here.exit_code == 2, (there.output, here.output)
    text = " ".join(there.output.split())
    assert f"{manifests}, document 2, spec.security.privileged: refused by policy" in text, text
    assert api.app.store.get("Workload", "team-p", "api") is None
    local = " ".join(here.output.split())
    assert f"{manifests}, document 2, spec.security.privileged" in local, local
