"""``portway events``: filters, JSON output, following new events (from the
store locally, from the server's SSE watch remotely), bad flags, and the
controller's retention of events by age and count."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.api_support import Api, api  # noqa: F401  (the fixture)
from tests.unit.test_api_watch import base_url  # noqa: F401  (the fixture)
from typer.testing import CliRunner

from portway.cli.backend import EventQuery, LocalReads, Reads
from portway.cli.events import parse_duration
from portway.cli.main import app
from portway.cli.remote import RemoteReads
from portway.client.http import PortwayClient
from portway.controller.runner import Controller, ControllerSettings
from portway.errors import InputError
from portway.service.app import App, Settings
from portway.store import Event, Store


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """The store the CLI opens (same home), with a few events in it."""
    monkeypatch.setenv("PORTWAY_HOME", str(tmp_path))
    monkeypatch.setenv("PORTWAY_DOCKER_SOCKET", str(tmp_path / "no-docker.sock"))
    monkeypatch.setenv("PORTWAY_LOCAL_WASM", "0")
    monkeypatch.setenv("PORTWAY_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.delenv("PORTWAY_STORE", raising=False)
    monkeypatch.delenv("PORTWAY_CONTEXT", raising=False)
    application = App(Settings(home=tmp_path))
    store = application.store
    store.record_event("Workload", "default", "web", "Started", "replica 0 started", replica=0)
    store.record_event(
        "Workload",
        "default",
        "web",
        "OOMKilled",
        "replica 1 exited (OOMKilled, exit code 137)",
        warning=True,
        replica=1,
        target="local-docker",
    )
    store.record_event("Workload", "default", "db", "Started", "replica 0 started", replica=0)
    store.record_event("Workload", "team-a", "api", "Started", "replica 0 started", replica=0)
    yield application
    application.close()


def events_json(*argv: str) -> list[dict[str, object]]:
    result = CliRunner().invoke(app, ["events", *argv, "-o", "json"])
    assert result.exit_code == 0, result.output
    items: list[dict[str, object]] = json.loads(result.output)["items"]
    return items


def test_events_filters_by_namespace_workload_type_reason_and_target(service: App) -> None:
    assert [e["name"] for e in events_json()] == ["web", "web", "db"]  # -n default
    assert {e["namespace"] for e in events_json("-A")} == {"default", "team-a"}
    assert [e["reason"] for e in events_json("--workload", "web")] == ["Started", "OOMKilled"]
    (oom,) = events_json("--type", "warning")
    assert (oom["reason"], oom["replica"], oom["target"], oom["count"]) == (
        "OOMKilled",
        1,
        "local-docker",
        1,
    )
    assert events_json("--reason", "OOMKilled") == [oom]
    assert events_json("--target", "local-docker") == [oom]
    assert [e["name"] for e in events_json("-A", "--reason", "Started", "--since", "10m")] == [
        "web",
        "db",
        "api",
    ]


def test_events_table_names_the_replica_and_counts_repeats(service: App) -> None:
    service.store.record_event(
        "Workload", "default", "web", "Started", "replica 0 started", replica=0
    )
    result = CliRunner().invoke(app, ["events", "--workload", "web"])
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert header.split() == [
        "LAST",
        "SEEN",
        "TYPE",
        "REASON",
        "OBJECT",
        "TARGET",
        "COUNT",
        "MESSAGE",
    ]
    assert rows[-1].split()[1:6] == ["Normal", "Started", "replica/web-0", "-", "2"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--since", "ten minutes"], "--since 'ten minutes': expected a duration such as 30s"),
        (["--type", "Error"], "--type 'Error': expected Normal or Warning"),
        (["--limit", "0"], "--limit 0: expected 1 or more"),
        (["-w", "-o", "yaml"], "-o yaml: with --watch, use -o json"),
    ],
)
def test_bad_flags_are_named(service: App, argv: list[str], expected: str) -> None:
    result = CliRunner().invoke(app, ["events", *argv])
    assert result.exit_code != 0
    assert expected in result.output


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2d") == 172_800
    for bad in ("", "10", "m", "1x", "-5m"):
        with pytest.raises(InputError, match="expected a duration"):
            parse_duration(bad)


def _follow_in_thread(
    reads: Reads, query: EventQuery, after: int
) -> tuple[list[Event], threading.Event]:
    seen: list[Event] = []
    stop = threading.Event()

    def run() -> None:
        for event in reads.follow_events(
            namespace="default", name=None, query=query, after_id=after, stop=stop
        ):
            seen.append(event)
            if len(seen) == 2:
                stop.set()
                return

    threading.Thread(target=run, daemon=True).start()
    return seen, stop


def _wait_for(seen: list[Event], count: int) -> None:
    deadline = time.monotonic() + 10
    while len(seen) < count:
        assert time.monotonic() < deadline, f"only {len(seen)} event(s) followed"
        time.sleep(0.02)


def test_local_follow_yields_new_matching_events_only(service: App) -> None:
    newest = service.store.events(limit=1)[-1].id
    seen, stop = _follow_in_thread(LocalReads(service), EventQuery(reason="NotReady"), newest)
    store = service.store
    store.record_event("Workload", "default", "web", "Ready", "skipped by the filter")
    store.record_event("Workload", "team-a", "web", "NotReady", "other namespace")
    store.record_event("Workload", "default", "web", "NotReady", "first", warning=True)
    store.record_event("Workload", "default", "db", "NotReady", "second", warning=True)
    _wait_for(seen, 2)
    stop.set()
    assert [(e.name, e.message) for e in seen] == [("web", "first"), ("db", "second")]


def test_remote_follow_uses_the_servers_filtered_watch(
    api: Api,  # noqa: F811
    base_url: str,  # noqa: F811
) -> None:
    reads = RemoteReads(PortwayClient(base_url, api.tokens["admin"]))
    store = api.app.store
    store.record_event("Workload", "default", "web", "Old", "before the watch")
    after = store.events(limit=1)[-1].id
    seen, stop = _follow_in_thread(reads, EventQuery(event_type="Warning", target="t1"), after)
    time.sleep(0.3)  # the watch is established before the events come
    store.record_event("Workload", "default", "web", "OOMKilled", "wrong target", warning=True)
    store.record_event("Workload", "default", "web", "Started", "not a warning", target="t1")
    store.record_event("Workload", "default", "web", "OOMKilled", "one", warning=True, target="t1")
    store.record_event("Workload", "default", "db", "BackOff", "two", warning=True, target="t1")
    _wait_for(seen, 2)
    stop.set()
    assert [(e.reason, e.message, e.target) for e in seen] == [
        ("OOMKilled", "one", "t1"),
        ("BackOff", "two", "t1"),
    ]


def test_the_controller_prunes_events_past_their_age_and_count(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    now = [time.time()]
    try:
        controller = Controller(
            store,
            settings=ControllerSettings(events_ttl_seconds=3600, events_max=3),
            clock=lambda: now[0],
        )
        for i in range(5):
            store.record_event("Workload", "default", "web", f"E{i}", "")
        assert controller.prune_events() == 2  # the count limit: the newest 3 stay
        assert [e.reason for e in store.events()] == ["E2", "E3", "E4"]
        now[0] += 3601  # an hour later, none was seen again
        assert controller.prune_events() == 3
        assert store.events() == []
        controller.reconciler.close()
    finally:
        store.close()


def test_retention_settings_come_from_the_environment() -> None:
    settings = ControllerSettings.from_env(
        {"PORTWAY_CONTROLLER_EVENTS_TTL_SECONDS": "600", "PORTWAY_CONTROLLER_EVENTS_MAX": "50"}
    )
    assert (settings.events_ttl_seconds, settings.events_max) == (600.0, 50)
    with pytest.raises(InputError, match="PORTWAY_CONTROLLER_EVENTS_MAX='many'"):
        ControllerSettings.from_env({"PORTWAY_CONTROLLER_EVENTS_MAX": "many"})
