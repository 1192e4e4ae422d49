"""``GET /metrics`` of the API: open by default (a token with
``metrics_auth``), request durations labelled by route template (never the
raw path), and the per-request cost of the timing layer."""

from __future__ import annotations

import asyncio
import time
import warnings
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.types import Message, Receive, Scope, Send
from tests.unit.api_support import Api, workload_doc

from portway.api import ServerConfig, create_app
from portway.api.metrics import UNMATCHED, RequestHistogram, RequestMetrics

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

WORKLOAD_ROUTE = "/v1/namespaces/{namespace}/workloads/{name}"


def _samples(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def _counts(api: Api) -> dict[tuple[str, str, str], float]:
    answer = api.client.get("/metrics")  # no token: open by default
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for s in _samples(answer.text)
        if s.name == "portway_api_request_duration_seconds_count"
    }


def test_requests_are_counted_by_route_template_and_status(api: Api) -> None:
    created = api.post("/v1/apply", json={"documents": [workload_doc("web")]})
    assert created.status_code == 200, created.text
    for _ in range(3):
        assert api.get("/v1/namespaces/team-a/workloads/web").status_code == 200  # fast path
    assert api.get("/v1/namespaces/team-a/workloads/nope").status_code == 404
    assert api.get("/v1/namespaces/team-a/workloads").status_code == 200  # FastAPI route
    assert api.get("/no/such/path/at/all").status_code == 404
    assert api.client.get("/v1/namespaces/team-a/workloads").status_code == 401
    counts = _counts(api)
    assert counts[("POST", "/v1/apply", "200")] == 1
    assert counts[("GET", WORKLOAD_ROUTE, "200")] == 3
    assert counts[("GET", WORKLOAD_ROUTE, "404")] == 1
    assert counts[("GET", "/v1/namespaces/{namespace}/workloads", "200")] == 1
    assert counts[("GET", "/v1/namespaces/{namespace}/workloads", "401")] == 1
    assert counts[("GET", UNMATCHED, "404")] == 1
    # no raw path ever becomes a label value
    assert not [route for _, route, _ in counts if "team-a" in route or "web" in route]


def test_metrics_can_require_a_token(api: Api) -> None:
    config = ServerConfig(metrics_auth=True)
    with TestClient(create_app(api.app, config), raise_server_exceptions=False) as client:
        assert client.get("/metrics").status_code == 401
        answer = client.get("/metrics", headers=api.headers("nobody"))  # any valid token
        assert answer.status_code == 200
        assert "portway_api_request_duration_seconds" in answer.text


def test_metrics_can_be_off(api: Api) -> None:
    with TestClient(create_app(api.app, ServerConfig(metrics=False))) as client:
        assert client.get("/metrics").status_code == 404


def test_the_registry_given_is_the_one_rendered(api: Api) -> None:
    from prometheus_client import Gauge

    registry = CollectorRegistry()
    Gauge("portway_test_marker", "A series only this registry has.", registry=registry).set(7)
    with TestClient(create_app(api.app, metrics=registry)) as client:
        assert client.get("/healthz").status_code == 200
        samples = _samples(client.get("/metrics").text)
    assert [s.value for s in samples if s.name == "portway_test_marker"] == [7]
    assert "portway_api_request_duration_seconds_bucket" in {s.name for s in samples}


def test_the_timing_layer_costs_a_few_microseconds() -> None:
    """The hot path's budget: measured against the same app without the layer."""

    async def bare(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    timed = RequestMetrics(bare, RequestHistogram(CollectorRegistry()))
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/v1/namespaces/a/workloads/b",
    }

    async def receive() -> Message:
        return {"type": "http.request"}

    async def send(message: Message) -> None:
        return None

    async def per_request(app: Any, n: int = 300) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await app(scope, receive, send)
        return (time.perf_counter() - started) / n

    async def measure() -> float:
        # the fastest of several rounds of each: other load on the machine
        # only ever adds time, so the minimum is the cost itself
        with_layer, without = [], []
        for _ in range(30):
            with_layer.append(await per_request(timed))
            without.append(await per_request(bare))
        return min(with_layer) - min(without)

    cost = asyncio.run(measure())
    print(f"timing layer: {cost * 1e6:.2f} us per request")
    assert cost < 10e-6  # "a few us" (measured 1.5 us on an idle machine)


def test_the_route_of_a_request_routing_never_saw() -> None:
    from portway.api.metrics import route_template

    fast = {"type": "http", "path": "/v1/namespaces/a/workloads/b"}
    assert route_template(fast) == WORKLOAD_ROUTE
    assert route_template({"type": "http", "path": "/v1/namespaces/a/workloads/b/x"}) == UNMATCHED
