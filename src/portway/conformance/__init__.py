"""The conformance suite: behaviour cases run against every configured target.

Entry points: ``conformance`` (every target, for the CLI), ``run_suite`` (one
driver), ``run_case`` (one case, for pytest); then ``matrix_of`` /
``write_matrix`` / ``render_markdown`` for the capability matrix. Cases live
in ``cases_*.py`` and are listed by ``all_cases``.
"""

from portway.conformance.case import DEFAULT_IMAGE, Case, CaseFailed, Context, all_cases
from portway.conformance.failures import ConformanceError
from portway.conformance.runner import (
    CaseResult,
    Outcome,
    SuiteResult,
    conformance,
    kept_matrix_paths,
    load_matrix,
    matrix_of,
    preflight,
    render_markdown,
    run_case,
    run_suite,
    write_matrix,
)

__all__ = [
    "DEFAULT_IMAGE",
    "Case",
    "CaseFailed",
    "CaseResult",
    "ConformanceError",
    "Context",
    "Outcome",
    "SuiteResult",
    "all_cases",
    "conformance",
    "kept_matrix_paths",
    "load_matrix",
    "matrix_of",
    "preflight",
    "render_markdown",
    "run_case",
    "run_suite",
    "write_matrix",
]
