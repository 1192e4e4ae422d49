"""The portable workload model and its loaders. Pure: reads files, nothing else."""
