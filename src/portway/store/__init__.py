"""Desired and observed state with optimistic concurrency."""

from portway.store.sql import (
    AuditEntry,
    Change,
    Event,
    Fence,
    FencedError,
    Lease,
    Record,
    Store,
)

__all__ = [
    "AuditEntry",
    "Change",
    "Event",
    "Fence",
    "FencedError",
    "Lease",
    "Record",
    "Store",
]
