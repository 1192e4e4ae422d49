"""The web dashboard in a real browser: Debian's chromium, headless, driven
by Playwright against a real ``portway server`` whose controller runs two
workloads, one on Docker and one on Podman, in targets labelled with regions.

One test walks what a user does: open ``/``, paste the token, see both
workloads, open one, find its replicas under their target and region, its
events, its drift matrix and a log line the replica printed arriving in the
live tail; leave the page (the log stream is cancelled), see the targets
and the conformance matrix. With ``PORTWAY_SCREENSHOT=path`` the workload page
is saved there too (scripts/screenshot-dashboard.sh makes docs/dashboard.png).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.conftest import engines_required
from tests.integration.e2e import remove_namespace
from tests.integration.server_process import ServerProcess, serving

pytestmark = [pytest.mark.docker, pytest.mark.podman]

CHROMIUM = Path(os.environ.get("PORTWAY_CHROMIUM", "/usr/bin/chromium"))
PODMAN_SOCKET = os.environ.get("PORTWAY_PODMAN_SOCKET", "/run/podman/podman.sock")
#: Playwright's wait for anything the page should show (it polls every 2-3 s)
SHOWN = 15_000
#: ms for two new workloads to become ready on a loaded machine
CONVERGED = 90_000


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"dash-{uuid.uuid4().hex[:8]}"
    yield name
    # the server is stopped by now: nothing recreates what is removed here
    for base_url in ("unix:///var/run/docker.sock", f"unix://{PODMAN_SOCKET}"):
        client = docker.DockerClient(base_url=base_url, timeout=60)
        try:
            remove_namespace(client, name)
        finally:
            client.close()


def _chromium() -> Path:
    if CHROMIUM.is_file():
        return CHROMIUM
    reason = f"no chromium at {CHROMIUM} (apt-get install chromium, or set PORTWAY_CHROMIUM)"
    if engines_required():
        pytest.fail(f"{reason}; the browser is required here", pytrace=False)
    pytest.skip(reason)


def _workload(namespace: str, name: str, target: str, replicas: int, marker: str) -> Any:
    # a marker line first (the tail must show it), then one line a second
    # (the tail must keep showing new ones); httpd answers the readiness probe
    script = (
        f"echo '<i>{marker}</i>'; httpd -p 8080 -h /www; "
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done"
    )
    return {
        "apiVersion": "portway.dev/v1",
        "kind": "Workload",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": "portway/busybox:latest",
            "replicas": replicas,
            "command": ["sh", "-c", script],
            "ports": [{"containerPort": 8080}],
            "probes": {"readiness": {"http": {"port": 8080}, "periodSeconds": 1}},
            "resources": {"memory": "64Mi"},
            "placement": {"targets": [target]},
        },
    }


def _cluster(server: ServerProcess, namespace: str, marker: str) -> None:
    """Regions on two targets (Docker and Podman) and a workload on each."""
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as http:
        labelled = http.patch(
            "/v1/targets/local-docker", json={"labels": ["region=us", "zone=us-1"]}
        )
        assert labelled.status_code == 200, labelled.text
        podman = {
            "name": "eu-podman",
            "address": f"podman://{PODMAN_SOCKET}",
            "labels": ["region=eu"],
        }
        added = http.post("/v1/targets", json=podman)
        assert added.status_code == 201, added.text
        documents = [
            _workload(namespace, "web", "local-docker", 2, marker),
            _workload(namespace, "api", "eu-podman", 1, "api-started"),
        ]
        # no wait: the controller converges while the browser starts, and the
        # page shows when both are ready
        applied = http.post("/v1/apply", json={"documents": documents})
        assert applied.status_code == 200, applied.text


def test_a_user_clicks_through_the_dashboard(tmp_path: Path, namespace: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    chromium = _chromium()
    marker = f"hello-dashboard-{uuid.uuid4().hex[:6]}"
    with serving(tmp_path / "home") as server:
        _cluster(server, namespace, marker)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(chromium), args=["--no-sandbox"], headless=True
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                failed: list[str] = []  # "METHOD url: net::ERR_…", for a failure's report
                page.on(
                    "requestfailed",
                    lambda request: failed.append(
                        f"{request.method} {request.url}: {request.failure}"
                    ),
                )

                # / leads to the dashboard, which asks for a token
                page.goto(f"{server.url}/")
                assert page.url == f"{server.url}/ui/"
                page.fill("#token", "pw_unknown_token")
                page.click("text=Use token")
                expect(page.locator("#login .error")).to_contain_text("did not accept the token")
                page.fill("#token", server.token)
                page.click("text=Use token")
                expect(page.locator("#who")).to_contain_text("admin")

                # the list: both workloads, ready, on their targets with regions
                web_row = page.locator(f'tr[data-workload="{namespace}/web"]')
                api_row = page.locator(f'tr[data-workload="{namespace}/api"]')
                expect(web_row).to_contain_text("Ready", timeout=CONVERGED)
                expect(api_row).to_contain_text("Ready", timeout=CONVERGED)
                expect(web_row).to_contain_text("2/2")
                expect(web_row).to_contain_text("local-docker (us)")
                expect(api_row).to_contain_text("eu-podman (eu)")
                expect(api_row).to_contain_text("1/1")

                page.select_option("#namespace", namespace)
                assert page.url.endswith(f"#/workloads?namespace={namespace}")
                expect(page.locator("#workloads tbody tr")).to_have_count(2)

                # the workload page
                web_row.get_by_role("link", name="web").click()
                assert page.url.endswith(f"#/workloads/{namespace}/web")
                group = page.locator('#replica-groups .region[data-region="us"]')
                expect(group.locator("h3")).to_have_text("Region us")
                target = group.locator('.target[data-target="local-docker"]')
                expect(target.locator("h4")).to_contain_text("healthy")
                for index in ("0", "1"):
                    row = target.locator(f'tr[data-replica="{index}"]')
                    expect(row).to_contain_text("running", timeout=SHOWN)
                    expect(row).to_contain_text("ready")
                    expect(row.locator("td").nth(4)).to_have_text(re.compile(r"^\d+[smhd]$"))
                expect(page.locator("#event-list")).to_contain_text("Started", timeout=SHOWN)

                drift = page.locator("#drift-matrix table")
                expect(drift.locator("thead")).to_contain_text(
                    "local-docker (docker)", timeout=SHOWN
                )
                expect(drift.locator("thead")).to_contain_text("eu-podman (podman)")
                # one row per field, one verdict per target (both targets here)
                command = drift.locator('tr[data-field="spec.command"]')
                expect(command).to_have_text(re.compile(r"spec\.command\s*honored\s*honored"))
                probe = drift.locator('tr[data-field="spec.probes.readiness.http"]')
                expect(probe).to_have_text(re.compile(r"readiness\.http\s*emulated\s*emulated"))
                expect(probe.locator("td").nth(1)).to_have_attribute("title", re.compile("probe"))

                log = page.locator("#log")
                # the line as printed, markup and all, as text
                expect(log).to_contain_text(f"<i>{marker}</i>", timeout=SHOWN)
                assert log.locator("i").count() == 0
                last = _last_tick(log.inner_text())
                # a line printed after the page opened the stream arrives live
                expect(log).to_contain_text(f"tick {last + 2}", timeout=SHOWN)
                if shot := os.environ.get("PORTWAY_SCREENSHOT"):
                    page.screenshot(path=shot, full_page=True)
                page.screenshot(path=str(tmp_path / "workload.png"), full_page=True)

                # leaving the page cancels the live tail
                page.click("nav >> text=Targets")
                expect(page.locator('tr[data-target="eu-podman"]')).to_contain_text("eu")
                docker_row = page.locator('tr[data-target="local-docker"]')
                expect(docker_row).to_contain_text("us")
                expect(docker_row).to_contain_text("healthy")
                expect(docker_row.locator("td").nth(7)).to_have_text("2")
                assert any("/logs" in entry for entry in failed), "the log stream was not closed"

                page.click("nav >> text=Conformance")
                header = page.locator("#conformance thead")
                for backend in ("docker", "podman", "containerd", "docker@sandboxed"):
                    expect(header).to_contain_text(backend)
                expect(page.locator('#conformance tr[data-feature="env"]')).to_contain_text("pass")
                assert errors == [], f"errors in the page: {errors}"
            except Exception as exc:  # an assertion, or a Playwright timeout
                # what the browser saw fail and what the server logged: a
                # failure in CI is then explained by its report alone
                raise AssertionError(
                    f"{exc}\nrequests that failed in the browser: {failed}\n"
                    f"server log (end):\n{server.log()[-3000:]}"
                ) from exc
            finally:
                browser.close()
        assert server.stop() == 0
    assert "Traceback" not in server.log()


def _last_tick(text: str) -> int:
    ticks = [int(n) for n in re.findall(r"tick (\d+)", text)]
    return max(ticks, default=0)
