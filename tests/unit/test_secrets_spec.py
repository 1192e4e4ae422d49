"""spec.secrets: validation with located messages, the JSON Schema, and
the features the planner judges."""

from __future__ import annotations

import textwrap

import pytest

from portway.capabilities.vocabulary import Feature, uses
from portway.errors import InputError, Issue
from portway.spec.loader import load_workloads_text
from portway.spec.schema import workload_json_schema

HEAD = """\
apiVersion: portway.dev/v1
kind: Workload
metadata: {name: web, namespace: team-a}
spec:
  image: portway/busybox:latest
"""


def load(body: str) -> list[Issue] | None:
    try:
        load_workloads_text(HEAD + textwrap.indent(textwrap.dedent(body), "  "), "w.yaml")
    except InputError as exc:
        return exc.issues
    return None


def test_a_file_secret_with_defaults() -> None:
    text = HEAD + "  secrets:\n    - {secret: db, key: password, mountPath: /run/secrets/db}\n"
    [workload] = load_workloads_text(text, "w.yaml")
    [ref] = workload.spec.secrets
    assert (ref.secret, ref.key, ref.mount_path, ref.mode, ref.env) == (
        "db",
        "password",
        "/run/secrets/db",
        0o400,
        None,
    )
    assert [(u.path, u.feature) for u in uses(workload.spec) if "secrets" in u.path] == [
        ("spec.secrets[0].mountPath", Feature.SECRETS_FILES)
    ]


@pytest.mark.parametrize("mode", ["0440", "'0440'", "'440'"])
def test_mode_is_octal_in_yaml_and_text(mode: str) -> None:
    text = HEAD + f"  secrets:\n    - {{secret: db, key: k, mountPath: /s, mode: {mode}}}\n"
    [workload] = load_workloads_text(text, "w.yaml")
    assert workload.spec.secrets[0].mode == 0o440


def test_env_opt_in_uses_the_env_feature() -> None:
    text = HEAD + "  secrets:\n    - {secret: db, key: password, env: DB_PASSWORD}\n"
    [workload] = load_workloads_text(text, "w.yaml")
    assert [(u.path, u.feature) for u in uses(workload.spec) if "secrets" in u.path] == [
        ("spec.secrets[0].env", Feature.ENV)
    ]


@pytest.mark.parametrize(
    ("item", "path", "message"),
    [
        ("{secret: db, key: k}", "spec.secrets[0]", "give mountPath"),
        ("{secret: db, key: k, mountPath: run/db}", "spec.secrets[0].mountPath", "absolute"),
        ("{secret: db, key: k, mountPath: /run/../etc}", "spec.secrets[0].mountPath", "'..'"),
        ("{secret: db, key: k, mountPath: /proc/x}", "spec.secrets[0].mountPath", "/proc"),
        ("{secret: db, key: k, mountPath: /s, mode: 04755}", "spec.secrets[0].mode", "0777"),
        ("{secret: db, key: k, mountPath: /s, mode: '0x1'}", "spec.secrets[0].mode", "octal"),
        ("{secret: db, key: k, mountPath: /s, mode: 0200}", "spec.secrets[0].mode", "nobody"),
        ("{secret: DB, key: k, mountPath: /s}", "spec.secrets[0].secret", "secret name"),
        ("{secret: db, key: a/b, mountPath: /s}", "spec.secrets[0].key", "secret key"),
        ("{secret: db, key: k, env: 1X}", "spec.secrets[0].env", "variable name"),
        ("{secret: db, key: k, mountPath: /s, extra: 1}", "spec.secrets[0].extra", ""),
    ],
)
def test_bad_references_are_located(item: str, path: str, message: str) -> None:
    issues = load(f"secrets:\n  - {item}\n")
    assert issues is not None
    [issue] = issues
    assert issue.path == path
    assert issue.file == "w.yaml" and issue.line == 7
    assert message in issue.message


def test_paths_and_variables_cannot_collide() -> None:
    issues = load(
        """\
        env: {DB: x}
        volumes: [{name: v, type: tmpfs, mountPath: /data}]
        secrets:
          - {secret: db, key: k, mountPath: /data}
        """
    )
    assert issues is not None and "already mounted" in issues[0].message
    issues = load(
        """\
        env: {DB: x}
        secrets:
          - {secret: db, key: k, env: DB}
        """
    )
    assert issues is not None and "already set" in issues[0].message


def test_json_schema_describes_secrets() -> None:
    schema = workload_json_schema()
    text = str(schema)
    assert "secrets" in text and "mountPath" in text
    assert "SecretRef" in schema.get("$defs", {})


def test_planner_rejects_secret_files_where_a_target_lacks_them() -> None:
    from portway.capabilities.planner import TargetProfile, Verdict, plan_for_target
    from portway.drivers.runtime_handlers import GVISOR_GAPS

    text = HEAD + "  secrets:\n    - {secret: db, key: password, mountPath: /run/secrets/db}\n"
    [workload] = load_workloads_text(text, "w.yaml")
    profile = TargetProfile("remote", "docker", frozenset(Feature) - {Feature.SECRETS_FILES})
    [verdict] = [f for f in plan_for_target(workload.spec, profile).fields if "secrets" in f.path]
    assert (verdict.path, verdict.verdict) == ("spec.secrets[0].mountPath", Verdict.REJECTED)
    assert "9p" in GVISOR_GAPS[Feature.SECRETS_FILES]
