"""What the read commands (``get``, ``describe``) need, from wherever it is.

``LocalReads`` reads the embedded store through the service layer;
``cli.remote.RemoteReads`` asks a server and rebuilds the same objects from
its JSON. The commands render those objects once, so a table or ``-o json``
looks the same in both modes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from portway.controller.records import ReplicaView, TargetView
from portway.spec.model import Workload
from portway.store import Event, Record

if TYPE_CHECKING:  # the service layer loads drivers: only local mode needs it
    from portway.service.app import App


class Reads(Protocol):
    def list_workloads(self, namespace: str | None) -> list[Record]: ...

    def resolve_workload(self, namespace: str, name: str) -> tuple[Record, Workload]: ...

    def replicas_of(self, namespace: str, name: str) -> list[ReplicaView]: ...

    def all_replicas(self, namespace: str | None) -> list[tuple[str, ReplicaView]]: ...

    def target_views(self, *, check: bool = False) -> list[TargetView]:
        """Every target; ``check``: health probed now, not as last recorded."""
        ...

    def events(
        self, *, kind: str | None, namespace: str | None, name: str | None, limit: int
    ) -> list[Event]: ...


class LocalReads:
    def __init__(self, app: App) -> None:
        self.app = app

    def list_workloads(self, namespace: str | None) -> list[Record]:
        from portway.service import workloads

        return workloads.list_workloads(self.app, namespace)

    def resolve_workload(self, namespace: str, name: str) -> tuple[Record, Workload]:
        from portway.service import workloads

        return workloads.resolve_workload(self.app, namespace, name)

    def replicas_of(self, namespace: str, name: str) -> list[ReplicaView]:
        from portway.service import workloads

        return workloads.replicas_of(self.app, namespace, name)

    def all_replicas(self, namespace: str | None) -> list[tuple[str, ReplicaView]]:
        from portway.service import workloads

        return workloads.all_replicas(self.app, namespace)

    def target_views(self, *, check: bool = False) -> list[TargetView]:
        if check:
            for view in self.app.target_views():
                self.app.targets.check(view)  # fresh health, recorded if it changed
        return self.app.target_views()

    def events(
        self, *, kind: str | None, namespace: str | None, name: str | None, limit: int
    ) -> list[Event]:
        return self.app.store.events(kind=kind, namespace=namespace, name=name, limit=limit)
