"""Server-sent events: framing, and a poll loop that follows a log in the store.

The loop borrows a store connection only for each short query (in a worker
thread) and sleeps without one, so a thousand idle watches hold no database
connections. It ends when the client goes away.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from portway.api.config import ServerConfig

MEDIA_TYPE = "text/event-stream"


@dataclass(frozen=True)
class SseEvent:
    id: int
    type: str
    data: Any


def frame(event: SseEvent) -> bytes:
    data = json.dumps(event.data, separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()


def comment(text: str) -> bytes:
    return f": {text}\n\n".encode()


#: fetch(after) -> (events after ``after`` in order, position to continue from)
Fetch = Callable[[int], tuple[Sequence[SseEvent], int]]


async def follow(
    request: Request,
    config: ServerConfig,
    fetch: Fetch,
    start: int,
    first: Sequence[SseEvent] = (),
) -> AsyncIterator[bytes]:
    """``first`` (a snapshot), then every event after ``start`` as it comes."""
    # a retry hint and an opening comment flush the headers at once, so the
    # client knows the watch is established before the first change
    yield b"retry: 2000\n" + comment("watching")
    for event in first:
        yield frame(event)
    position = start
    quiet_since = time.monotonic()
    while True:
        if await request.is_disconnected():
            return
        events, position = await run_in_threadpool(fetch, position)
        for event in events:
            yield frame(event)
        if events:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= config.heartbeat_seconds:
            yield comment("heartbeat")
            quiet_since = time.monotonic()
        if len(events) < config.watch_batch:
            await asyncio.sleep(config.watch_poll_seconds)


def resume_point(since: int | None, last_event_id: str | None) -> int | None:
    """Where the client wants to resume: ``since``, else ``Last-Event-ID``."""
    if since is not None:
        return since
    if last_event_id is not None and last_event_id.strip().isdigit():
        return int(last_event_id.strip())
    return None
