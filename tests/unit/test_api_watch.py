"""SSE watches against a real uvicorn on 127.0.0.1 (the test client buffers
whole responses, so it cannot show a stream that never ends)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from tests.unit.api_support import Api, workload_doc

from portway.controller.records import KIND_WORKLOAD


@dataclass
class Sse:
    id: int | None = None
    type: str = ""
    data: Any = None
    comments: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def base_url(api: Api) -> Iterator[str]:
    port = _free_port()
    config = uvicorn.Config(
        api.client.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    assert not thread.is_alive(), "the server did not stop: a watch held it"


@contextmanager
def watch(
    base_url: str, path: str, token: str, headers: dict[str, str] | None = None, **params: Any
) -> Iterator[Iterator[Sse]]:
    auth = {"Authorization": f"Bearer {token}", **(headers or {})}
    with (
        httpx.Client(base_url=base_url, timeout=10) as client,
        client.stream("GET", path, params=params, headers=auth) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield _events(response.iter_lines())


def _events(lines: Iterator[str]) -> Iterator[Sse]:
    current = Sse()
    for line in lines:
        if line == "":
            if current.type or current.comments:
                yield current
            current = Sse()
        elif line.startswith(":"):
            current.comments.append(line[1:].strip())
        elif line.startswith("id: "):
            current.id = int(line[4:])
        elif line.startswith("event: "):
            current.type = line[7:]
        elif line.startswith("data: "):
            current.data = json.loads(line[6:])


def _next_event(events: Iterator[Sse]) -> Sse:
    for event in events:
        if event.type:
            return event
    raise AssertionError("the stream ended")


def test_workload_watch_snapshot_changes_and_resume(api: Api, base_url: str) -> None:
    api.post("/v1/apply", json={"documents": [workload_doc("first")]})
    token = api.tokens["viewer-a"]
    with watch(base_url, "/v1/watch/workloads", token, namespace="team-a") as events:
        snapshot = _next_event(events)
        assert (snapshot.type, snapshot.data["name"]) == ("ADDED", "first")
        api.post("/v1/apply", json={"documents": [workload_doc("second")]})
        added = _next_event(events)
        assert (added.type, added.data["name"]) == ("ADDED", "second")
        assert added.data["spec"]["image"] == "portway/busybox:latest"
        assert snapshot.id is not None and added.id is not None and added.id > snapshot.id
        api.delete("/v1/namespaces/team-a/workloads/first")
        modified = _next_event(events)
        assert (modified.type, modified.data["name"], modified.data["deleting"]) == (
            "MODIFIED",
            "first",
            True,
        )
    # gone for good while nobody watched: resume shows what was missed
    record = api.app.store.require(KIND_WORKLOAD, "team-a", "first")
    api.app.store.delete(record)
    with watch(base_url, "/v1/watch/workloads", token, since=modified.id) as events:
        deleted = _next_event(events)
        assert (deleted.type, deleted.data) == ("DELETED", {"namespace": "team-a", "name": "first"})
    last = {"Last-Event-ID": str(added.id)}
    with watch(base_url, "/v1/watch/workloads", token, headers=last) as events:
        # changes of one workload found together are sent once, as the newest
        resumed = _next_event(events)
        assert (resumed.type, resumed.id, resumed.data["name"]) == ("DELETED", deleted.id, "first")


def test_watch_shows_only_readable_namespaces_and_sends_heartbeats(
    api: Api,
    base_url: str,
) -> None:
    with watch(base_url, "/v1/watch/workloads", api.tokens["deployer-b"], since=0) as events:
        api.post("/v1/apply", json={"documents": [workload_doc("hidden", "team-a")]})
        api.post("/v1/apply", json={"documents": [workload_doc("shown", "team-b")]})
        seen = _next_event(events)
        assert seen.data["name"] == "shown"
        beat = next(e for e in events if "heartbeat" in e.comments)
        assert beat.type == ""


def test_a_revision_older_than_the_change_log_is_410(api: Api, base_url: str) -> None:
    for name in ("a", "b", "c"):
        api.post("/v1/apply", json={"documents": [workload_doc(name)]})
    api.app.store.prune_changes(keep=1)
    headers = api.headers()
    with httpx.Client(base_url=base_url, timeout=10) as client:
        gone = client.get("/v1/watch/workloads", params={"since": 1}, headers=headers)
        assert gone.status_code == 410
        assert "list the workloads again" in gone.json()["error"]["message"]
        api.app.store.prune_events(keep=1)
        newest = api.app.store.events(limit=1)
        if newest and newest[0].id > 2:
            old = client.get("/v1/watch/events", params={"since": 0}, headers=headers)
            assert old.status_code == 410


def test_event_watch_follows_new_events(api: Api, base_url: str) -> None:
    api.app.store.record_event("Workload", "team-a", "web", "Before", "not shown")
    with watch(base_url, "/v1/watch/events", api.tokens["viewer-a"]) as events:
        api.app.store.record_event("Workload", "team-b", "web", "Elsewhere", "not readable")
        api.app.store.record_event("Workload", "team-a", "web", "After", "shown")
        event = _next_event(events)
        assert (event.type, event.data["reason"], event.data["message"]) == (
            "EVENT",
            "After",
            "shown",
        )
