"""What changed between two applies, and how to carry it out. Pure.

- ``structural_changes``: why a reload is needed (listeners, routes,
  backends, check settings, pool sizes, settings), or nothing if the
  structure digests match;
- ``runtime_commands``: the runtime API commands that move a running HAProxy
  from what it holds to what the state asks, slot by slot;
- ``carry_server_state``: the server-state file a reload starts from: the old
  worker's health for every slot that keeps its endpoint, with the admin
  state the new state asks for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from portway.ingress.model import AdminState
from portway.ingress.runtime import RuntimeServer, servers_state_columns
from portway.ingress.slots import SlotView, slot_name


def structural_changes(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], old_digest: str, new_digest: str
) -> tuple[str, ...]:
    """Reasons for a reload, in words; empty when the digests are equal."""
    if old_digest == new_digest:
        return ()
    if old is None:
        return ("no record of the running configuration",)
    reasons: list[str] = []
    old_listeners = old.get("listeners", {})
    new_listeners = new.get("listeners", {})
    for listen in sorted(new_listeners.keys() - old_listeners.keys()):
        reasons.append(f"listener {listen} added")
    for listen in sorted(old_listeners.keys() - new_listeners.keys()):
        reasons.append(f"listener {listen} removed")
    for listen in sorted(new_listeners.keys() & old_listeners.keys()):
        if new_listeners[listen] != old_listeners[listen]:
            reasons.append(f"routes on {listen} changed")
    old_backends = old.get("backends", {})
    new_backends = new.get("backends", {})
    for name in sorted(new_backends.keys() - old_backends.keys()):
        reasons.append(f"backend {name} added")
    for name in sorted(old_backends.keys() - new_backends.keys()):
        reasons.append(f"backend {name} removed")
    for name in sorted(new_backends.keys() & old_backends.keys()):
        before, after = old_backends[name], new_backends[name]
        if before["mode"] != after["mode"]:
            reasons.append(f"backend {name} mode {before['mode']} -> {after['mode']}")
        if before["check"] != after["check"]:
            reasons.append(f"backend {name} health check changed")
        if before["slots"] != after["slots"]:
            reasons.append(f"backend {name} slots {before['slots']} -> {after['slots']}")
    if old.get("settings") != new.get("settings"):
        reasons.append("ingress settings changed")
    return tuple(reasons) or ("rendered configuration changed (portway version)",)


def slot_commands(
    server: str,
    desired: SlotView,
    actual: RuntimeServer,
    *,
    map_file: str | None,
    replica_now: str | None,
) -> list[str]:
    """Commands for one slot (``server`` is ``backend_id/slot``).

    An endpoint moving into a slot goes through maintenance first, so no
    request reaches the slot between its new address and its new state;
    the map (response header) is set before the slot takes traffic.
    """
    commands: list[str] = []
    admin_now = actual.admin
    moving = desired.address is not None and (desired.address, desired.port) != (
        actual.address,
        actual.port,
    )
    if moving:
        if admin_now is not AdminState.MAINT:
            commands.append(f"set server {server} state maint")
            admin_now = AdminState.MAINT
        commands.append(f"set server {server} addr {desired.address} port {desired.port}")
    if map_file is not None and desired.replica != replica_now:
        commands.append(f"set map {map_file} {server.rsplit('/', 1)[1]} {desired.replica}")
    if desired.admin is not admin_now:
        commands.append(f"set server {server} state {desired.admin.value}")
    return commands


#: slots are changed in this order of their new admin state, so that while
#: one copy replaces another the new one takes traffic before the old stops
_ORDER = {AdminState.READY: 0, AdminState.DRAIN: 1, AdminState.MAINT: 2}


def runtime_commands(
    views: Mapping[str, Sequence[SlotView]],
    backend_ids: Mapping[str, str],
    actual: Mapping[tuple[str, str], RuntimeServer],
    *,
    map_files: Mapping[str, str],
    replicas_now: Mapping[str, Sequence[str]],
) -> list[str]:
    """Every command that takes HAProxy from ``actual`` to ``views``.

    ``views``: backend name -> desired slot views; ``backend_ids``: name ->
    HAProxy id; ``map_files``: name -> map file (http backends with the
    header); ``replicas_now``: name -> map values HAProxy holds, where known.
    A slot HAProxy does not have is left out (the caller reloads for those).
    """
    batches: list[tuple[int, str, int, list[str]]] = []
    for name, slots in sorted(views.items()):
        ident = backend_ids[name]
        known = replicas_now.get(name, ())
        for index, desired in enumerate(slots):
            server = actual.get((ident, slot_name(index)))
            if server is None:
                continue
            commands = slot_commands(
                f"{ident}/{slot_name(index)}",
                desired,
                server,
                map_file=map_files.get(name),
                replica_now=known[index] if index < len(known) else None,
            )
            if commands:
                batches.append((_ORDER[desired.admin], name, index, commands))
    batches.sort(key=lambda batch: batch[:3])
    return [command for *_, commands in batches for command in commands]


def carry_server_state(dump: str, desired: Mapping[tuple[str, str], SlotView]) -> str:
    """The server-state file for a reload, from the old worker's ``show
    servers state``: a slot keeps its health (UP/DOWN, check counters) only
    if it keeps its address; its admin state becomes the desired one (ready,
    or maintenance: drain is set by the runtime API after the reload).
    Lines of slots that move or go are dropped, so their config line rules."""
    columns = servers_state_columns(dump)
    header = "1\n"
    if not columns:
        return header
    at = {name: index for index, name in enumerate(columns)}
    lines = [header.rstrip("\n"), "# " + " ".join(columns)]
    for line in dump.splitlines():
        if not line or line.startswith("#") or line.strip() == "1":
            continue
        fields = line.split()
        if len(fields) < len(columns):
            continue
        view = desired.get((fields[at["be_name"]], fields[at["srv_name"]]))
        if view is None or view.address is None:
            continue
        if (fields[at["srv_addr"]], fields[at["srv_port"]]) != (view.address, str(view.port)):
            continue
        fields[at["srv_admin_state"]] = "0" if view.admin is AdminState.READY else "1"
        lines.append(" ".join(fields))
    return "\n".join(lines) + "\n"
