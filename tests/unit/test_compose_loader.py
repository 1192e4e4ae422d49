"""The Compose loader: project name, .env/--env-file, env_file, profiles,
extends, include, cycles, bad input, and the mapping to workload documents."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from portway.errors import SpecError
from portway.spec.compose import ComposeOptions, ImageTarget, load_compose
from portway.spec.compose.images import load_image_map
from portway.spec.compose.keys import Verdict
from portway.spec.compose.ports import parse_port
from portway.spec.compose.values import parse_duration


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def load(path: Path, **kwargs: Any) -> Any:
    environ = kwargs.pop("environ", {})
    options = ComposeOptions(environ=environ, **kwargs)
    return load_compose(path, options)


def spec_of(mapped: Any, service: str) -> dict[str, Any]:
    for workload in mapped.workloads:
        if workload.service == service:
            return dict(workload.document["spec"])
    raise AssertionError(f"no service {service}")


def messages(exc: pytest.ExceptionInfo[SpecError]) -> list[str]:
    return [str(i) for i in exc.value.issues]


def test_project_name_from_directory_normalised_and_services_become_workloads(
    tmp_path: Path,
) -> None:
    file = write(tmp_path / "My_App" / "compose.yaml", "services:\n  web_1: {image: a}\n")
    mapped = load(file)
    assert mapped.project == "my-app"
    doc = mapped.workloads[0].document
    assert doc["metadata"] == {"name": "web-1", "namespace": "my-app"}
    assert doc["spec"]["extensions"]["compose"] == {"project": "my-app", "service": "web_1"}


def test_dotenv_env_file_option_and_process_environment_precedence(tmp_path: Path) -> None:
    write(tmp_path / ".env", "TAG=from-dotenv\nPORT=1\n")
    write(tmp_path / "other.env", "TAG=from-option\n")
    file = write(
        tmp_path / "compose.yaml", "name: p\nservices:\n  a: {image: 'x:${TAG}-${PORT:-9}'}\n"
    )
    assert spec_of(load(file), "a")["image"] == "x:from-dotenv-1"
    assert (
        spec_of(load(file, env_files=[tmp_path / "other.env"]), "a")["image"] == "x:from-option-9"
    )
    assert spec_of(load(file, environ={"TAG": "shell"}), "a")["image"] == "x:shell-1"


def test_missing_required_variable_names_file_key_path_and_line(tmp_path: Path) -> None:
    file = write(
        tmp_path / "compose.yaml",
        """\
        services:
          a:
            image: x
            environment:
              PASSWORD: ${PASSWORD:?set the password}
        """,
    )
    with pytest.raises(SpecError) as exc:
        load(file)
    (issue,) = exc.value.issues
    assert issue.file == str(file)
    assert issue.path == "services.a.environment.PASSWORD"
    assert issue.line == 5
    assert "set the password" in issue.message


def test_environment_and_env_file_with_required_false(tmp_path: Path) -> None:
    write(tmp_path / "a.env", "FROM_FILE=1\nBOTH=file\n")
    file = write(
        tmp_path / "compose.yaml",
        """\
        services:
          a:
            image: x
            env_file: [a.env, {path: missing.env, required: false}]
            environment: [BOTH=env, FROM_SHELL, NOT_SET]
        """,
    )
    env = spec_of(load(file, environ={"FROM_SHELL": "s"}), "a")["env"]
    assert env == {"FROM_FILE": "1", "BOTH": "env", "FROM_SHELL": "s"}


def test_missing_env_file_is_an_error_naming_it(tmp_path: Path) -> None:
    file = write(tmp_path / "compose.yaml", "services:\n  a: {image: x, env_file: nope.env}\n")
    with pytest.raises(SpecError) as exc:
        load(file)
    assert "nope.env does not exist" in messages(exc)[0]
    assert exc.value.issues[0].path == "services.a.env_file[0]"


def test_profiles_from_option_and_compose_profiles(tmp_path: Path) -> None:
    file = write(
        tmp_path / "compose.yaml",
        """\
        services:
          base: {image: x}
          debug: {image: x, profiles: [debug]}
          tools: {image: x, profiles: [tools, debug]}
        """,
    )
    names = lambda m: sorted(w.service for w in m.workloads)  # noqa: E731
    assert names(load(file)) == ["base"]
    assert names(load(file, profiles=["tools"])) == ["base", "tools"]
    assert names(load(file, environ={"COMPOSE_PROFILES": "debug"})) == ["base", "debug", "tools"]
    assert load(file).disabled == ["debug", "tools"]


def test_extends_within_file_and_from_another_file(tmp_path: Path) -> None:
    write(
        tmp_path / "common.yaml",
        """\
        services:
          root: {image: base, environment: {A: "1"}, ports: ["80"]}
          mid: {extends: root, environment: {B: "2"}}
        """,
    )
    file = write(
        tmp_path / "compose.yaml",
        """\
        services:
          local: {extends: {file: common.yaml, service: mid}, environment: {C: "3"}, ports: ["81"]}
          child: {extends: local, command: [run]}
        """,
    )
    mapped = load(file)
    child = spec_of(mapped, "child")
    assert child["image"] == "base"
    assert child["env"] == {"A": "1", "B": "2", "C": "3"}
    assert [p["containerPort"] for p in child["ports"]] == [80, 81]
    assert child["args"] == ["run"]


def test_extends_cycle_is_reported_with_the_cycle(tmp_path: Path) -> None:
    file = write(
        tmp_path / "compose.yaml",
        "services:\n  a: {image: x, extends: b}\n  b: {image: x, extends: a}\n",
    )
    with pytest.raises(SpecError) as exc:
        load(file)
    assert any("extends cycle: a -> b -> a" in m or "extends cycle: b -> a -> b" in m
               for m in messages(exc))  # fmt: skip


def test_include_and_include_cycle(tmp_path: Path) -> None:
    write(tmp_path / "db" / "compose.yaml", "services:\n  db: {image: pg}\n")
    file = write(
        tmp_path / "compose.yaml", "include: [db/compose.yaml]\nservices:\n  a: {image: x}\n"
    )
    assert sorted(w.service for w in load(file).workloads) == ["a", "db"]
    write(tmp_path / "loop" / "one.yaml", "include: [two.yaml]\nservices: {}\n")
    write(tmp_path / "loop" / "two.yaml", "include: [one.yaml]\nservices: {}\n")
    with pytest.raises(SpecError) as exc:
        load(tmp_path / "loop" / "one.yaml")
    assert "include cycle:" in messages(exc)[0]
    assert "one.yaml -> " in messages(exc)[0]


def test_depends_on_levels_conditions_and_cycle(tmp_path: Path) -> None:
    file = write(
        tmp_path / "compose.yaml",
        """\
        services:
          web:
            image: x
            depends_on:
              db: {condition: service_healthy}
              cache: {condition: service_started}
          worker: {image: x, depends_on: [web]}
          db: {image: x}
          cache: {image: x}
        """,
    )
    mapped = load(file)
    assert mapped.levels == [["cache", "db"], ["web"], ["worker"]]
    assert next(w for w in mapped.workloads if w.service == "web").depends_on == {
        "db": "service_healthy",
        "cache": "service_started",
    }
    cyclic = write(
        tmp_path / "c" / "compose.yaml",
        "services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}\n",
    )
    with pytest.raises(SpecError) as exc:
        load(cyclic)
    assert "depends_on cycle: a -> b -> a" in messages(exc)[0]


def test_unknown_keys_and_wrong_types_all_at_once(tmp_path: Path) -> None:
    file = write(
        tmp_path / "compose.yaml",
        """\
        services:
          a:
            image: x
            imgae: y
            ports: "80:80"
            privileged: "yes"
        bogus: 1
        """,
    )
    with pytest.raises(SpecError) as exc:
        load(file)
    found = {(i.path, i.line): i.message for i in exc.value.issues}
    assert found[("services.a.imgae", 4)] == "unknown service key 'imgae'"
    assert "a list" in found[("services.a.ports", 5)]
    assert "a boolean" in found[("services.a.privileged", 6)]
    assert ("bogus", 7) in found
    assert any(i.hint == "did you mean 'image'?" for i in exc.value.issues)


def test_mapping_of_runtime_keys(tmp_path: Path) -> None:
    write(tmp_path / "secret.txt", "s3cret")
    file = write(
        tmp_path / "compose.yaml",
        """\
        services:
          a:
            image: x
            entrypoint: /bin/run --flag
            command: ["serve", "--port", "80"]
            ports:
              - "127.0.0.1:8000-8001:80-81/udp"
              - {target: 443, published: "8443", host_ip: 0.0.0.0}
            deploy:
              replicas: 3
              resources: {limits: {cpus: "0.5", memory: 64M, pids: 10}}
              restart_policy: {condition: on-failure, max_attempts: 2, delay: 5s}
            healthcheck:
              test: ["CMD-SHELL", "true"]
              interval: 1m30s
              timeout: 2s
              retries: 5
              start_period: 3s
            volumes:
              - "data:/data"
              - "./here:/here:ro"
              - {type: tmpfs, target: /t, tmpfs: {size: 1024}}
            tmpfs: /run
            secrets: [pw, {source: pw, target: custom}]
            configs: [{source: conf, target: /etc/conf}]
            labels: [a=b]
        volumes: {data: {}}
        secrets: {pw: {file: ./secret.txt}}
        configs: {conf: {content: "k=v"}}
        """,
    )
    mapped = load(file)
    spec = spec_of(mapped, "a")
    assert spec["command"] == ["/bin/run", "--flag"]
    assert spec["args"] == ["serve", "--port", "80"]
    assert spec["ports"] == [
        {"containerPort": 80, "protocol": "udp", "hostPort": 8000, "hostIp": "127.0.0.1"},
        {"containerPort": 81, "protocol": "udp", "hostPort": 8001, "hostIp": "127.0.0.1"},
        {"containerPort": 443, "protocol": "tcp", "hostPort": 8443, "hostIp": "0.0.0.0"},
    ]
    assert spec["replicas"] == 3
    assert spec["resources"] == {"cpu": "0.5", "memory": "64M", "pids": 10}
    assert spec["restart"] == {
        "policy": "on-failure",
        "maxRetries": 2,
        "initialBackoffSeconds": 5.0,
    }
    assert spec["probes"]["readiness"] == {
        "exec": {"command": ["sh", "-c", "true"]},
        "periodSeconds": 90.0,
        "timeoutSeconds": 2.0,
        "failureThreshold": 5,
    }
    volumes = spec["volumes"]
    assert volumes[0] == {
        "mountPath": "/data",
        "name": "data",
        "type": "named",
        "source": f"{mapped.project}_data",
    }
    assert volumes[1]["type"] == "bind" and volumes[1]["source"] == str(tmp_path / "here")
    assert volumes[1]["readOnly"] is True
    assert volumes[2]["type"] == "tmpfs" and volumes[2]["sizeLimit"] == 1024
    assert volumes[3] == {"name": "tmpfs-3", "type": "tmpfs", "mountPath": "/run"}
    paths = [s["mountPath"] for s in spec["secrets"]]
    assert paths == ["/run/secrets/pw", "/run/secrets/custom", "/etc/conf"]
    stored = {s.name: s.data for s in mapped.secrets}
    assert stored == {"secret-pw": b"s3cret", "config-conf": b"k=v"}
    assert mapped.workloads[0].document["metadata"]["labels"] == {"a": "b"}


def test_missing_secret_file_names_the_file(tmp_path: Path) -> None:
    file = write(
        tmp_path / "compose.yaml",
        "services:\n  a: {image: x, secrets: [pw]}\nsecrets:\n  pw: {file: ./gone.txt}\n",
    )
    with pytest.raises(SpecError) as exc:
        load(file)
    assert "gone.txt" in messages(exc)[0]
    assert exc.value.issues[0].path == "secrets.pw"
    assert exc.value.issues[0].line == 4


def test_image_map_with_stand_in_command_and_healthcheck(tmp_path: Path) -> None:
    images = load_image_map(
        write(
            tmp_path / "map.yaml",
            """\
            plain: local/plain
            server: {image: local/busybox, command: [httpd, -f]}
            forced:
              image: local/busybox
              command: [sleep, "1"]
              replace: true
              healthcheck: [CMD, "true"]
            """,
        )
    )
    assert images["plain"] == ImageTarget("local/plain")
    file = write(
        tmp_path / "compose.yaml",
        """\
        services:
          a: {image: server}
          b: {image: server, command: [own]}
          c: {image: forced, command: [own], healthcheck: {test: [CMD, curl, x]}}
        """,
    )
    mapped = load_compose(file, ComposeOptions(environ={}), images)
    assert spec_of(mapped, "a")["command"] == ["httpd", "-f"]
    assert spec_of(mapped, "b") == {
        **spec_of(mapped, "b"),
        "args": ["own"],
        "image": "local/busybox",
    }
    assert "command" not in spec_of(mapped, "b")
    c = spec_of(mapped, "c")
    assert c["command"] == ["sleep", "1"] and "args" not in c
    assert c["probes"]["readiness"]["exec"] == {"command": ["true"]}
    with pytest.raises(SpecError, match="must be a list of strings"):
        load_image_map(write(tmp_path / "bad.yaml", "x: {image: y, command: run}\n"))


def test_strict_refuses_every_dropped_key(tmp_path: Path) -> None:
    file = write(tmp_path / "compose.yaml", "services:\n  a: {image: x, hostname: h, tty: true}\n")
    assert load(file)  # lenient by default
    with pytest.raises(SpecError) as exc:
        load_compose(file, ComposeOptions(environ={}), strict=True)
    assert [i.path for i in exc.value.issues] == ["services.a.hostname", "services.a.tty"]


def test_services_kept_apart_join_named_networks_of_the_namespace(tmp_path: Path) -> None:
    file = write(
        tmp_path / "compose.yaml",
        """\
        services:
          a: {image: x, networks: [one]}
          b:
            image: x
            networks:
              Two_Net: {aliases: [bee], ipv4_address: 10.1.2.3}
          c: {image: x}
        networks: {one: {}, Two_Net: {}}
        """,
    )
    mapped = load(file).workloads
    networks = {w.service: w.document["spec"]["networks"] for w in mapped}
    # c names none: it joins the file's default network, like Compose
    assert networks == {"a": ["one"], "b": ["two-net"], "c": ["default"]}
    keys = {k.path: k.rule for w in mapped for k in w.keys}
    assert keys["services.a.networks"].verdict is Verdict.HONORED
    assert keys["services.a.networks"].field == "spec.networks"
    assert keys["services.b.networks.Two_Net"].field == "spec.networks"
    # a network's own settings keep their verdicts
    assert keys["services.b.networks.Two_Net.aliases"].verdict is Verdict.DROPPED
    assert keys["services.b.networks.Two_Net.ipv4_address"].verdict is Verdict.DROPPED


def test_services_that_all_meet_share_the_namespace_network(tmp_path: Path) -> None:
    shared = write(
        tmp_path / "compose.yaml",
        "services:\n  a: {image: x, networks: [one]}\n  b: {image: x, networks: [one, two]}\n"
        "networks: {one: {}, two: {}}\n",
    )
    mapped = load(shared).workloads
    assert all("networks" not in w.document["spec"] for w in mapped)
    verdicts = {k.path: k.rule.verdict for w in mapped for k in w.keys}
    assert verdicts["services.a.networks"] is Verdict.EMULATED


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("80", [{"containerPort": 80, "protocol": "tcp"}]),
        (80, [{"containerPort": 80, "protocol": "tcp"}]),
        ("8080:80", [{"containerPort": 80, "protocol": "tcp", "hostPort": 8080}]),
        (
            "[::1]:53:53/udp",
            [{"containerPort": 53, "protocol": "udp", "hostPort": 53, "hostIp": "::1"}],
        ),
        (
            "9000-9001",
            [
                {"containerPort": 9000, "protocol": "tcp"},
                {"containerPort": 9001, "protocol": "tcp"},
            ],
        ),
    ],
)
def test_port_syntax(item: Any, expected: list[dict[str, Any]]) -> None:
    assert parse_port(item) == expected


@pytest.mark.parametrize("item", ["80:80:80:80", "1-2:3-5", "80/sctp", {"published": 1}])
def test_bad_ports(item: Any) -> None:
    with pytest.raises(ValueError):
        parse_port(item)


def test_durations() -> None:
    assert parse_duration("1m30s") == 90.0
    assert parse_duration("250ms") == 0.25
    assert parse_duration(5) == 5.0
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
