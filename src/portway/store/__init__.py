"""Desired and observed state with optimistic concurrency."""

from portway.store.sql import Event, Record, Store

__all__ = ["Event", "Record", "Store"]
