"""A loaded Compose project as portway workload documents, with a verdict
for every key path of every service, the secrets its file secrets and
configs become, and the start order ``depends_on`` asks for."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portway.errors import Issue, SpecError
from portway.spec.compose.envfile import EnvFileError, parse_env_file
from portway.spec.compose.images import ImageTarget
from portway.spec.compose.keys import Rule, Verdict, rule_for
from portway.spec.compose.ports import parse_port
from portway.spec.compose.project import Project, ServiceSource, normalise_name
from portway.spec.compose.source import join
from portway.spec.compose.values import as_command, as_mapping, parse_duration

__all__ = ["ComposeWorkload", "KeyVerdict", "Mapped", "SecretFile", "map_project"]

_CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
_RESTART = {
    "no": "never",
    "always": "always",
    "on-failure": "on-failure",
    "unless-stopped": "always",
}
_DEPLOY_RESTART = {"none": "never", "on-failure": "on-failure", "any": "always"}


@dataclass(frozen=True)
class KeyVerdict:
    """One key path of a service (``services.web.ports[0].target``)."""

    path: str
    line: int | None
    rule: Rule


@dataclass
class ComposeWorkload:
    service: str
    document: dict[str, Any]
    file: str
    depends_on: dict[str, str] = field(default_factory=dict)  # service -> condition
    keys: list[KeyVerdict] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SecretFile:
    """A portway secret to create before the workloads: ``name`` with one key."""

    name: str
    key: str
    data: bytes
    source: str  # where it came from, for messages


@dataclass
class Mapped:
    project: str
    workloads: list[ComposeWorkload]
    secrets: list[SecretFile]
    levels: list[list[str]]  # workload names, dependencies first
    disabled: list[str]


def map_project(
    project: Project, images: Mapping[str, ImageTarget], *, strict: bool = False
) -> Mapped:
    issues: list[Issue] = []
    secrets: dict[str, SecretFile] = {}
    workloads = [
        _Service(project, service, images, secrets, issues, strict).build()
        for service in project.services.values()
    ]
    _map_networks(workloads, project)
    levels = _levels(project, workloads, issues)
    if strict:
        issues.extend(_strict_issues(project, workloads))
    if issues:
        raise SpecError(issues)
    return Mapped(project.name, workloads, list(secrets.values()), levels, project.disabled)


class _Service:
    def __init__(
        self,
        project: Project,
        source: ServiceSource,
        images: Mapping[str, ImageTarget],
        secrets: dict[str, SecretFile],
        issues: list[Issue],
        strict: bool,
    ) -> None:
        self.project = project
        self.source = source
        self.data = source.data
        self.images = images
        self.secrets = secrets
        self.issues = issues
        self.strict = strict
        self.name = normalise_name(source.name)
        self.spec: dict[str, Any] = {}
        self.labels: dict[str, str] = {}
        self.out = ComposeWorkload(source.name, {}, str(source.file.path))

    def error(self, key: str, message: str, hint: str | None = None) -> None:
        path = join(self.source.path, key) if key else self.source.path
        self.issues.append(self.source.file.issue(message, path, hint))

    def build(self) -> ComposeWorkload:
        for key, handler in _HANDLERS.items():
            if key in self.data and self.data[key] is not None:
                try:
                    handler(self, self.data[key])
                except (ValueError, TypeError) as exc:
                    self.error(key, f"{key}: {exc}")
        self._image()
        self.spec.setdefault("restart", {"policy": "never"})  # Compose's default is "no"
        self.spec["portability"] = "strict" if self.strict else "lenient"
        self.spec.setdefault("extensions", {})["compose"] = {
            "project": self.project.name,
            "service": self.source.name,
        }
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.project.name}
        if self.labels:
            metadata["labels"] = self.labels
        self.out.document = {
            "apiVersion": "portway.dev/v1",
            "kind": "Workload",
            "metadata": metadata,
            "spec": self.spec,
        }
        self.out.keys = list(self._verdicts())
        return self.out

    def _verdicts(self) -> list[KeyVerdict]:
        found: list[KeyVerdict] = []

        def walk(value: Any, rel: str) -> None:
            if rel:
                full = f"{self.source.path}.{rel}" if not rel.startswith("[") else rel
                found.append(KeyVerdict(full, self.source.file.line(full), rule_for(rel, value)))
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(v, join(rel, str(k)))
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    if isinstance(v, dict | list) or rel.split(".")[-1] == "security_opt":
                        walk(v, join(rel, i))

        walk(self.source.data, "")
        return [self._network_override(k) for k in found]

    def _network_override(self, verdict: KeyVerdict) -> KeyVerdict:
        return verdict

    # --- handlers, one per key ---------------------------------------

    def _image(self) -> None:
        ref = self.data.get("image")
        if not isinstance(ref, str):
            self.error(
                "image",
                "a service needs 'image' (nothing is built here)",
                "add image: or map a build to a local image with --image-map",
            )
            return
        target = self.images.get(ref)
        if target is None:
            self.spec["image"] = ref
            return
        self.spec["image"] = target.image
        has_process = "command" in self.data or "entrypoint" in self.data
        if target.command is not None and (target.replace or not has_process):
            self.spec["command"] = list(target.command)
            self.spec.pop("args", None)
        readiness = self.spec.get("probes", {}).get("readiness")
        if target.healthcheck is not None and readiness is not None:
            readiness["exec"] = {"command": _test_command(list(target.healthcheck))}

    def command(self, value: Any) -> None:
        self.spec["args"] = as_command(value)

    def entrypoint(self, value: Any) -> None:
        self.spec["command"] = as_command(value)

    def environment(self, value: Any) -> None:
        env = self.spec.setdefault("env", {})
        for key, val in as_mapping(value).items():
            if val is None:
                val = self.project.env.get(key)
            if val is not None:
                env[key] = val

    def env_file(self, value: Any) -> None:
        env = self.spec.setdefault("env", {})
        base = self.source.file.path.resolve().parent
        for i, entry in enumerate(value if isinstance(value, list) else [value]):
            path, required = (
                (entry, True)
                if isinstance(entry, str)
                else (entry.get("path"), entry.get("required", True))
            )
            if not isinstance(path, str):
                self.error(join("env_file", i), "env_file needs a path")
                continue
            file = base / path
            if not file.exists():
                if required:
                    self.error(
                        join("env_file", i),
                        f"env file {file} does not exist",
                        "create it, or use {path: ..., required: false}",
                    )
                continue
            try:
                values = parse_env_file(file)
            except EnvFileError as exc:
                self.error(join("env_file", i), str(exc))
                continue
            for key, val in values.items():
                resolved = val if val is not None else self.project.env.get(key)
                if resolved is not None:
                    env.setdefault(key, resolved)
        # environment wins over env_file: apply it again on top
        if "environment" in self.data:
            self.environment(self.data["environment"])

    def ports(self, value: Any) -> None:
        ports = self.spec.setdefault("ports", [])
        for i, item in enumerate(value):
            try:
                ports.extend(parse_port(item))
            except ValueError as exc:
                self.error(join("ports", i), str(exc))

    def replicas(self, value: Any) -> None:
        self.spec["replicas"] = int(value)

    def deploy(self, value: Any) -> None:
        if not isinstance(value, dict):
            raise ValueError("deploy must be a mapping")
        if value.get("replicas") is not None:
            self.replicas(value["replicas"])
        limits = (value.get("resources") or {}).get("limits") or {}
        resources = self.spec.setdefault("resources", {})
        for compose_key, field_name in (("cpus", "cpu"), ("memory", "memory"), ("pids", "pids")):
            if limits.get(compose_key) is not None:
                resources[field_name] = limits[compose_key]
        policy = value.get("restart_policy") or {}
        if policy:
            condition = str(policy.get("condition", "any"))
            if condition not in _DEPLOY_RESTART:
                raise ValueError(
                    f"restart_policy.condition {condition!r}: expected none, on-failure or any"
                )
            restart: dict[str, Any] = {"policy": _DEPLOY_RESTART[condition]}
            if policy.get("max_attempts") is not None and condition == "on-failure":
                restart["maxRetries"] = int(policy["max_attempts"])
            if policy.get("delay") is not None:
                restart["initialBackoffSeconds"] = parse_duration(policy["delay"])
            self.spec["restart"] = restart
        if isinstance(value.get("labels"), dict | list):
            self.labels.update({k: v or "" for k, v in as_mapping(value["labels"]).items()})

    def scale(self, value: Any) -> None:
        deploy = self.data.get("deploy") or {}
        replicas = deploy.get("replicas") if isinstance(deploy, dict) else None
        if replicas is not None and int(replicas) != int(value):
            self.error("scale", "scale and deploy.replicas disagree")
        self.replicas(value)

    def cpus(self, value: Any) -> None:
        self.spec.setdefault("resources", {}).setdefault("cpu", value)

    def mem_limit(self, value: Any) -> None:
        self.spec.setdefault("resources", {}).setdefault("memory", value)

    def pids_limit(self, value: Any) -> None:
        self.spec.setdefault("resources", {}).setdefault("pids", int(value))

    def restart(self, value: Any) -> None:
        if "restart_policy" in (self.data.get("deploy") or {}):
            return  # deploy.restart_policy is the more precise of the two
        key = str(value).split(":")[0]
        if key not in _RESTART:
            raise ValueError(f"{value!r}: expected no, always, on-failure or unless-stopped")
        restart: dict[str, Any] = {"policy": _RESTART[key]}
        if key == "on-failure" and ":" in str(value):
            restart["maxRetries"] = int(str(value).split(":")[1])
        self.spec["restart"] = restart

    def healthcheck(self, value: Any) -> None:
        if not isinstance(value, dict) or value.get("disable") is True:
            return
        test = value.get("test")
        if test is None or (isinstance(test, list) and test[:1] == ["NONE"]):
            return
        command = _test_command(test)
        # start_period is not an initial delay: Compose probes during it and a
        # pass makes the service healthy at once; only failures are forgiven,
        # and a failing readiness probe only delays readiness anyway
        parse_duration(value.get("start_period", 0))  # still checked
        self.spec.setdefault("probes", {})["readiness"] = {
            "exec": {"command": command},
            "periodSeconds": parse_duration(value.get("interval", "30s")),
            "timeoutSeconds": parse_duration(value.get("timeout", "30s")),
            "failureThreshold": int(value.get("retries", 3)),
        }

    def volumes(self, value: Any) -> None:
        volumes = self.spec.setdefault("volumes", [])
        for i, item in enumerate(value):
            try:
                volumes.append(self._volume(item, len(volumes)))
            except ValueError as exc:
                self.error(join("volumes", i), str(exc))

    def _volume(self, item: Any, index: int) -> dict[str, Any]:
        if isinstance(item, str):
            parts = item.split(":")
            if len(parts) == 1:
                source, target, mode = None, parts[0], ""
            else:
                source, target, mode = parts[0], parts[1], parts[2] if len(parts) > 2 else ""
            kind = "bind" if source and source[0] in "./~" else "volume"
            item = {
                "type": kind if source else "volume",
                "source": source,
                "target": target,
                "read_only": "ro" in mode.split(","),
            }
        if not isinstance(item, dict) or not item.get("target"):
            raise ValueError("a volume needs a target path")
        kind = item.get("type", "volume")
        entry: dict[str, Any] = {"mountPath": str(item["target"])}
        if item.get("read_only"):
            entry["readOnly"] = True
        if kind == "tmpfs":
            size = (item.get("tmpfs") or {}).get("size")
            entry.update(name=f"tmpfs-{index}", type="tmpfs")
            if size is not None:
                entry["sizeLimit"] = size
            return entry
        source = item.get("source")
        if kind == "bind":
            path = Path(str(source)).expanduser()
            if not path.is_absolute():
                path = (self.source.file.path.resolve().parent / path).resolve()
            return {**entry, "name": f"bind-{index}", "type": "bind", "source": str(path)}
        if kind != "volume":
            raise ValueError(f"volume type {kind!r} is not supported (volume, bind or tmpfs)")
        if not source:  # anonymous volume: one per service and path
            return {**entry, "name": f"anon-{index}", "type": "named"}
        declared = self.project.volumes.get(str(source))
        if declared is None:
            raise ValueError(f"volume {source!r} is not declared under top-level volumes")
        spec = declared[0] if isinstance(declared[0], dict) else {}
        engine_name = spec.get("name") or (
            str(source) if spec.get("external") else f"{self.project.name}_{source}"
        )
        return {
            **entry,
            "name": normalise_name(str(source)),
            "type": "named",
            "source": str(engine_name),
        }

    def tmpfs(self, value: Any) -> None:
        volumes = self.spec.setdefault("volumes", [])
        for item in value if isinstance(value, list) else [value]:
            path, _, options = str(item).partition(":")
            entry: dict[str, Any] = {
                "name": f"tmpfs-{len(volumes)}",
                "type": "tmpfs",
                "mountPath": path,
            }
            for option in options.split(","):
                if option.startswith("size="):
                    entry["sizeLimit"] = option.removeprefix("size=")
            volumes.append(entry)

    def _files(self, kind: str, value: Any) -> None:
        declared: dict[str, Any] = getattr(self.project, f"{kind}s")
        refs = self.spec.setdefault("secrets", [])
        for i, item in enumerate(value):
            name = item if isinstance(item, str) else (item or {}).get("source")
            if not isinstance(name, str):
                self.error(join(f"{kind}s", i), f"a {kind} needs 'source'")
                continue
            if name not in declared:
                self.error(join(f"{kind}s", i), f"{kind} {name!r} is not declared at top level")
                continue
            secret = self._stored(kind, name, declared[name])
            if secret is None:
                continue
            target = item.get("target") if isinstance(item, dict) else None
            default_dir = "/run/secrets" if kind == "secret" else ""
            target = str(target or name)
            if not target.startswith("/"):
                target = f"{default_dir}/{target}"
            ref: dict[str, Any] = {
                "secret": secret.name,
                "key": secret.key,
                "mountPath": target,
                "mode": 0o444,
            }
            if isinstance(item, dict) and item.get("mode") is not None:
                ref["mode"] = item["mode"]
            refs.append(ref)

    def _stored(self, kind: str, name: str, declared: tuple[Any, Any]) -> SecretFile | None:
        spec, file = declared
        where = join(f"{kind}s", name)
        spec = spec if isinstance(spec, dict) else {}
        secret_name = f"{kind}-{normalise_name(name)}"
        if spec.get("external"):
            return SecretFile(secret_name, "content", b"", "external")
        if spec.get("file") is not None:
            path = (file.path.resolve().parent / str(spec["file"])).resolve()
            try:
                data = path.read_bytes()
            except OSError as exc:
                self.issues.append(
                    file.issue(
                        f"{kind} {name!r}: cannot read file {path}: {exc.strerror or exc}", where
                    )
                )
                return None
        elif spec.get("content") is not None:
            data = str(spec["content"]).encode()
        elif spec.get("environment") is not None:
            value = self.project.env.get(str(spec["environment"]))
            if value is None:
                self.issues.append(
                    file.issue(f"{kind} {name!r}: variable {spec['environment']} is not set", where)
                )
                return None
            data = value.encode()
        else:
            self.issues.append(
                file.issue(f"{kind} {name!r} needs file, content or environment", where)
            )
            return None
        stored = SecretFile(secret_name, "content", data, str(file.path))
        self.secrets[secret_name] = stored
        return stored

    def secrets_(self, value: Any) -> None:
        self._files("secret", value)

    def configs(self, value: Any) -> None:
        self._files("config", value)

    def security(self) -> dict[str, Any]:
        security: dict[str, Any] = self.spec.setdefault("security", {})
        return security

    def cap_add(self, value: Any) -> None:
        self.security().setdefault("capabilities", {})["add"] = [str(c) for c in value]

    def cap_drop(self, value: Any) -> None:
        self.security().setdefault("capabilities", {})["drop"] = [str(c) for c in value]

    def privileged(self, value: Any) -> None:
        self.security()["privileged"] = bool(value)

    def pid(self, value: Any) -> None:
        if value == "host":
            self.security()["hostPid"] = True

    def ipc(self, value: Any) -> None:
        if value == "host":
            self.security()["hostIpc"] = True

    def network_mode(self, value: Any) -> None:
        if value == "host":
            self.security()["hostNetwork"] = True

    def read_only(self, value: Any) -> None:
        self.security()["readOnlyRootFilesystem"] = bool(value)

    def user(self, value: Any) -> None:
        self.security()["user"] = str(value)

    def sysctls(self, value: Any) -> None:
        self.security()["sysctls"] = {k: v or "" for k, v in as_mapping(value).items()}

    def security_opt(self, value: Any) -> None:
        for option in value:
            if str(option).replace(":", "=") in ("no-new-privileges", "no-new-privileges=true"):
                self.security()["noNewPrivileges"] = True

    def init(self, value: Any) -> None:
        extensions = self.spec.setdefault("extensions", {})
        for engine in ("docker", "podman", "containerd"):
            extensions.setdefault(engine, {})["init"] = bool(value)

    def runtime(self, value: Any) -> None:
        self.spec.setdefault("extensions", {}).setdefault("docker", {})["runtime"] = str(value)

    def shm_size(self, value: Any) -> None:
        self.spec.setdefault("extensions", {}).setdefault("docker", {})["shmSize"] = value

    def labels_(self, value: Any) -> None:
        self.labels.update({k: v or "" for k, v in as_mapping(value).items()})

    def depends_on(self, value: Any) -> None:
        items = {d: {} for d in value} if isinstance(value, list) else value
        for dep, options in items.items():
            options = options or {}
            condition = str(options.get("condition", "service_started"))
            if condition not in _CONDITIONS:
                self.error(
                    join("depends_on", str(dep)),
                    f"condition {condition!r}: expected one of {', '.join(_CONDITIONS)}",
                )
                continue
            self.out.depends_on[str(dep)] = condition

    def networks(self, value: Any) -> None:
        names = list(value) if isinstance(value, list | dict) else []
        for name in names:
            if str(name) not in self.project.networks and name != "default":
                self.error(
                    join("networks", str(name)), f"network {name!r} is not declared at top level"
                )
        self.out.networks = [str(n) for n in names]


def _test_command(test: Any) -> list[str]:
    """A healthcheck test as the command of an exec probe."""
    if isinstance(test, str):
        return ["sh", "-c", test]
    if isinstance(test, list) and len(test) >= 2 and test[0] == "CMD":
        return [str(t) for t in test[1:]]
    if isinstance(test, list) and len(test) == 2 and test[0] == "CMD-SHELL":
        return ["sh", "-c", str(test[1])]
    raise ValueError("test must be a string, [CMD, ...], [CMD-SHELL, cmd] or [NONE]")


_HANDLERS: dict[str, Callable[[_Service, Any], None]] = {
    "command": _Service.command,
    "entrypoint": _Service.entrypoint,
    "environment": _Service.environment,
    "env_file": _Service.env_file,
    "ports": _Service.ports,
    "deploy": _Service.deploy,
    "scale": _Service.scale,
    "cpus": _Service.cpus,
    "mem_limit": _Service.mem_limit,
    "pids_limit": _Service.pids_limit,
    "restart": _Service.restart,
    "healthcheck": _Service.healthcheck,
    "volumes": _Service.volumes,
    "tmpfs": _Service.tmpfs,
    "secrets": _Service.secrets_,
    "configs": _Service.configs,
    "cap_add": _Service.cap_add,
    "cap_drop": _Service.cap_drop,
    "privileged": _Service.privileged,
    "pid": _Service.pid,
    "ipc": _Service.ipc,
    "network_mode": _Service.network_mode,
    "read_only": _Service.read_only,
    "user": _Service.user,
    "sysctls": _Service.sysctls,
    "security_opt": _Service.security_opt,
    "init": _Service.init,
    "runtime": _Service.runtime,
    "shm_size": _Service.shm_size,
    "labels": _Service.labels_,
    "depends_on": _Service.depends_on,
    "networks": _Service.networks,
}


def _map_networks(workloads: list[ComposeWorkload], project: Project) -> None:
    """Networks. A project is one namespace, and the namespace's own network
    lets every pair of its services meet: that is what the file means unless
    it keeps some pair of services on networks they do not share. Then every
    service joins its networks (``default`` when it names none) as named
    networks of the namespace, ``spec.networks``, which a target honors or
    drops (feature networks.named); the key verdicts follow that field."""
    used = {w.service: set(w.networks or ["default"]) for w in workloads}
    groups = list(used.values())
    split = any(not (a & b) for i, a in enumerate(groups) for b in groups[i + 1 :])
    for workload in workloads:
        service_path = project.services[workload.service].path
        if split:
            names = sorted({normalise_name(n) for n in used[workload.service]})
            workload.document["spec"]["networks"] = names
        workload.keys = [
            KeyVerdict(k.path, k.line, _network_rule(k, f"{service_path}.networks", split))
            for k in workload.keys
        ]


_NETWORKS_JOINED = Rule(
    Verdict.HONORED,
    "the file keeps services apart: each network becomes a named network of the namespace",
    "spec.networks",
)


def _network_rule(key: KeyVerdict, networks_path: str, split: bool) -> Rule:
    """The rule of a key under a service's ``networks``: the list or mapping
    itself and each network named in it become spec.networks when the file
    keeps services apart; a network's own settings (``aliases``,
    ``ipv4_address``...) keep their rule from the Compose table."""
    if key.path != networks_path and not key.path.startswith(networks_path + "."):
        return key.rule
    rest = key.path.removeprefix(networks_path).lstrip(".")
    if "." in rest:  # <network>.<setting>
        return rule_for("networks." + rest.split(".", 1)[1])
    return _NETWORKS_JOINED if split else key.rule


def _levels(
    project: Project, workloads: list[ComposeWorkload], issues: list[Issue]
) -> list[list[str]]:
    """Workload names grouped so each group depends only on earlier ones;
    a cycle is an issue naming it."""
    deps = {w.service: dict(w.depends_on) for w in workloads}
    for workload in workloads:
        service = project.services[workload.service]
        for dep in list(deps[workload.service]):
            if dep not in deps:
                where = join(join(service.path, "depends_on"), dep)
                state = "disabled by profiles" if dep in project.disabled else "not defined"
                issues.append(service.file.issue(f"depends_on: service {dep!r} is {state}", where))
                del deps[workload.service][dep]
    cycle = _find_cycle(deps)
    if cycle:
        first = project.services[cycle[0]]
        issues.append(
            first.file.issue(
                f"depends_on cycle: {' -> '.join(cycle)}", join(first.path, "depends_on")
            )
        )
        return []
    levels: list[list[str]] = []
    placed: set[str] = set()
    while len(placed) < len(deps):
        ready = sorted(s for s in deps if s not in placed and set(deps[s]) <= placed)
        levels.append([normalise_name(s) for s in ready])
        placed.update(ready)
    return levels


def _find_cycle(deps: Mapping[str, Mapping[str, str]]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(deps.get(node, {})):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(deps):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def _strict_issues(project: Project, workloads: list[ComposeWorkload]) -> list[Issue]:
    """Strict mode refuses every key portway would drop, all at once."""
    issues = []
    for workload in workloads:
        file = project.services[workload.service].file
        for key in workload.keys:
            if key.rule.verdict is Verdict.DROPPED:
                issues.append(
                    file.issue(f"strict: {key.rule.reason}; the key would be dropped", key.path)
                )
    return issues
