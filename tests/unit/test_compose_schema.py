"""Compose files are checked against the Compose Specification's JSON Schema
(vendored as data): the real files of shared/inputs and tests/data pass it
(with the newer keys listed in spec.compose.schema), and what it finds is
reported with file, line, service and key path."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from portway.errors import SpecError
from portway.spec.compose import ComposeOptions
from portway.spec.compose.project import load_project
from portway.spec.compose.schema import NEWER_KEYS, SCHEMA_FILE, schema_issues
from portway.spec.compose.source import read_compose_file

REPO = Path(__file__).resolve().parents[2]
SHARED = Path("/work/shared/inputs/compose")
REAL_FILES = sorted((REPO / "tests" / "data" / "compose").rglob("*.y*ml")) + sorted(
    SHARED.rglob("*.y*ml")
)


@pytest.mark.parametrize("path", REAL_FILES, ids=[f"{p.parent.name}/{p.name}" for p in REAL_FILES])
def test_real_compose_files_pass_the_schema(path: Path) -> None:
    assert schema_issues(read_compose_file(path)) == []


def test_the_vendored_schema_is_the_published_one() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["title"] == "Compose Specification"
    service = schema["definitions"]["service"]["properties"]
    # the widening happens at load time: the file itself lacks the newer keys
    assert "post_start" not in service
    assert ("/definitions/service/properties", "post_start", {}) in NEWER_KEYS


def test_schema_problems_name_file_line_service_and_key(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            services:
              a:
                image: x
                healthcheck: {test: [CMD, "true"], retries: three}
                volumes:
                  - {type: volume, source: data, target: /d, volume: {nocopy: "yes"}}
                ports:
                  - {target: 80, published: 8080, protocl: tcp}
                depends_on:
                  b: {condition: service_startd}
                imgae: y
              b:
                image: x
            volumes:
              data: {}
            """
        )
    )
    with pytest.raises(SpecError) as caught:
        load_project(path, ComposeOptions(environ={}))
    found = {(i.path, i.line): i.message for i in caught.value.issues}
    assert found == {
        ("services.a.imgae", 11): "unknown service key 'imgae'",  # portway's own, once
        ("services.a.depends_on.b.condition", 10): "expected one of service_started, "
        "service_healthy, service_completed_successfully, got 'service_startd' (Compose schema)",
        ("services.a.healthcheck.retries", 4): "expected number, got string 'three' "
        "(Compose schema)",
        ("services.a.ports[0].protocl", 8): "unknown field (Compose schema)",
        ("services.a.volumes[0].volume.nocopy", 6): "expected boolean, got string 'yes' "
        "(Compose schema)",
    }
    hints = {i.path: i.hint for i in caught.value.issues}
    assert hints["services.a.ports[0].protocl"] == "did you mean 'protocol'?"


def test_included_files_are_checked_too(tmp_path: Path) -> None:
    (tmp_path / "more.yaml").write_text("services:\n  b:\n    image: x\n    scale: [1]\n")
    path = tmp_path / "compose.yaml"
    path.write_text("include: [more.yaml]\nservices:\n  a: {image: x, tty: maybe}\n")
    with pytest.raises(SpecError) as caught:
        load_project(path, ComposeOptions(environ={}))
    where = {(Path(i.file or "").name, i.path) for i in caught.value.issues}
    assert ("compose.yaml", "services.a.tty") in where
    assert ("more.yaml", "services.b.scale") in where
