"""What every route needs: the service App, the server's settings, and the
in-process controller (if this server runs one) to wake after a write."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from fastapi import Request

from portway.api.config import ServerConfig
from portway.service.app import App


class Waker(Protocol):
    def enqueue(self, key: str) -> None: ...


@dataclass
class ApiContext:
    app: App
    config: ServerConfig
    #: the controller running in this process, if any; another process's
    #: controller notices spec changes by itself within a fraction of a second
    controller: Waker | None = field(default=None)

    @property
    def inline_reads(self) -> bool:
        """Whether the hot path reads the store on the event loop: yes for a
        local SQLite file (a read is ~0.2 ms and a worker-thread hop costs
        more, in GIL contention, than the read), no for a server database
        (a network round trip must not stall every other request)."""
        return self.app.store.url.startswith("sqlite")

    def wake(self, keys: Iterable[str]) -> None:
        if self.controller is not None:
            for key in keys:
                self.controller.enqueue(key)


def context_of(request: Request) -> ApiContext:
    ctx = request.app.state.portway
    assert isinstance(ctx, ApiContext)
    return ctx
