"""Every Compose service key portway knows, with its expected YAML type and
what portway does with it: the basis of "no silent drops".

``Rule.field`` names the portway field a key becomes; its verdict on a
target is then the drift report's verdict for that field. Keys without a
field have a fixed verdict: *emulated* (portway gets the effect another way,
said in ``reason``), *dropped* (ignored, said why) or *rejected* (a policy
refuses it, whatever the target).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "RULES",
    "SERVICE_KEYS",
    "Kind",
    "Rule",
    "Verdict",
    "dropped",
    "emulated",
    "honored",
    "rejected",
    "rule_for",
]


class Verdict(StrEnum):
    HONORED = "honored"
    EMULATED = "emulated"
    DROPPED = "dropped"
    REJECTED = "rejected"


class Kind(StrEnum):
    """The YAML shapes a top-level service key accepts."""

    STR = "a string"
    STR_OR_LIST = "a string or a list"
    LIST = "a list"
    MAP = "a mapping"
    MAP_OR_LIST = "a mapping or a list"
    NUMBER = "a number"
    NUM_OR_STR = "a number or a string"
    BOOL = "a boolean"
    ANY = "any value"


@dataclass(frozen=True)
class Rule:
    verdict: Verdict
    reason: str
    field: str | None = None  # portway field whose drift verdict applies


def honored(field: str, reason: str = "") -> Rule:
    return Rule(Verdict.HONORED, reason or f"becomes {field}", field)


def emulated(reason: str) -> Rule:
    return Rule(Verdict.EMULATED, reason)


def dropped(reason: str) -> Rule:
    return Rule(Verdict.DROPPED, reason)


def rejected(reason: str) -> Rule:
    return Rule(Verdict.REJECTED, reason)


# short names for the tables below (and the Kubernetes table's)
_h, _e, _d, _r = honored, emulated, dropped, rejected


_NO_FIELD = "portway has no field for it"
_BASELINE = "refused by the baseline Pod Security policy"
_SECTION = _e("a section: each of its keys has its own verdict")

#: Top-level service keys and their YAML shapes (the Compose Specification's list).
SERVICE_KEYS: dict[str, Kind] = {
    "annotations": Kind.MAP_OR_LIST, "attach": Kind.BOOL, "blkio_config": Kind.MAP,
    "build": Kind.ANY, "cap_add": Kind.LIST, "cap_drop": Kind.LIST, "cgroup": Kind.STR,
    "cgroup_parent": Kind.STR, "command": Kind.STR_OR_LIST, "configs": Kind.LIST,
    "container_name": Kind.STR, "cpu_count": Kind.NUM_OR_STR, "cpu_percent": Kind.NUM_OR_STR,
    "cpu_period": Kind.NUM_OR_STR, "cpu_quota": Kind.NUM_OR_STR,
    "cpu_rt_period": Kind.NUM_OR_STR, "cpu_rt_runtime": Kind.NUM_OR_STR,
    "cpu_shares": Kind.NUM_OR_STR, "cpus": Kind.NUM_OR_STR, "cpuset": Kind.STR,
    "credential_spec": Kind.MAP, "depends_on": Kind.MAP_OR_LIST, "deploy": Kind.MAP,
    "develop": Kind.MAP, "device_cgroup_rules": Kind.LIST, "devices": Kind.LIST,
    "dns": Kind.STR_OR_LIST, "dns_opt": Kind.LIST, "dns_search": Kind.STR_OR_LIST,
    "domainname": Kind.STR, "entrypoint": Kind.STR_OR_LIST, "env_file": Kind.ANY,
    "environment": Kind.MAP_OR_LIST, "expose": Kind.LIST, "extends": Kind.ANY,
    "external_links": Kind.LIST, "extra_hosts": Kind.MAP_OR_LIST, "gpus": Kind.ANY,
    "group_add": Kind.LIST, "healthcheck": Kind.MAP, "hostname": Kind.STR, "image": Kind.STR,
    "init": Kind.BOOL, "ipc": Kind.STR, "isolation": Kind.STR, "label_file": Kind.STR_OR_LIST,
    "labels": Kind.MAP_OR_LIST, "links": Kind.LIST, "logging": Kind.MAP,
    "mac_address": Kind.STR, "mem_limit": Kind.NUM_OR_STR, "mem_reservation": Kind.NUM_OR_STR,
    "mem_swappiness": Kind.NUM_OR_STR, "memswap_limit": Kind.NUM_OR_STR, "models": Kind.ANY,
    "network_mode": Kind.STR, "networks": Kind.MAP_OR_LIST, "oom_kill_disable": Kind.BOOL,
    "oom_score_adj": Kind.NUM_OR_STR, "pid": Kind.STR, "pids_limit": Kind.NUM_OR_STR,
    "platform": Kind.STR, "ports": Kind.LIST, "post_start": Kind.LIST, "pre_stop": Kind.LIST,
    "privileged": Kind.BOOL, "profiles": Kind.LIST, "provider": Kind.MAP,
    "pull_policy": Kind.STR, "read_only": Kind.BOOL, "restart": Kind.STR,
    "runtime": Kind.STR, "scale": Kind.NUM_OR_STR, "secrets": Kind.LIST,
    "security_opt": Kind.LIST, "shm_size": Kind.NUM_OR_STR, "stdin_open": Kind.BOOL,
    "stop_grace_period": Kind.STR, "stop_signal": Kind.STR, "storage_opt": Kind.MAP,
    "sysctls": Kind.MAP_OR_LIST, "tmpfs": Kind.STR_OR_LIST, "tty": Kind.BOOL,
    "ulimits": Kind.MAP, "use_api_socket": Kind.BOOL, "user": Kind.STR,
    "userns_mode": Kind.STR, "uts": Kind.STR, "volumes": Kind.LIST,
    "volumes_from": Kind.LIST, "working_dir": Kind.STR,
}  # fmt: skip

#: Verdict rules by key path with list indices removed (``ports.target``);
#: a path without its own rule takes its nearest ancestor's.
RULES: dict[str, Rule] = {
    "image": _h("spec.image", "becomes spec.image (after --image-map)"),
    "command": _h("spec.args", "becomes spec.args (the image's CMD)"),
    "entrypoint": _h("spec.command", "becomes spec.command (the image's entrypoint)"),
    "environment": _h("spec.env"),
    "env_file": _h("spec.env", "read at load time into spec.env"),
    "ports": _h("spec.ports"),
    "ports.mode": _e("every published port is per replica on the host (mode: host)"),
    "ports.app_protocol": _d(_NO_FIELD),
    "ports.name": _h("spec.ports", "becomes the port's name"),
    "expose": _e("every container port is reachable on the project's network"),
    "deploy": _SECTION,
    "deploy.resources": _SECTION,
    "deploy.resources.limits": _SECTION,
    "deploy.restart_policy": _SECTION,
    "deploy.replicas": _h("spec.replicas"),
    "deploy.mode": _e("replicated is portway's only mode (global is dropped)"),
    "deploy.resources.limits.cpus": _h("spec.resources.cpu"),
    "deploy.resources.limits.memory": _h("spec.resources.memory"),
    "deploy.resources.limits.pids": _h("spec.resources.pids"),
    "deploy.resources.reservations": _d("portway has no reservations (only limits)"),
    "deploy.restart_policy.condition": _h("spec.restart"),
    "deploy.restart_policy.max_attempts": _h("spec.restart", "becomes spec.restart.maxRetries"),
    "deploy.restart_policy.delay": _h("spec.restart", "becomes initialBackoffSeconds"),
    "deploy.restart_policy.window": _d("portway resets backoff after 600 s of running"),
    "deploy.labels": _h("metadata.labels"),
    "scale": _h("spec.replicas"),
    "cpus": _h("spec.resources.cpu"),
    "mem_limit": _h("spec.resources.memory"),
    "pids_limit": _h("spec.resources.pids"),
    "restart": _h("spec.restart"),
    "healthcheck": _h("spec.probes.readiness", "becomes an exec readiness probe"),
    "healthcheck.start_interval": _d(_NO_FIELD),
    "healthcheck.start_period": _e("readiness is probed from the start; failures only delay it"),
    "volumes": _h("spec.volumes"),
    "volumes.volume.nocopy": _d("portway does not copy image content into new volumes"),
    "volumes.bind.propagation": _d(_NO_FIELD),
    "volumes.bind.create_host_path": _d(_NO_FIELD),
    "volumes.consistency": _d(_NO_FIELD),
    "tmpfs": _h("spec.volumes"),
    "secrets": _e("file secrets become portway secrets, mounted at /run/secrets/<name>"),
    "secrets.uid": _d(_NO_FIELD),
    "secrets.gid": _d(_NO_FIELD),
    "configs": _e("file configs become portway secrets, mounted at /<name> or target"),
    "configs.uid": _d(_NO_FIELD),
    "configs.gid": _d(_NO_FIELD),
    "cap_add": _h("spec.security.capabilities.add"),
    "cap_drop": _h("spec.security.capabilities.drop"),
    "privileged": _h("spec.security.privileged"),
    "read_only": _h("spec.security.readOnlyRootFilesystem"),
    "user": _h("spec.security.user"),
    "sysctls": _h("spec.security.sysctls"),
    "init": _h("spec.extensions.init", "becomes extensions.<engine>.init"),
    "runtime": _h("spec.extensions.runtime", "becomes extensions.docker.runtime"),
    "shm_size": _h("spec.extensions.shmSize", "becomes extensions.docker.shmSize"),
    "labels": _h("metadata.labels"),
    "depends_on": _e("apply starts dependency levels in order (docs/compose.md)"),
    "depends_on.restart": _d(_NO_FIELD),
    "networks": _e("services share the project's network; names resolve by service name"),
    "networks.aliases": _d("only the service name resolves"),
    "networks.priority": _d(_NO_FIELD),
    "networks.ipv4_address": _d(_NO_FIELD),
    "networks.ipv6_address": _d(_NO_FIELD),
    "profiles": _e("applied at load time (--profile, COMPOSE_PROFILES)"),
    "extends": _e("merged at load time"),
    "build": _d("nothing is built here; use --image-map to name a local image"),
    "pull_policy": _d("no registry is reachable; images must be local"),
    "platform": _d(_NO_FIELD),
    "container_name": _d("portway names containers <cluster>-<namespace>-<workload>-<index>"),
    "hostname": _d(_NO_FIELD),
    "domainname": _d(_NO_FIELD),
    "stop_grace_period": _d(_NO_FIELD),
    "stop_signal": _d(_NO_FIELD),
    "logging": _d("portway keeps the engine's default log driver"),
    "devices": _r(f"{_BASELINE}: host devices"),
    "device_cgroup_rules": _r(f"{_BASELINE}: device access"),
    "userns_mode": _r(f"{_BASELINE}: host user namespace"),
    "uts": _r(f"{_BASELINE}: host UTS namespace"),
    "cgroup": _d(_NO_FIELD),
    "security_opt": _r(f"{_BASELINE}: custom SELinux/AppArmor/seccomp options"),
    "volumes_from": _d(_NO_FIELD),
    "network_mode": _d("replicas join the project network"),
    "links": _e("service names resolve on the project network"),
    "external_links": _d(_NO_FIELD),
    "use_api_socket": _r(f"{_BASELINE}: the engine socket"),
}


def _normalise(path: str) -> str:
    return re.sub(r"\[\d+\]", "", path)


def rule_for(path: str, value: object = None) -> Rule:
    """The rule for a service key path (``ports[1].target``); ``value`` lets
    a few keys depend on what they say (``pid: host`` vs ``pid: ""``)."""
    special = _by_value(path, value)
    if special is not None:
        return special
    key = _normalise(path)
    while True:
        if key in RULES:
            return RULES[key]
        if "." not in key:
            return _d(_NO_FIELD)
        key = key.rsplit(".", 1)[0]


def _by_value(path: str, value: object) -> Rule | None:
    if path == "pid":
        return _h("spec.security.hostPid") if value == "host" else _d(_NO_FIELD)
    if path == "ipc":
        return _h("spec.security.hostIpc") if value == "host" else _d(_NO_FIELD)
    if path == "network_mode" and value == "host":
        return _h("spec.security.hostNetwork")
    if (
        path.startswith("security_opt[")
        and isinstance(value, str)
        and value.replace(":", "=") in ("no-new-privileges", "no-new-privileges=true")
    ):
        return _h("spec.security.noNewPrivileges")
    return None
