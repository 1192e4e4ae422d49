"""``portway target …`` against a server, printing what local mode prints."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from portway.cli import output
from portway.cli.remote import RemoteReads, target_view
from portway.controller.records import TargetView
from portway.errors import InputError

if TYPE_CHECKING:  # httpx loads only when a context is in use
    from portway.client.http import PortwayClient


def _say(text: str) -> None:
    output.out.print(text, markup=False)


def add(
    client: PortwayClient,
    name: str,
    address: str | None,
    driver: str | None,
    labels: Sequence[str],
    capacity: Sequence[str],
    taints: Sequence[str],
) -> TargetView:
    from portway.service.targets import parse_capacity, parse_labels, parse_taints

    # parsed here too, so a bad flag is named before anything is sent; the
    # server takes the flags' own text and parses it again
    parse_labels(labels)
    parse_capacity(capacity)
    parse_taints(taints)
    body: dict[str, Any] = {
        "name": name,
        "address": address,
        "driver": driver,
        "labels": list(labels),
        "capacity": list(capacity),
        "taints": list(taints),
    }
    return target_view(client.add_target(body))


def set_(
    client: PortwayClient,
    name: str,
    labels: Sequence[str],
    capacity: Sequence[str],
    taints: Sequence[str],
) -> TargetView:
    body = {"labels": list(labels), "capacity": list(capacity), "taints": list(taints)}
    return target_view(client.set_target(name, body))


def toggle(client: PortwayClient, name: str, action: str) -> bool:
    """``cordon`` or ``uncordon``: whether it changed anything."""
    return bool(client.target_action(name, action).get("changed", True))


def _on_target(client: PortwayClient, name: str) -> dict[tuple[str, str, int], str]:
    """(namespace, workload, index) -> target of every replica on ``name``."""
    return {
        (ns, v.workload, v.index): v.target
        for ns, v in RemoteReads(client).all_replicas(None)
        if v.target == name
    }


def _text(key: tuple[str, str, int]) -> str:
    namespace, workload, index = key
    where = "" if namespace == "default" else f" (namespace {namespace})"
    return f"workload/{workload}-{index}{where}"


def drain(client: PortwayClient, name: str, wait: bool, timeout: float) -> int:
    """The exit code; lines as ``target drain`` prints them locally."""
    if timeout < 0:
        raise InputError(f"--timeout {timeout:g}: expected seconds, 0 or more")
    answer = client.target_action(name, "drain")
    changed = bool(answer.get("changed", True))
    _say(f"target/{name} cordoned" if changed else f"target/{name} already draining")
    remaining = _on_target(client, name)
    for key in sorted(remaining):
        _say(f"evicting {_text(key)}")
    if not wait:
        if remaining:
            _say(f"target/{name} draining ({len(remaining)} replica(s) to move)")
        else:
            _say(f"target/{name} drained")
        return 0
    deadline = time.monotonic() + timeout
    # the server's controller moves them; we watch the replica records go
    while remaining and time.monotonic() < deadline:
        time.sleep(0.5)
        now = {
            (ns, v.workload, v.index): v.target for ns, v in RemoteReads(client).all_replicas(None)
        }
        for key in sorted(remaining):
            if now.get(key) != name:
                where = now.get(key)
                if where is None:
                    _say(f"{_text(key)} removed")
                else:
                    _say(f"{_text(key)} evicted (now on {where or 'no target'})")
                del remaining[key]
    if not remaining:
        _say(f"target/{name} drained")
        return 0
    lines = [
        f"error: target/{name} not drained after {timeout:g}s: "
        f"{len(remaining)} replica(s) still on it"
    ]
    lines += [f"  {_text(key)}: still recorded on {name}" for key in sorted(remaining)]
    for line in lines:
        output.err.print(line, markup=False)
    return 1


def remove(client: PortwayClient, name: str, force: bool) -> list[str]:
    """Keys of the replicas that were recorded on the removed target."""
    answer: Mapping[str, Any] = client.remove_target(name, force=force)
    return [str(k) for k in answer.get("replicas") or []]
