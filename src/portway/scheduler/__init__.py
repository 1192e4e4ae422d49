"""Placement: pure functions over snapshots of targets; no I/O."""
