"""portway: one portable workload description, many container backends."""

__version__ = "0.1.0"
