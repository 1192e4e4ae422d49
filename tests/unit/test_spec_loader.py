"""Loading workload files: every problem located by file, document, path and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from portway.errors import InputError, Issue, PortwayError, SpecError
from portway.spec import loader
from portway.spec.loader import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    load_documents,
    load_documents_text,
    load_workloads,
    load_workloads_text,
)

FILE = "app.yaml"

WEB = """\
apiVersion: portway.dev/v1
kind: Workload
metadata:
  name: web
spec:
  image: portway/busybox:latest
  ports:
    - containerPort: 8080
      hostPort: 18080
"""


def yml(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def issues_of(text: str) -> list[Issue]:
    with pytest.raises(SpecError) as exc:
        load_workloads_text(text, FILE)
    assert isinstance(exc.value, InputError)
    assert isinstance(exc.value, PortwayError)
    assert exc.value.exit_code == 2
    return exc.value.issues


def single_issue(text: str) -> Issue:
    issues = issues_of(text)
    assert len(issues) == 1, [str(i) for i in issues]
    return issues[0]


# --- good files ------------------------------------------------------------


def test_single_workload() -> None:
    [w] = load_workloads_text(WEB, FILE)
    assert w.key == "default/web"
    assert w.spec.ports[0].container_port == 8080
    assert w.spec.ports[0].host_port == 18080


def test_multi_document_file_skips_empty_documents() -> None:
    text = "---\n" + WEB + "---\n# only a comment\n---\n" + WEB.replace("web", "api") + "...\n"
    workloads = load_workloads_text(text, FILE)
    assert [w.key for w in workloads] == ["default/web", "default/api"]


def test_load_documents_numbers_documents_counting_empty_ones(tmp_path: Path) -> None:
    text = WEB + "---\n---\n" + WEB.replace("web", "api")
    pairs = load_documents_text(text, FILE)
    assert [(doc, w.key) for doc, w in pairs] == [(1, "default/web"), (3, "default/api")]
    path = tmp_path / "w.yaml"
    path.write_text(text, encoding="utf-8")
    assert [(doc, w.key) for doc, w in load_documents(path)] == [
        (1, "default/web"),
        (3, "default/api"),
    ]


def test_same_name_in_two_namespaces_is_fine() -> None:
    other = WEB.replace("  name: web\n", "  name: web\n  namespace: other\n")
    workloads = load_workloads_text(WEB + "---\n" + other, FILE)
    assert [w.key for w in workloads] == ["default/web", "other/web"]


def test_timestamps_stay_strings_and_bom_is_accepted(tmp_path: Path) -> None:
    text = WEB + "  env:\n    RELEASED: 2024-05-01\n"
    path = tmp_path / "w.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    [w] = load_workloads(path)
    assert w.spec.env == {"RELEASED": "2024-05-01"}


def test_load_from_path_and_str(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(WEB, encoding="utf-8")
    assert [w.key for w in load_workloads(path)] == ["default/web"]
    assert [w.key for w in load_workloads(str(path))] == ["default/web"]


# --- reading files ---------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as exc:
        load_workloads(path)
    assert exc.value.issues == [Issue("file not found", file=str(path))]
    assert str(exc.value) == f"{path}: file not found"


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as exc:
        load_workloads(tmp_path)
    [issue] = exc.value.issues
    assert issue.file == str(tmp_path)
    assert issue.message == "is a directory, not a workload file"


def test_unreadable_path_is_a_spec_error() -> None:
    with pytest.raises(SpecError) as exc:
        load_workloads("bad\0name.yaml")
    [issue] = exc.value.issues
    assert issue.file == "bad\0name.yaml"
    assert issue.message.startswith("cannot read the file")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(WEB.encode() + "  env: {NAME: 'Zoë'}\n".encode("latin-1"))
    with pytest.raises(SpecError) as exc:
        load_workloads(path)
    [issue] = exc.value.issues
    assert issue.file == str(path)
    assert issue.line == 10
    assert issue.message.startswith("the file is not valid UTF-8 (byte 0xeb at offset ")
    assert issue.hint == "save the file as UTF-8"


def test_file_too_large(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(WEB.encode() + b"#" * MAX_FILE_BYTES)
    with pytest.raises(SpecError) as exc:
        load_workloads(path)
    [issue] = exc.value.issues
    assert issue.message == "the file is larger than 4 MiB; refusing to read it"
    assert issue.file == str(path)
    assert issue_of_text_too_large().message == issue.message


def issue_of_text_too_large() -> Issue:
    return single_issue("#" * (MAX_FILE_BYTES + 1))


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing here\n", "---\n---\n...\n", "~\n"])
def test_file_without_workload(text: str) -> None:
    issue = single_issue(text)
    assert issue.message == "no workload found: the file is empty or holds only empty documents"
    assert issue.file == FILE
    assert issue.hint == "a workload starts with `apiVersion: portway.dev/v1` and `kind: Workload`"


# --- YAML syntax -----------------------------------------------------------


def test_malformed_yaml_reports_line_and_column() -> None:
    issue = single_issue(WEB + "  env: [a, b\n")
    assert (issue.file, issue.document, issue.path, issue.line) == (FILE, 1, "", 11)
    assert issue.message.startswith("invalid YAML: expected ',' or ']', but got '<stream end>'")
    assert "(line 11, column 1)" in issue.message
    assert "while parsing a flow sequence at line 10, column 8" in issue.message


def test_tab_indentation_gets_a_hint() -> None:
    issue = single_issue(WEB.replace("  image:", "\timage:"))
    assert issue.line == 6
    assert issue.message.startswith("invalid YAML: found character '\\t'")
    assert issue.hint == "indent with spaces, not tabs"


def test_yaml_error_in_later_document_keeps_earlier_issues() -> None:
    bad_name = WEB.replace("name: web", "name: Web")
    issues = issues_of(bad_name + "---\n" + WEB + "---\nkey: [unclosed\n")
    assert [(i.document, i.path, i.line) for i in issues] == [
        (1, "metadata.name", 4),
        (3, "", 22),
    ]
    assert issues[0].message.startswith("name 'Web' is invalid")
    assert issues[1].message.startswith("invalid YAML:")


def test_control_characters_are_refused() -> None:
    issue = single_issue(WEB + "  args: ['\x07']\n")
    assert issue.line == 10
    assert issue.document == 1
    assert issue.message == (
        "invalid YAML: the file contains character U+0007, which YAML does not allow"
    )


# --- document shape and header -----------------------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("- a\n- b\n", "a list"),
        ("just text\n", "string 'just text'"),
        ("42\n", "integer 42"),
    ],
)
def test_document_must_be_a_mapping(text: str, found: str) -> None:
    issue = single_issue(WEB + "---\n" + text)
    assert (issue.document, issue.path, issue.line) == (2, "", 11)
    assert issue.message == f"a workload document must be a mapping, found {found}"
    assert issue.hint == "a workload starts with `apiVersion: portway.dev/v1` and `kind: Workload`"


def test_wrong_api_version_and_kind() -> None:
    text = WEB.replace("portway.dev/v1", "apps/v1").replace("kind: Workload", "kind: Deployment")
    issues = issues_of(text)
    assert [(i.path, i.line, i.message, i.hint) for i in issues] == [
        (
            "apiVersion",
            1,
            "unsupported apiVersion 'apps/v1'",
            "expected `apiVersion: portway.dev/v1`",
        ),
        ("kind", 2, "unsupported kind 'Deployment'", "`kind: Workload` or `kind: Namespace`"),
    ]


def test_api_version_of_wrong_type() -> None:
    issue = single_issue(WEB.replace("apiVersion: portway.dev/v1", "apiVersion: 1"))
    assert issue.message == "unsupported apiVersion: integer 1"
    assert issue.hint == "expected `apiVersion: portway.dev/v1`"


def test_missing_kind() -> None:
    issue = single_issue(WEB.replace("kind: Workload\n", ""))
    assert (issue.document, issue.path, issue.line) == (1, "kind", 1)
    assert issue.message == "missing required field 'kind'"
    assert issue.hint == "`kind: Workload` or `kind: Namespace`"


# --- field validation --------------------------------------------------------


def test_missing_fields_point_at_the_enclosing_mapping() -> None:
    text = yml(
        """
        apiVersion: portway.dev/v1
        kind: Workload
        metadata:
          namespace: team
        spec:
          ports:
            - hostPort: 80
        """
    )
    issues = issues_of(text)
    assert [(i.path, i.line, i.message) for i in issues] == [
        ("metadata.name", 3, "missing required field 'name'"),
        ("spec.image", 5, "missing required field 'image'"),
        ("spec.ports[0].containerPort", 7, "missing required field 'containerPort'"),
    ]


def test_missing_metadata_points_at_the_document() -> None:
    issue = single_issue("---\napiVersion: portway.dev/v1\nkind: Workload\nspec: {image: x}\n")
    assert (issue.path, issue.line, issue.message) == (
        "metadata",
        2,
        "missing required field 'metadata'",
    )


def test_wrong_types_say_what_was_expected_and_found() -> None:
    text = WEB + (
        "  replicas: three\n"
        "  command: httpd -f\n"
        "  env:\n"
        "    DEBUG: true\n"
        "    PORT: 8080\n"
        "  resources: [1]\n"
    )
    issues = issues_of(text)
    assert [(i.path, i.line, i.message, i.hint) for i in issues] == [
        ("spec.replicas", 10, "expected an integer, found string 'three'", None),
        ("spec.command", 11, "expected a list, found string 'httpd -f'", None),
        (
            "spec.env.DEBUG",
            13,
            "expected a string, found boolean true",
            'quote it to make it a string: "true"',
        ),
        (
            "spec.env.PORT",
            14,
            "expected a string, found integer 8080",
            'quote it to make it a string: "8080"',
        ),
        ("spec.resources", 15, "expected a mapping, found a list", None),
    ]


def test_empty_value_for_a_mapping() -> None:
    issue = single_issue(
        WEB.replace("  ports:\n    - containerPort: 8080\n      hostPort: 18080\n", "")
        + "  security:\n"
    )
    assert (issue.path, issue.line) == ("spec.security", 7)
    assert issue.message == "expected a mapping, found null (an empty value)"


def test_range_and_enum_errors() -> None:
    text = WEB + "      protocol: TCP\n    - containerPort: 70000\n"
    issues = issues_of(text)
    assert [(i.path, i.line, i.message) for i in issues] == [
        ("spec.ports[0].protocol", 10, "must be 'tcp' or 'udp', found string 'TCP'"),
        (
            "spec.ports[1].containerPort",
            11,
            "must be less than or equal to 65535, found integer 70000",
        ),
    ]


def test_value_errors_lose_pydantic_prefix() -> None:
    text = WEB + "  resources:\n    cpu: 2000\n    memory: 1Mi\n"
    issues = issues_of(text)
    assert [(i.path, i.line, i.message) for i in issues] == [
        ("spec.resources.cpu", 11, "cpu must be more than 0 and at most 1024 cores"),
        ("spec.resources.memory", 12, "memory must be at least 4Mi (engines refuse less)"),
    ]


def test_cross_field_errors_point_at_the_model() -> None:
    text = WEB + "  replicas: 2\n  restart:\n    policy: never\n    maxRetries: 2\n"
    issues = issues_of(text)
    assert [(i.path, i.line, i.message) for i in issues] == [
        ("spec.restart", 11, "maxRetries applies only to policy 'on-failure'"),
    ]


def test_probe_port_not_declared() -> None:
    issue = single_issue(WEB + "  probes:\n    liveness:\n      tcp: {port: 9090}\n")
    assert (issue.path, issue.line) == ("spec", 5)
    assert issue.message.startswith("the liveness probe uses port 9090, which is not in ports")


def test_label_keys_with_dots_are_quoted_in_paths() -> None:
    text = WEB.replace("  name: web\n", "  name: web\n  labels:\n    app.kubernetes.io/name: 7\n")
    issue = single_issue(text)
    assert issue.path == 'metadata.labels["app.kubernetes.io/name"]'
    assert issue.line == 6
    assert issue.message == "expected a string, found integer 7"


def test_sexagesimal_user_gets_quote_hint() -> None:
    issue = single_issue(WEB + "  security:\n    user: 1000:10\n")
    assert (issue.path, issue.line) == ("spec.security.user", 11)
    assert issue.message == "expected a string, found integer 60010"
    assert issue.hint == 'quote it to make it a string: "1000:10"'


# --- unknown fields ----------------------------------------------------------


def test_unknown_field_suggests_the_closest_name() -> None:
    issue = single_issue(WEB + "    - contianerPort: 9090\n")
    assert (issue.file, issue.document, issue.path, issue.line) == (
        FILE,
        1,
        "spec.ports[1].contianerPort",
        10,
    )
    assert issue.message == "unknown field 'contianerPort'"
    assert issue.hint == "did you mean 'containerPort'?"
    assert str(issue) == (
        "app.yaml:10, document 1, spec.ports[1].contianerPort: "
        "unknown field 'contianerPort' (did you mean 'containerPort'?)"
    )


@pytest.mark.parametrize(
    ("extra", "path", "hint"),
    [
        ("  replica: 2\n", "spec.replica", "did you mean 'replicas'?"),
        ("  Image2: x\n", "spec.Image2", "did you mean 'image'?"),
        ("  restart: {maxretries: 1, policy: on-failure}\n", "spec.restart.maxretries",
         "did you mean 'maxRetries'?"),
        ("  probes: {liveness: {tcp: {port: 8080}, periodSecond: 1}}\n",
         "spec.probes.liveness.periodSecond", "did you mean 'periodSeconds'?"),
        ("  volumes: [{name: v, type: tmpfs, mountpath: /v}]\n", "spec.volumes[0].mountpath",
         "did you mean 'mountPath'?"),
        ("  security: {capabilities: {drp: [ALL]}}\n", "spec.security.capabilities.drp",
         "did you mean 'drop'?"),
    ],
)  # fmt: skip
def test_unknown_field_suggestions_walk_the_model(extra: str, path: str, hint: str) -> None:
    issue = single_issue(WEB + extra)
    assert issue.path == path
    assert issue.line == 10
    assert issue.hint == hint


def test_snake_case_name_is_unknown_and_suggests_camel_case() -> None:
    issue = single_issue(WEB + "      host_ip: 0.0.0.0\n")
    assert (issue.path, issue.line) == ("spec.ports[0].host_ip", 10)
    assert issue.message == "unknown field 'host_ip'"
    assert issue.hint == "did you mean 'hostIp'? field names are camelCase"


def test_snake_case_name_next_to_camel_case_is_reported_once() -> None:
    issue = single_issue(WEB + "      container_port: 81\n")
    assert (issue.path, issue.line) == ("spec.ports[0].container_port", 10)
    assert issue.hint == "did you mean 'containerPort'? field names are camelCase"


def test_unknown_field_without_close_match_lists_valid_fields() -> None:
    issue = single_issue(WEB + "      banana: 1\n")
    assert issue.path == "spec.ports[0].banana"
    assert issue.hint == "valid fields: name, containerPort, protocol, hostPort, hostIp"


def test_unknown_top_level_field() -> None:
    issue = single_issue(WEB + "status: {}\n")
    assert (issue.path, issue.line) == ("status", 10)
    assert issue.hint == "valid fields: apiVersion, kind, metadata, spec"


def test_extensions_take_any_keys() -> None:
    [w] = load_workloads_text(
        WEB + "  extensions:\n    docker: {shmSize: 64Mi, init: true}\n", FILE
    )
    assert w.spec.extensions == {"docker": {"shmSize": "64Mi", "init": True}}


# --- YAML features we refuse ---------------------------------------------------


def test_duplicate_key() -> None:
    issue = single_issue(WEB + "  image: other:1\n")
    assert (issue.document, issue.path, issue.line) == (1, "spec.image", 10)
    assert issue.message == "duplicate key 'image'"
    assert issue.hint == "first given on line 6"


def test_anchors_and_aliases_are_refused() -> None:
    issue = single_issue(WEB + "  env: &common {A: b}\n")
    assert (issue.document, issue.line) == (1, 10)
    assert issue.message == "YAML anchors (&common) are not supported (line 10, column 8)"
    assert issue.hint == "write the repeated values out in full"


def test_billion_laughs_is_refused_at_the_first_anchor() -> None:
    text = 'a: &a ["lol", "lol"]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n'
    issue = single_issue(text)
    assert issue.line == 1
    assert issue.message.startswith("YAML anchors (&a) are not supported")


def test_undefined_alias_is_refused() -> None:
    issue = single_issue(WEB + "  env: *nothing\n")
    assert issue.line == 10
    assert issue.message.startswith("YAML aliases (*nothing) are not supported")


def test_python_tags_are_refused() -> None:
    issue = single_issue(WEB + "  command: !!python/object/apply:os.system [echo hi]\n")
    assert (issue.path, issue.line) == ("spec.command", 10)
    assert issue.message == "YAML tag '!!python/object/apply:os.system' is not supported"


@pytest.mark.parametrize(
    ("value", "tag"),
    [("!!binary aGk=", "!!binary"), ("!!set {a, b}", "!!set"), ("!custom x", "!custom")],
)
def test_other_tags_are_refused(value: str, tag: str) -> None:
    issue = single_issue(WEB + f"  args: {value}\n")
    assert issue.path == "spec.args"
    assert issue.message == f"YAML tag {tag!r} is not supported"


def test_bad_explicit_scalar() -> None:
    issue = single_issue(WEB + "  replicas: !!int many\n")
    assert (issue.path, issue.line, issue.message) == (
        "spec.replicas",
        10,
        "'many' is not an integer",
    )


def test_non_string_keys_are_refused() -> None:
    issues = issues_of(WEB + "  env:\n    1: a\n    true: b\n    [x]: c\n")
    assert [(i.path, i.line, i.message, i.hint) for i in issues] == [
        ("spec.env", 11, "key '1' is read as an integer; keys must be strings", 'quote it: "1"'),
        (
            "spec.env",
            12,
            "key 'true' is read as a boolean; keys must be strings",
            'quote it: "true"',
        ),
        ("spec.env", 13, "keys must be strings, found a list", None),
    ]


def test_merge_keys_are_refused() -> None:
    issue = single_issue(WEB + "  env:\n    <<: {A: b}\n")
    assert (issue.path, issue.line) == ("spec.env", 11)
    assert issue.message == "merge keys (<<) are not supported"


def test_deep_nesting_is_refused() -> None:
    issue = single_issue("a: " + "[" * (MAX_DEPTH + 10) + "]" * (MAX_DEPTH + 10) + "\n")
    assert issue.line == 1
    assert issue.message.startswith(f"document is nested more than {MAX_DEPTH} levels deep")


def test_too_many_nodes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # the real limit (100k) takes seconds to reach; the check is the same
    monkeypatch.setattr(loader, "MAX_NODES", 1000)
    issue = single_issue(WEB + "---\n" + "a: [" + "1," * 1000 + "]\n")
    assert (issue.document, issue.line) == (2, 11)
    assert issue.message.startswith("the file has more than 1000 values (line 11, column ")


def test_node_limit_counts_the_whole_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "MAX_NODES", 1000)
    doc = "---\n" + "- 1\n" * 400
    issues = issues_of(doc * 3)
    assert [i.document for i in issues] == [1, 2, 3]
    assert issues[-1].message.startswith("the file has more than 1000 values")


# --- several documents, several problems --------------------------------------


def test_duplicate_workload_names_both_documents() -> None:
    issues = issues_of(WEB + "---\n" + WEB + "---\n" + WEB)
    assert [(i.document, i.path, i.line, i.message) for i in issues] == [
        (
            2,
            "metadata.name",
            14,
            "duplicate workload 'default/web': documents 1 and 2 both define it",
        ),
        (
            3,
            "metadata.name",
            24,
            "duplicate workload 'default/web': documents 1 and 3 both define it",
        ),
    ]


def test_all_problems_of_all_documents_are_reported_together() -> None:
    doc1 = WEB.replace("containerPort", "contianerPort")
    doc3 = WEB.replace("portway/busybox:latest", "Bad Image").replace("web", "api")
    doc4 = WEB.replace("web", "db") + "  image: again\n"
    text = doc1 + "---\n- not a mapping\n---\n" + doc3 + "---\n" + doc4
    with pytest.raises(SpecError) as exc:
        load_workloads_text(text, FILE)
    issues = exc.value.issues
    assert [(i.document, i.path, i.line) for i in issues] == [
        (1, "spec.ports[0].contianerPort", 8),
        (2, "", 11),
        (3, "spec.image", 18),
        (4, "spec.image", 32),
    ]
    assert [i.message for i in issues] == [
        "unknown field 'contianerPort'",
        "a workload document must be a mapping, found a list",
        "'Bad Image' is not a valid image reference; expected e.g. "
        "'portway/busybox:latest' or 'registry:5000/team/app@sha256:<digest>'",
        "duplicate key 'image'",
    ]
    assert all(i.file == FILE for i in issues)
    rendered = str(exc.value)
    assert rendered.startswith(
        "4 problems:\n  - app.yaml:8, document 1, spec.ports[0].contianerPort:"
    )


def test_many_problems_are_capped() -> None:
    env = "".join(f"    K{i}: {i}\n" for i in range(150))
    issues = issues_of(WEB + "  env:\n" + env)
    assert len(issues) == 101
    assert issues[0].path == "spec.env.K0"
    assert issues[-1].message == "50 more problems not shown"
