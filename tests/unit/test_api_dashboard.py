"""The dashboard's static files (no token, strict headers) next to an API
that still needs one; and the drift route the dashboard reads."""

from __future__ import annotations

import re

from tests.unit.api_support import Api, converge, workload_doc

from portway.api.ui import STATIC_DIR

A = "/v1/namespaces/team-a"


def test_the_page_and_its_files_need_no_token_but_the_api_does(api: Api) -> None:
    page = api.client.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="app.js">' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    script = api.client.get("/ui/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert api.client.get("/ui/style.css").headers["content-type"].startswith("text/css")
    assert api.client.get("/v1/workloads").status_code == 401
    assert api.client.get(f"{A}/workloads/web/drift").status_code == 401


def test_root_redirects_to_the_dashboard(api: Api) -> None:
    answer = api.client.get("/", follow_redirects=False)
    assert answer.status_code == 307
    assert answer.headers["location"].endswith("/ui/")
    bare = api.client.get("/ui", follow_redirects=False)
    assert bare.status_code == 307 and bare.headers["location"].endswith("/ui/")


def test_only_the_dashboard_files_are_served(api: Api) -> None:
    assert api.client.get("/ui/missing.js").status_code == 404
    assert api.client.get("/ui/../pyproject.toml").status_code == 404
    assert api.client.get("/ui/%2e%2e/ui.py").status_code == 404


def test_every_module_the_page_imports_is_shipped() -> None:
    sources = {p.name: p.read_text() for p in STATIC_DIR.glob("*.js")}
    imported = {
        name for text in sources.values() for name in re.findall(r'from "\./([\w-]+\.js)"', text)
    }
    assert imported, "the modules import one another"
    assert imported <= set(sources), f"imported but not shipped: {imported - set(sources)}"


def test_no_module_parses_data_as_markup() -> None:
    """Every value reaches the page as text (dom.js): no HTML parsing sinks."""
    for path in STATIC_DIR.glob("*.js"):
        text = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{path.name} uses {sink}"


def test_drift_of_a_stored_workload_on_every_target(api: Api) -> None:
    applied = api.post("/v1/apply", json={"documents": [workload_doc("web", replicas=2)]})
    assert applied.status_code == 200, applied.text
    answer = api.get(f"{A}/workloads/web/drift", "viewer-a")
    assert answer.status_code == 200, answer.text
    [item] = answer.json()["items"]
    assert (item["workload"], item["file"]) == ("team-a/web", "team-a/web")
    [target] = item["targets"]
    assert (target["target"], target["driver"]) == ("fake-1", "fake")
    verdicts = {f["path"]: f["verdict"] for f in target["fields"]}
    assert verdicts["spec.command"] == "honored"
    assert target["deployable"] == {"strict": True, "lenient": True}


def test_drift_needs_read_access_and_an_existing_workload(api: Api) -> None:
    api.post("/v1/apply", json={"documents": [workload_doc("web")]})
    forbidden = api.get(f"{A}/workloads/web/drift", "deployer-b")
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "Forbidden"
    missing = api.get(f"{A}/workloads/nope/drift")
    assert missing.status_code == 404
    assert "nope" in missing.json()["error"]["message"]


def test_replicas_say_when_their_container_was_created(api: Api) -> None:
    api.post("/v1/apply", json={"documents": [workload_doc("web")]})
    converge(api, "team-a/web")
    [replica] = api.get(f"{A}/workloads/web/replicas").json()["items"]
    assert replica["state"] == "running"
    assert replica["createdAt"] is not None and replica["createdAt"].startswith("20")
