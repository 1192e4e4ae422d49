"""The audit middleware: one entry per mutating request, after its response.

Every POST, PUT, PATCH and DELETE (exec included) is recorded with who sent
it, what it was about (the route's permission check leaves that in an
``AuditNote``), the outcome and the status code; unauthenticated and denied
attempts too. The write happens in a worker thread so the event loop never
waits for the store.
"""

from __future__ import annotations

import json
import logging

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from portway.api.security import AUDIT_NOTE, AuditNote
from portway.service import auditlog
from portway.service.app import App
from portway.service.auditlog import AuditRecord, Outcome

log = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: bytes of an error response kept to quote its message in the entry
_MESSAGE_BYTES = 4096


def outcome_of(status: int, note: AuditNote) -> Outcome:
    if status in (401, 403) or note.denied:
        return Outcome.DENIED
    return Outcome.SUCCEEDED if status < 400 else Outcome.FAILED


def _message(body: bytes, status: int) -> str:
    if status < 400:
        return ""
    try:
        return str(json.loads(body)["error"]["message"])[:1000]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}"


class AuditMiddleware:
    def __init__(self, app: ASGIApp, service: App) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        note = AuditNote()
        scope.setdefault("state", {})[AUDIT_NOTE] = note
        status = 500
        body = b""

        async def recording_send(message: Message) -> None:
            nonlocal status, body
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and len(body) < _MESSAGE_BYTES:
                body += message.get("body", b"")[: _MESSAGE_BYTES - len(body)]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            await run_in_threadpool(self._record, scope, note, status, body)

    def _record(self, scope: Scope, note: AuditNote, status: int, body: bytes) -> None:
        client = scope.get("client")
        entry = AuditRecord.by(
            note.principal,
            note.verb or scope["method"].lower(),
            note.resource or str(scope.get("path", "")),
            outcome_of(status, note),
            status,
            namespace=note.namespace,
            name=note.name,
            message=_message(body, status),
            remote=f"{client[0]}:{client[1]}" if client else "",
        )
        try:
            auditlog.record(self.service, entry)
        except Exception:  # the request is done; a lost entry must be loud, not fatal
            log.exception("could not record an audit entry: %s", entry)
