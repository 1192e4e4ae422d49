"""``portway secret create|ls|rm`` in remote mode, against the real API app
in-process (the ``remote`` fixture of test_cli_remote.py): the same lines as
local mode on the same store, local mode's exit codes, and no value in any
output."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from tests.unit.api_support import Api, api, workload_doc  # noqa: F401  (the fixture)
from tests.unit.test_cli_remote import remote  # noqa: F401  (the fixture)

from portway.cli import output
from portway.cli import secrets as secrets_cli

VALUE = "remote-planted-value-7f3a"


def test_create_ls_rm_through_the_server(
    remote: Callable[..., Result],  # noqa: F811
    api: Api,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frozen = time.time()
    monkeypatch.setattr(secrets_cli, "age", lambda since, now=None: output.age(since, frozen))
    (tmp_path / "password").write_text(VALUE)
    outputs: list[str] = []

    def run(*argv: str, who: str = "deployer-a", code: int = 0) -> str:
        result = remote(*argv, who=who)
        assert result.exit_code == code, (argv, result.output)
        outputs.append(result.output)
        return result.output

    created = run(
        "secret", "create", "db", "-n", "team-a", "--from-file", str(tmp_path / "password")
    )
    assert created.strip() == "secret/db created in namespace team-a (keys: password; version 1)"
    stored = api.app.store.get("Secret", "team-a", "db")
    assert stored is not None and VALUE not in json.dumps(stored.spec)

    taken = run("secret", "create", "db", "-n", "team-a", "--from-literal", "password=x", code=1)
    assert "secret team-a/db already exists" in taken and "--update" in taken
    same = run(
        "secret",
        "create",
        "db",
        "-n",
        "team-a",
        "--from-file",
        str(tmp_path / "password"),
        "--update",
    )
    assert same.strip() == "secret/db unchanged in namespace team-a (keys: password; version 1)"
    changed = run(
        "secret", "create", "db", "-n", "team-a", "--from-literal", "password=new", "--update"
    )
    assert changed.strip() == "secret/db configured in namespace team-a (keys: password; version 2)"

    for argv in (
        ("secret", "ls", "-n", "team-a", "-o", "json"),
        ("secret", "ls", "-A"),
        ("secret", "ls", "-A", "-o", "yaml"),
    ):
        assert run(*argv, who="admin") == run(*argv, who="local"), argv
    listed = json.loads(run("secret", "ls", "-n", "team-a", "-o", "json", who="viewer-a"))
    assert [(s["name"], s["keys"], s["sizes"]) for s in listed["items"]] == [
        ("db", ["password"], {"password": 3})
    ]
    # a viewer reads names only; writing is a deployer's, in its own namespace
    denied = run(
        "secret", "create", "x", "-n", "team-a", "--from-literal", "k=v", who="viewer-a", code=5
    )
    assert 'may not create secrets in namespace "team-a"' in denied
    other = run("secret", "rm", "db", "-n", "team-b", code=5)
    assert 'may not delete secrets in namespace "team-b"' in other

    doc = workload_doc("web", secrets=[{"secret": "db", "key": "password", "mountPath": "/s/db"}])
    assert api.post("/v1/apply", json={"documents": [doc]}).status_code == 200
    in_use = run("secret", "rm", "db", "-n", "team-a", code=2)
    assert "used by workload(s) team-a/web" in in_use
    assert api.delete("/v1/namespaces/team-a/workloads/web").status_code == 200
    assert (
        run("secret", "rm", "db", "-n", "team-a").strip()
        == "secret/db removed from namespace team-a"
    )
    assert "not found" in run("secret", "rm", "db", "-n", "team-a", code=3)
    assert json.loads(run("secret", "ls", "-n", "team-a", "-o", "json")) == {"items": []}
    assert not [o for o in outputs if VALUE in o]
