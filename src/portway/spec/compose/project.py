"""A Compose project from its files: ``.env``/``--env-file``, interpolation,
``include``, ``extends`` and profiles, with every problem collected as an
:class:`~portway.errors.Issue` (file, key path, line). Pure: it reads files
and nothing else."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portway.errors import Issue, SpecError
from portway.spec.compose.envfile import EnvFileError, parse_env_file
from portway.spec.compose.interpolate import interpolate_tree
from portway.spec.compose.keys import SERVICE_KEYS, Kind
from portway.spec.compose.schema import schema_issues
from portway.spec.compose.source import ComposeFile, join, read_compose_file

__all__ = ["ComposeOptions", "Project", "ServiceSource", "load_project", "normalise_name"]

_TOP_KEYS = {"version", "name", "services", "networks", "volumes", "secrets", "configs",
             "include", "models"}  # fmt: skip


@dataclass(frozen=True)
class ComposeOptions:
    env_files: Sequence[Path] = ()
    profiles: Sequence[str] = ()
    environ: Mapping[str, str] | None = None  # None: os.environ
    project_name: str | None = None


@dataclass
class ServiceSource:
    """One service after extends, with the file it came from (for lines and
    relative paths)."""

    name: str
    data: dict[str, Any]
    file: ComposeFile
    path: str  # key path in that file: services.<name>


@dataclass
class Project:
    name: str
    directory: Path
    env: dict[str, str]
    services: dict[str, ServiceSource] = field(default_factory=dict)
    volumes: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=dict)
    configs: dict[str, Any] = field(default_factory=dict)
    networks: dict[str, Any] = field(default_factory=dict)
    disabled: list[str] = field(default_factory=list)  # services of inactive profiles
    top_files: dict[str, ComposeFile] = field(default_factory=dict)  # top-level key -> file
    files: list[ComposeFile] = field(default_factory=list)  # every file read, includes too


def normalise_name(name: str) -> str:
    """A Compose project or service name as a DNS-1123 label (portway's
    namespaces and workloads): lower case, ``_`` and ``.`` as ``-``."""
    text = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")
    return text[:63].rstrip("-") or "default"


def is_compose(data: Any) -> bool:
    """A Compose file has ``services`` and no ``apiVersion``/``kind``."""
    return (
        isinstance(data, dict)
        and "services" in data
        and "apiVersion" not in data
        and "kind" not in data
    )


def load_project(path: Path, options: ComposeOptions) -> Project:
    """The project of the Compose file at ``path``; raises SpecError with
    every issue found."""
    issues: list[Issue] = []
    directory = path.resolve().parent
    environ = dict(os.environ if options.environ is None else options.environ)
    env = _project_env(directory, options, environ, issues, str(path))
    try:
        root = read_compose_file(path)
    except ValueError as exc:
        raise SpecError([Issue(str(exc), file=str(path))]) from None
    _interpolate(root, env, issues)
    name = options.project_name or env.get("COMPOSE_PROJECT_NAME") or root.data.get("name")
    project = Project(normalise_name(str(name or directory.name)), directory, env)
    _collect(root, project, issues, chain=[])
    issues.extend(_schema_issues(project.files, issues))
    _resolve_extends(project, issues)
    _apply_profiles(project, options, env)
    if issues:
        raise SpecError(issues)
    return project


def _project_env(
    directory: Path,
    options: ComposeOptions,
    environ: dict[str, str],
    issues: list[Issue],
    file: str,
) -> dict[str, str]:
    """Variables for interpolation: the env files (``.env`` beside the file
    unless --env-file), then the process environment, which wins."""
    files = list(options.env_files) or [directory / ".env"]
    env: dict[str, str] = {}
    for env_path in files:
        if not options.env_files and not env_path.exists():
            continue
        try:
            values = parse_env_file(env_path)
        except EnvFileError as exc:
            issues.append(Issue(str(exc), file=file, hint="check --env-file"))
            continue
        env.update({k: v if v is not None else environ.get(k, "") for k, v in values.items()})
    env.update(environ)
    return env


def _interpolate(source: ComposeFile, env: Mapping[str, str], issues: list[Issue]) -> None:
    errors: list[tuple[str, str]] = []
    source.data = interpolate_tree(source.data, env, "", errors)
    issues.extend(source.issue(message, path) for path, message in errors)


def _collect(source: ComposeFile, project: Project, issues: list[Issue], chain: list[Path]) -> None:
    """Services and top-level objects of ``source`` and its includes."""
    here = source.path.resolve()
    if here in chain:
        cycle = " -> ".join(str(p) for p in [*chain[chain.index(here) :], here])
        issues.append(source.issue(f"include cycle: {cycle}", "include"))
        return
    project.files.append(source)
    data = source.data
    for key in data:
        if key not in _TOP_KEYS and not str(key).startswith("x-"):
            issues.append(source.issue(f"unknown top-level key {key!r}", str(key)))
    for i, entry in enumerate(_as_list(data.get("include"))):
        paths = entry.get("path") if isinstance(entry, dict) else entry
        for sub in _as_list(paths):
            if not isinstance(sub, str):
                issues.append(source.issue("an include path must be a string", f"include[{i}]"))
                continue
            target = (here.parent / sub).resolve()
            try:
                included = read_compose_file(target)
            except ValueError as exc:
                issues.append(source.issue(str(exc), f"include[{i}]"))
                continue
            _interpolate(included, project.env, issues)
            _collect(included, project, issues, [*chain, here])
    services = data.get("services") or {}
    if not isinstance(services, dict):
        issues.append(source.issue("'services' must be a mapping", "services"))
        return
    for name, body in services.items():
        where = join("services", str(name))
        if name in project.services:
            issues.append(source.issue(f"service {name!r} is defined twice (include)", where))
            continue
        if body is None:
            body = {}
        if not isinstance(body, dict):
            issues.append(source.issue(f"service {name!r} must be a mapping", where))
            continue
        issues.extend(_key_issues(source, where, body))
        project.services[str(name)] = ServiceSource(str(name), body, source, where)
    for top in ("volumes", "secrets", "configs", "networks"):
        objects = data.get(top) or {}
        if not isinstance(objects, dict):
            issues.append(source.issue(f"'{top}' must be a mapping", top))
            continue
        target_map: dict[str, Any] = getattr(project, top)
        for obj_name, obj in objects.items():
            target_map[str(obj_name)] = (obj or {}, source)


def _schema_issues(files: Sequence[ComposeFile], found: Sequence[Issue]) -> list[Issue]:
    """What the Compose JSON Schema finds in each file beyond what portway's
    own checks (with their suggestions) already said about the same key."""

    extra: list[Issue] = []
    for source in files:
        own = {i.path for i in found if i.file == str(source.path)}
        extra += [i for i in schema_issues(source) if i.path not in own]
    return extra


_KIND_CHECK: dict[Kind, tuple[type, ...]] = {
    Kind.STR: (str,),
    Kind.STR_OR_LIST: (str, list),
    Kind.LIST: (list,),
    Kind.MAP: (dict,),
    Kind.MAP_OR_LIST: (dict, list),
    Kind.NUMBER: (int, float),
    Kind.NUM_OR_STR: (int, float, str),
    Kind.BOOL: (bool,),
}


def _key_issues(source: ComposeFile, where: str, body: dict[str, Any]) -> list[Issue]:
    import difflib

    found: list[Issue] = []
    for key, value in body.items():
        path = join(where, str(key))
        if str(key).startswith("x-"):
            continue
        kind = SERVICE_KEYS.get(str(key))
        if kind is None:
            close = difflib.get_close_matches(str(key), list(SERVICE_KEYS), n=1)
            found.append(
                source.issue(
                    f"unknown service key {key!r}",
                    path,
                    hint=f"did you mean {close[0]!r}?" if close else None,
                )
            )
            continue
        allowed = _KIND_CHECK.get(kind)
        if value is not None and allowed is not None:
            ok = isinstance(value, allowed) and not (
                isinstance(value, bool) and bool not in allowed
            )
            if not ok:
                found.append(
                    source.issue(f"{key} must be {kind.value}, got {type(value).__name__}", path)
                )
    return found


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _resolve_extends(project: Project, issues: list[Issue]) -> None:
    resolved: dict[str, dict[str, Any]] = {}
    for name in list(project.services):
        project.services[name].data = _extended(project, name, issues, [], resolved)


def _extended(
    project: Project,
    name: str,
    issues: list[Issue],
    chain: list[str],
    resolved: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    if name in resolved:
        return resolved[name]
    service = project.services[name]
    body = dict(service.data)
    spec = body.pop("extends", None)
    if spec is None:
        resolved[name] = body
        return body
    where = join(service.path, "extends")
    base_name = (
        spec if isinstance(spec, str) else spec.get("service") if isinstance(spec, dict) else None
    )
    if not isinstance(base_name, str):
        issues.append(service.file.issue("extends needs a service name", where))
        return body
    base_file = spec.get("file") if isinstance(spec, dict) else None
    key = f"{base_file}:{base_name}" if base_file else base_name
    seen = [*chain, name]
    if key in seen:
        cycle = " -> ".join([*seen[seen.index(key) :], key])
        issues.append(service.file.issue(f"extends cycle: {cycle}", where))
        return body
    if base_file:
        base = _base_from_file(
            service, str(base_file), base_name, project.env, issues, where, [*chain, key]
        )
    elif base_name in project.services:
        base = _extended(project, base_name, issues, [*chain, name], resolved)
    else:
        issues.append(service.file.issue(f"extends: no service {base_name!r}", where))
        return body
    merged = merge_service(base, body)
    resolved[name] = merged
    return merged


def _base_from_file(
    service: ServiceSource,
    file: str,
    base_name: str,
    env: Mapping[str, str],
    issues: list[Issue],
    where: str,
    chain: list[str],
) -> dict[str, Any]:
    path = (service.file.path.resolve().parent / file).resolve()
    try:
        other = read_compose_file(path)
    except ValueError as exc:
        issues.append(service.file.issue(str(exc), where))
        return {}
    _interpolate(other, env, issues)
    services = other.data.get("services") or {}
    if base_name not in services:
        issues.append(service.file.issue(f"extends: no service {base_name!r} in {path}", where))
        return {}
    base = dict(services[base_name] or {})
    nested = base.pop("extends", None)
    if nested is None:
        return base
    sub = ServiceSource(base_name, {**base, "extends": nested}, other, join("services", base_name))
    inner = Project("x", path.parent, dict(env), {base_name: sub})
    for other_name, other_body in services.items():
        if other_name != base_name:
            inner.services[other_name] = ServiceSource(
                other_name, dict(other_body or {}), other, join("services", other_name)
            )
    return _extended(inner, base_name, issues, chain, {})


_REPLACED = {"command", "entrypoint", "image", "healthcheck.test"}


def merge_service(
    base: dict[str, Any], override: dict[str, Any], prefix: str = ""
) -> dict[str, Any]:
    """``override`` on ``base`` as Compose merges: mappings key by key,
    sequences appended (without repeats), scalars and commands replaced."""
    out = dict(base)
    for key, value in override.items():
        path = f"{prefix}{key}"
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and path not in _REPLACED:
            out[key] = merge_service(old, value, f"{path}.")
        elif isinstance(old, list) and isinstance(value, list) and path not in _REPLACED:
            out[key] = old + [v for v in value if v not in old]
        else:
            out[key] = value
    return out


def _apply_profiles(project: Project, options: ComposeOptions, env: Mapping[str, str]) -> None:
    active = set(options.profiles)
    if not active and env.get("COMPOSE_PROFILES"):
        active = {p.strip() for p in env["COMPOSE_PROFILES"].split(",") if p.strip()}
    for name, service in list(project.services.items()):
        profiles = service.data.get("profiles") or []
        if profiles and "*" not in active and not active.intersection(profiles):
            project.disabled.append(name)
            del project.services[name]
