"""One network namespace per replica, wired by running the CNI plugins ourselves.

Chain: ``loopback`` (lo), ``bridge`` with ``host-local`` IPAM (eth0 on the
``portway0`` bridge, a private /16), then ``portmap`` for the published ports
(iptables DNAT from hostIP:hostPort). Traffic to 127.0.0.1:hostPort is
DNAT-ed only with ``net.ipv4.conf.all.route_localnet=1`` on the host
(scripts/engines-containerd.sh sets it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CNI_PATH = os.environ.get("PORTWAY_CNI_PATH", "/usr/lib/cni:/opt/cni/bin")
CNI_VERSION = "1.0.0"
NETWORK_NAME = "portway"
BRIDGE = "portway0"
# Not 10.88/16 (Podman's default) nor 172.17/16 (Docker's): two bridges on one
# subnet make the kernel route published ports to the wrong one.
SUBNET = os.environ.get("PORTWAY_CONTAINERD_SUBNET", "10.213.0.0/16")
NETNS_DIR = Path("/var/run/netns")
PLUGINS = ("loopback", "bridge", "host-local", "portmap")
_TIMEOUT = 30


class NetworkError(Exception):
    """A CNI plugin or ``ip netns`` failed; the message says which and why."""


@dataclass(frozen=True)
class PortMapping:
    container_port: int
    protocol: str
    host_ip: str
    host_port: int

    def encode(self) -> str:
        return f"{self.container_port}/{self.protocol}={self.host_ip}:{self.host_port}"

    @classmethod
    def decode(cls, text: str) -> PortMapping | None:
        left, _, right = text.partition("=")
        port, _, protocol = left.partition("/")
        host_ip, _, host_port = right.rpartition(":")
        if not (port.isdigit() and host_port.isdigit()):
            return None
        return cls(int(port), protocol or "tcp", host_ip, int(host_port))


def encode_ports(ports: list[PortMapping]) -> str:
    return ",".join(p.encode() for p in ports)


def decode_ports(text: str) -> list[PortMapping]:
    out = [PortMapping.decode(part) for part in text.split(",") if part]
    return [p for p in out if p is not None]


def held_ports(ports: list[PortMapping]) -> str:
    """The logger's ``hold`` argument: the host side of each mapping, which
    the task's logger keeps bound (``_logger``, "Ports")."""
    return ",".join(f"{p.protocol}:{p.host_ip}:{p.host_port}" for p in ports)


def netns_name(container_id: str) -> str:
    return "pw-" + hashlib.sha256(container_id.encode()).hexdigest()[:12]


def netns_path(container_id: str) -> str:
    return str(NETNS_DIR / netns_name(container_id))


def find_plugin(name: str) -> str | None:
    for directory in CNI_PATH.split(":"):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def missing_plugins() -> list[str]:
    return [p for p in PLUGINS if find_plugin(p) is None]


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    if done.returncode != 0:
        raise NetworkError(f"{' '.join(args)} failed: {(done.stderr or done.stdout).strip()}")


def _configs(ports: list[PortMapping]) -> list[tuple[str, str, dict[str, Any]]]:
    """(plugin, ifname, config) for each step of the chain."""
    base = {"cniVersion": CNI_VERSION, "name": NETWORK_NAME}
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("loopback", "lo", {**base, "type": "loopback"}),
        (
            "bridge",
            "eth0",
            {
                **base,
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,  # replicas get no way out; only published ports come in
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
        ),
    ]
    if ports:
        mappings = [
            {
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": p.protocol,
                **({} if p.host_ip in ("", "0.0.0.0") else {"hostIP": p.host_ip}),  # noqa: S104
            }
            for p in ports
        ]
        steps.append(
            (
                "portmap",
                "eth0",
                {
                    **base,
                    "type": "portmap",
                    "capabilities": {"portMappings": True},
                    "snat": True,
                    "runtimeConfig": {"portMappings": mappings},
                },
            )
        )
    return steps


def _invoke(
    command: str, plugin: str, ifname: str, container_id: str, netns: str, config: dict[str, Any]
) -> dict[str, Any]:
    binary = find_plugin(plugin)
    if binary is None:
        raise NetworkError(
            f"CNI plugin {plugin!r} not found in {CNI_PATH}; "
            "install containernetworking-plugins (scripts/engines-containerd.sh)"
        )
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_PATH": CNI_PATH,
    }
    done = subprocess.run(
        [binary],
        input=json.dumps(config).encode(),
        env=env,
        capture_output=True,
        timeout=_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        detail = done.stdout.decode(errors="replace").strip() or done.stderr.decode(
            errors="replace"
        )
        try:
            error = json.loads(detail)
            detail = f"{error.get('msg', '')} {error.get('details', '')}".strip()
        except (ValueError, AttributeError):
            pass
        raise NetworkError(f"CNI {plugin} {command} for {container_id} failed: {detail}")
    if not done.stdout.strip():
        return {}
    result = json.loads(done.stdout)
    return result if isinstance(result, dict) else {}


def setup(container_id: str, ports: list[PortMapping]) -> str:
    """Create the replica's netns and run the CNI chain; returns the netns path.
    Undoes what it did if a step fails."""
    name = netns_name(container_id)
    path = netns_path(container_id)
    if not Path(path).exists():
        _run(["ip", "netns", "add", name])
    previous: dict[str, Any] | None = None
    try:
        for plugin, ifname, config in _configs(ports):
            if plugin == "portmap" and previous is not None:
                config = {**config, "prevResult": previous}
            result = _invoke("ADD", plugin, ifname, container_id, path, config)
            if plugin == "bridge":
                previous = result
    except Exception:
        teardown(container_id, ports)
        raise
    return path


def teardown(container_id: str, ports: list[PortMapping]) -> list[str]:
    """CNI DEL in reverse order (idempotent), then remove the netns. Returns
    the problems met (it goes on past each one: cleanup should be complete)."""
    path = netns_path(container_id)
    netns = path if Path(path).exists() else ""
    problems: list[str] = []
    for plugin, ifname, config in reversed(_configs(ports)):
        try:
            _invoke("DEL", plugin, ifname, container_id, netns, config)
        except (NetworkError, OSError, subprocess.SubprocessError) as exc:
            problems.append(str(exc))
    if netns:
        try:
            _run(["ip", "netns", "delete", netns_name(container_id)])
        except (NetworkError, OSError, subprocess.SubprocessError) as exc:
            problems.append(str(exc))
    return problems


def ip_available() -> bool:
    return shutil.which("ip") is not None and shutil.which("iptables") is not None
