"""The merged log view over the fake engine: the API's options and errors,
and a follow that re-attaches without repeating lines and takes over a
rolling replacement's container."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta

from tests.fakes import FakeClock
from tests.unit.api_support import Api, converge, engine, workload_doc

from portway.service.logmerge import Entry
from portway.service.logview import LogQuery, LogView

A = "/v1/namespaces/team-a"


def _running(api: Api, replicas: int = 2, image: str = "portway/busybox:latest") -> None:
    doc = workload_doc("web", replicas=replicas, image=image)
    answer = api.post("/v1/apply", json={"documents": [doc]})
    assert answer.status_code == 200, answer.text
    converge(api, "team-a/web")


def test_the_api_merges_replicas_in_time_order_with_every_field(api: Api) -> None:
    _running(api)
    fake = engine(api)
    by_index = {c.index: c for c in fake.running()}
    clock = fake.clock
    assert isinstance(clock, FakeClock)
    for step in range(3):  # the clock moves between lines, so the order is by time
        for index in (1, 0):
            fake.log(by_index[index], f"r{index} s{step}")
            clock.advance(0.5)
    lines = [json.loads(x) for x in api.get(f"{A}/workloads/web/logs").text.splitlines()]
    assert [x["line"] for x in lines] == [
        "r1 s0", "r0 s0", "r1 s1", "r0 s1", "r1 s2", "r0 s2",
    ]  # fmt: skip
    assert set(lines[0]) == {"time", "workload", "replica", "target", "stream", "line"}
    assert lines[0]["workload"] == "web" and lines[0]["target"] == "fake-1"
    last = datetime.fromisoformat(lines[-1]["time"])
    since = (last - timedelta(microseconds=1)).isoformat()
    newest = api.get(f"{A}/workloads/web/logs", params={"since": since}).text.splitlines()
    assert [json.loads(x)["line"] for x in newest] == ["r0 s2"]
    recent = api.get(f"{A}/workloads/web/logs", params={"tail": 1}).text
    assert sorted(json.loads(x)["line"] for x in recent.splitlines()) == ["r0 s2", "r1 s2"]
    on_target = api.get(f"{A}/workloads/web/logs", params={"target": "fake-1"}).text
    assert len(on_target.splitlines()) == 6


def test_the_api_refuses_bad_options_naming_them(api: Api) -> None:
    _running(api)
    bad_since = api.get(f"{A}/workloads/web/logs", params={"since": "later"})
    assert bad_since.status_code == 422 and "since 'later'" in bad_since.text
    bad_target = api.get(f"{A}/workloads/web/logs", params={"target": "nowhere"})
    assert bad_target.status_code == 422 and "'nowhere': no such target" in bad_target.text
    bad_replica = api.get(f"{A}/workloads/web/logs", params={"replica": 5})
    assert bad_replica.status_code == 422 and "replicas 0..1" in bad_replica.text


def _follow(view: LogView) -> tuple[list[Entry], threading.Thread]:
    seen: list[Entry] = []

    def run() -> None:
        for batch in view:
            seen.extend(batch)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return seen, thread


def _wait(check: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_follow_goes_on_across_restarts_and_a_rolling_replacement(api: Api) -> None:
    _running(api, replicas=1)
    fake = engine(api)
    [first] = fake.running()
    fake.log(first, "before")
    query = LogQuery("team-a", "web", follow=True)
    view = LogView(api.app, query, window=0.05, poll=0.05, drain_grace=0.2)
    seen, thread = _follow(view)
    try:
        texts = lambda: [line.text for _, line in seen]  # noqa: E731
        _wait(lambda: texts() == ["before"], "the first line")
        # the fake's streams end at once, like a container that exited: the
        # view attaches again from the last time and skips what it printed
        fake.log(first, "after-restart")
        _wait(lambda: texts() == ["before", "after-restart"], "the line after a re-attach")
        _running(api, replicas=1, image="portway/busybox:v2")  # rolling update
        [second] = fake.running()
        assert second.id != first.id
        fake.log(second, "from-v2")
        _wait(lambda: texts()[-1:] == ["from-v2"], "the replacement's line")
        assert texts() == ["before", "after-restart", "from-v2"]
        assert {source.container_id for source, _ in seen} == {first.id, second.id}
    finally:
        view.close()
        thread.join(timeout=5)
    assert not thread.is_alive() and view.errors == []


def test_a_follow_ends_when_the_workload_is_deleted(api: Api) -> None:
    _running(api, replicas=1)
    view = LogView(api.app, LogQuery("team-a", "web", follow=True), poll=0.05, drain_grace=0.1)
    seen, thread = _follow(view)
    assert api.delete(f"{A}/workloads/web").status_code == 200
    converge(api, "team-a/web")
    thread.join(timeout=10)
    assert not thread.is_alive() and seen == []  # it ended by itself, not by close()
