"""The reconcile loop: desired vs observed, level-triggered, crash-safe."""
