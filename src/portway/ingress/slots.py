"""Server slots: each backend has a fixed pool of HAProxy servers (``s1``…
``sN``), and each endpoint holds one for as long as it is in the state.

Endpoints come and go through the runtime API by re-pointing a slot
(``set server … addr``) and changing its admin state, which needs no reload.
Only a backend that needs more slots than it has is grown, by a reload that
doubles its pool. Pure functions, no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from portway.ingress.model import AdminState, Backend, Endpoint

#: address a free slot points at; it is in maintenance, so nothing connects
PLACEHOLDER_ADDRESS = "127.0.0.1"
PLACEHOLDER_PORT = 1
#: map value of a free slot (the ``X-Portway-Backend`` header never shows it)
NO_REPLICA = "-"

_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.:@-]")

#: backend name -> endpoint id (or None: free) per slot, slot i is ``s{i+1}``
Layout = Mapping[str, tuple[str | None, ...]]


@dataclass(frozen=True)
class SlotView:
    """What one slot should be (from the state) or is (from HAProxy)."""

    endpoint: str | None
    """Endpoint id, None for a free slot (or unknown, read back from HAProxy)."""
    address: str | None
    """None: whatever it is (a free slot's address does not matter)."""
    port: int | None
    admin: AdminState
    replica: str
    """The ``X-Portway-Backend`` value (``-`` for a free slot)."""


def slot_name(index: int) -> str:
    return f"s{index + 1}"


def slot_index(name: str) -> int:
    return int(name[1:]) - 1


def admin_state(endpoint: Endpoint) -> AdminState:
    """Draining wins over readiness: a copy on its way out takes no new traffic
    either way, and drain lets its open connections finish."""
    if endpoint.draining:
        return AdminState.DRAIN
    return AdminState.READY if endpoint.ready else AdminState.MAINT


def pool_size(needed: int, current: int, min_slots: int) -> int:
    """Slots a backend gets: what it has while that is enough, else the next
    power of two (at least ``min_slots``, even with no endpoint yet, so the
    first ones need no reload), so growth reloads rarely."""
    if current and needed <= current:
        return current
    size = max(min_slots, 1)
    while size < needed:
        size *= 2
    return max(size, current)


def allocate(
    endpoints: Sequence[Endpoint], previous: Sequence[str | None] | None, min_slots: int
) -> tuple[str | None, ...]:
    """Assign every endpoint a slot. An endpoint keeps the slot it had; a
    newcomer takes the lowest free one; the pool grows only when full."""
    wanted = [endpoint.id for endpoint in endpoints]
    present = set(wanted)
    slots: list[str | None] = [owner if owner in present else None for owner in (previous or ())]
    placed = {owner for owner in slots if owner is not None}
    newcomers = [endpoint_id for endpoint_id in wanted if endpoint_id not in placed]
    size = pool_size(len(wanted), len(slots), min_slots)
    slots += [None] * (size - len(slots))
    free = (index for index, owner in enumerate(slots) if owner is None)
    for endpoint_id in newcomers:
        slots[next(free)] = endpoint_id
    return tuple(slots)


def allocate_all(
    backends: Mapping[str, Backend], previous: Layout, min_slots: int
) -> dict[str, tuple[str | None, ...]]:
    return {
        name: allocate(backend.endpoints, previous.get(name), min_slots)
        for name, backend in sorted(backends.items())
    }


def desired_views(backend: Backend, assignment: Sequence[str | None]) -> tuple[SlotView, ...]:
    """What each slot of ``backend`` should be, given who holds it."""
    by_id = {endpoint.id: endpoint for endpoint in backend.endpoints}
    views: list[SlotView] = []
    for owner in assignment:
        endpoint = by_id.get(owner) if owner is not None else None
        if endpoint is None:
            views.append(SlotView(None, None, None, AdminState.MAINT, NO_REPLICA))
            continue
        views.append(
            SlotView(
                endpoint=endpoint.id,
                address=canonical_address(endpoint.address),
                port=endpoint.port,
                admin=admin_state(endpoint),
                replica=replica_label(endpoint),
            )
        )
    return tuple(views)


def canonical_address(address: str) -> str:
    """The address as HAProxy prints it back (``::1``, not ``0:0::1``)."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def replica_label(endpoint: Endpoint) -> str:
    """What the response header names: the replica, else the endpoint id,
    kept to characters a map file and the runtime API take as one word."""
    label = _LABEL_UNSAFE.sub("_", endpoint.replica or endpoint.id)
    return label or NO_REPLICA
