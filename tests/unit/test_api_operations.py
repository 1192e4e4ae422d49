"""Workloads through the API over a fake engine: apply, get, list, replicas,
logs (ndjson), exec, plan, events, targets, tokens, delete."""

from __future__ import annotations

import base64
import json

from tests.unit.api_support import Api, converge, engine, workload_doc

from portway.drivers.base import ExecResult

A = "/v1/namespaces/team-a"


def _running(api: Api, name: str = "web", replicas: int = 2) -> None:
    answer = api.post("/v1/apply", json={"documents": [workload_doc(name, replicas=replicas)]})
    assert answer.status_code == 200, answer.text
    converge(api, f"team-a/{name}")


def test_apply_get_and_list(api: Api) -> None:
    answer = api.post("/v1/apply", json={"documents": [workload_doc("web")]})
    assert answer.json()["workloads"] == [
        {"namespace": "team-a", "name": "web", "outcome": "created", "generation": 1}
    ]
    got = api.get(f"{A}/workloads/web").json()
    assert got["spec"]["image"] == "portway/busybox:latest"
    assert (got["namespace"], got["name"], got["generation"], got["deleting"]) == (
        "team-a",
        "web",
        1,
        False,
    )
    again = api.post("/v1/apply", json={"documents": [workload_doc("web")]}).json()
    assert again["workloads"][0]["outcome"] == "unchanged"
    assert [w["name"] for w in api.get(f"{A}/workloads").json()["items"]] == ["web"]


def test_replicas_logs_and_exec(api: Api) -> None:
    _running(api)
    replicas = api.get(f"{A}/workloads/web/replicas").json()["items"]
    assert [(r["index"], r["state"], r["target"]) for r in replicas] == [
        (0, "running", "fake-1"),
        (1, "running", "fake-1"),
    ]
    fake = engine(api)
    for container in fake.containers():
        fake.log(container, f"hello from {container.index}")
        fake.log(container, "oops", stream="stderr")
    answer = api.get(f"{A}/workloads/web/logs", params={"replica": 1})
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert [(x["replica"], x["target"], x["stream"], x["line"]) for x in lines] == [
        (1, "fake-1", "stdout", "hello from 1"),
        (1, "fake-1", "stderr", "oops"),
    ]
    both = api.get(f"{A}/workloads/web/logs", params={"tail": 1}).text.splitlines()
    assert sorted(json.loads(x)["replica"] for x in both) == [0, 1]
    target = next(c for c in fake.containers() if c.index == 0)
    fake.exec_results[target.id] = ExecResult(3, b"out\n\xff")
    done = api.post(f"{A}/workloads/web/exec", json={"command": ["sh", "-c", "exit 3"]}).json()
    assert done["exitCode"] == 3
    assert done["stdout"] == "out\n\ufffd"
    assert base64.b64decode(done["output"]) == b"out\n\xff"


def test_delete_marks_deleting_then_the_controller_removes(api: Api) -> None:
    _running(api, replicas=1)
    answer = api.delete(f"{A}/workloads/web")
    assert answer.status_code == 200
    assert answer.json()["deleting"] is True
    assert api.get(f"{A}/workloads/web").json()["deleting"] is True
    converge(api, "team-a/web")
    assert api.get(f"{A}/workloads/web").status_code == 404
    assert engine(api).containers() == []


def test_plan_returns_the_drift_report(api: Api) -> None:
    answer = api.post("/v1/plan", json={"documents": [workload_doc("web")]})
    assert answer.status_code == 200
    (item,) = answer.json()["items"]
    assert item["workload"] == "team-a/web"
    assert item["targets"][0]["target"] == "fake-1"
    assert item["targets"][0]["deployable"]["strict"] is True
    assert api.get(f"{A}/workloads/web").status_code == 404  # a plan writes nothing


def test_events_list_by_namespace(api: Api) -> None:
    _running(api, replicas=1)
    events = api.get(f"{A}/events").json()["items"]
    assert events and all(e["namespace"] == "team-a" for e in events)
    newest = events[-1]["id"]
    assert api.get("/v1/events", params={"since": newest}).json()["items"] == []


def test_targets_cordon_patch_and_remove(api: Api) -> None:
    assert api.post("/v1/targets/fake-1/cordon").json() == {"name": "fake-1", "changed": True}
    assert api.get("/v1/targets/fake-1").json()["cordoned"] is True
    patched = api.request("PATCH", "/v1/targets/fake-1", json={"labels": ["zone=a"]})
    assert patched.json()["labels"] == {"zone": "a"}
    bad = api.request("PATCH", "/v1/targets/fake-1", json={"labels": ["no-equals"]})
    assert bad.status_code == 422 and "KEY=VALUE" in bad.json()["error"]["message"]
    assert api.delete("/v1/targets/fake-1").json() == {"name": "fake-1", "replicas": []}
    assert api.get("/v1/targets/fake-1").status_code == 404


def test_tokens_created_over_the_api_work_and_are_shown_once(api: Api) -> None:
    body = {"user": "erin", "name": "ci", "bindings": [{"role": "viewer", "namespace": "team-a"}]}
    created = api.post("/v1/tokens", json=body)
    assert created.status_code == 201
    token = created.json()["token"]
    who = api.client.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    assert who["user"] == "erin" and who["bindings"] == [{"role": "viewer", "namespace": "team-a"}]
    listed = api.get("/v1/tokens").json()["items"]
    assert token not in json.dumps(listed)
    assert api.delete(f"/v1/tokens/{created.json()['id']}").json()["revoked"] is True


def test_a_namespace_policy_applied_with_its_workloads_judges_them(api: Api) -> None:
    policy = {
        "apiVersion": "portway.dev/v1",
        "kind": "Namespace",
        "metadata": {"name": "team-a"},
        "spec": {"images": {"allowedPrefixes": ["registry.example/"]}},
    }
    body = {"documents": [policy, workload_doc("web")], "file": "team-a.yaml"}
    refused = api.post("/v1/apply", "deployer-a", json=body)
    assert refused.status_code == 403  # a namespace's policy needs its admin
    assert "namespaces" in refused.json()["error"]["message"]
    judged = api.post("/v1/apply", json=body)
    assert judged.status_code == 422  # the workload's image breaks the new policy
    assert judged.json()["error"]["issues"][0]["document"] == 2
    assert api.get("/v1/namespaces/team-a").status_code == 404  # nothing written
    body["documents"] = [policy]
    applied = api.post("/v1/apply", json=body).json()
    assert applied["namespaces"] == [{"name": "team-a", "outcome": "created", "violators": []}]
    assert api.get("/v1/namespaces/team-a").json()["source"] == "object"
