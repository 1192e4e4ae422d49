"""The audit log: who did what, where, when, and how it ended.

One entry per mutating request (and per denied or unauthenticated attempt),
appended to the store's ``audit`` table. Entries hold what the caller asked
and the outcome, never request bodies: a secret's value must not end up here.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from portway.access.rbac import Principal
from portway.errors import InputError
from portway.service.app import App
from portway.store import AuditEntry

#: Longest message kept; error messages listing many issues are cut here.
MESSAGE_MAX = 2000
LIMIT_MAX = 10_000


class Outcome(StrEnum):
    ALLOWED = "allowed"  # permitted; the result was not known when recorded
    DENIED = "denied"  # unauthenticated (401) or forbidden (403)
    FAILED = "failed"  # permitted, then refused or failed (4xx/5xx)
    SUCCEEDED = "succeeded"


@dataclass(frozen=True)
class AuditRecord:
    """One entry to append. ``user`` is "" for an unauthenticated caller;
    ``namespace`` is "" for cluster-scoped operations; ``status`` is the HTTP
    status (0 when the local CLI acted on the store directly)."""

    verb: str
    resource: str
    outcome: Outcome
    status: int
    user: str = ""
    token_id: str = ""
    namespace: str = ""
    name: str = ""
    message: str = ""
    remote: str = ""

    @classmethod
    def by(
        cls,
        principal: Principal | None,
        verb: str,
        resource: str,
        outcome: Outcome,
        status: int,
        *,
        namespace: str = "",
        name: str = "",
        message: str = "",
        remote: str = "",
    ) -> AuditRecord:
        """An entry attributed to ``principal`` (``None``: unauthenticated)."""
        return cls(
            verb=verb,
            resource=resource,
            outcome=outcome,
            status=status,
            user="" if principal is None else principal.user,
            token_id="" if principal is None else principal.token_id,
            namespace=namespace,
            name=name,
            message=message,
            remote=remote,
        )


@dataclass(frozen=True)
class AuditFilter:
    user: str | None = None
    namespace: str | None = None
    since_id: int = 0  # entries after this id, oldest first; 0: the newest `limit`
    limit: int = 100


def record(app: App, entry: AuditRecord) -> int:
    """Append ``entry``; returns its id."""
    message = entry.message
    if len(message) > MESSAGE_MAX:
        message = message[: MESSAGE_MAX - 1] + "…"
    return app.store.record_audit(
        ts=time.time(),
        user=entry.user,
        token_id=entry.token_id,
        verb=entry.verb,
        resource=entry.resource,
        namespace=entry.namespace,
        name=entry.name,
        outcome=str(entry.outcome),
        status=entry.status,
        message=message,
        remote=entry.remote,
    )


def check_limit(limit: int, flag: str = "--limit") -> int:
    if not 1 <= limit <= LIMIT_MAX:
        raise InputError(f"{flag} {limit}: expected a number from 1 to {LIMIT_MAX}")
    return limit


def entries(app: App, filters: AuditFilter | None = None) -> list[AuditEntry]:
    """Entries oldest first (see ``AuditFilter.since_id``)."""
    wanted = filters or AuditFilter()
    if wanted.since_id < 0:
        raise InputError(f"since {wanted.since_id}: expected an entry id, 0 or more")
    return app.store.audit_entries(
        since_id=wanted.since_id,
        user=wanted.user,
        namespace=wanted.namespace,
        limit=check_limit(wanted.limit),
    )


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """The API's and ``audit-log -o json``'s shape of one entry."""
    return {
        "id": entry.id,
        "ts": entry.ts,
        "user": entry.user,
        "tokenId": entry.token_id,
        "verb": entry.verb,
        "resource": entry.resource,
        "namespace": entry.namespace,
        "name": entry.name,
        "outcome": entry.outcome,
        "status": entry.status,
        "message": entry.message,
        "remote": entry.remote,
    }


def local_user() -> str:
    """Who acted when the local CLI changed the store directly: ``local:<login>``."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER in a container
        login = "unknown"
    return f"local:{login}"
