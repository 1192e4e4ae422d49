"""Security policy: Pod Security Standards levels, isolation tiers and image rules
per namespace, and the CIS Docker Benchmark checks of ``portway audit``.
Pure: it sees specs, policies and facts, never an engine."""

from portway.policy.evaluate import Decision, evaluate_spec, resolved
from portway.policy.violations import Violation

__all__ = ["Decision", "Violation", "evaluate_spec", "resolved"]
