"""``python -m portway.conformance``: run the suite against one engine.

    python -m portway.conformance --address docker:///var/run/docker.sock --write-matrix

prints a line per case and a summary; ``--write-matrix`` merges the results
into the kept matrix (``src/portway/capabilities/matrix.json`` and
``docs/capability-matrix.md``, or the paths given). Exit status: 0 if every
case that ran passed, 1 if one failed or the target could not run the suite,
2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from portway.drivers.registry import driver_name_from_address, open_driver
from portway.errors import PortwayError
from portway.spec.model import Isolation

from .case import DEFAULT_IMAGE, all_cases
from .runner import (
    CaseResult,
    Outcome,
    kept_matrix_paths,
    load_matrix,
    matrix_of,
    render_markdown,
    run_suite,
    write_matrix,
)

_LABELS = {Outcome.PASS: "PASS", Outcome.FAIL: "FAIL", Outcome.UNSUPPORTED: "----"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m portway.conformance",
        description="Run portway's conformance suite against one container engine.",
    )
    parser.add_argument("--address", help="engine address, e.g. docker:///var/run/docker.sock")
    parser.add_argument(
        "--target-driver", help="driver name (default: the address's scheme, e.g. docker)"
    )
    parser.add_argument("--target", default="conformance", help="target name to report")
    parser.add_argument(
        "--only",
        action="append",
        metavar="CASES",
        help="case id, group or glob (repeatable, or comma-separated); default: all",
    )
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="test image (never pulled)")
    parser.add_argument(
        "--tier",
        default="standard",
        choices=[t.value for t in Isolation],
        help="isolation tier every replica runs in; each tier is its own matrix column "
        "(default: standard)",
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument(
        "--write-matrix",
        action="store_true",
        help="merge the results into the kept capability matrix (JSON and Markdown)",
    )
    parser.add_argument("--matrix-json", type=Path, help="matrix JSON path (default: kept one)")
    parser.add_argument("--matrix-md", type=Path, help="matrix Markdown path (default: docs/)")
    parser.add_argument(
        "--print-matrix", action="store_true", help="print the resulting matrix as Markdown"
    )
    return parser


def _progress(result: CaseResult) -> None:
    line = f"{_LABELS[result.outcome]}  {result.case_id}  ({result.duration:.1f}s)"
    if result.outcome is not Outcome.PASS:
        line += f"\n      {result.message}"
    for note in result.notes:
        line += f"\n      note: {note}"
    print(line, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        for case in all_cases():
            features = ", ".join(f.value for f in case.features) or "-"
            print(f"{case.id:40} {features:45} {case.title}")
        return 0
    if not args.address:
        parser.error("--address is required (e.g. docker:///var/run/docker.sock)")
    only = None
    if args.only:
        only = [part for entry in args.only for part in entry.split(",") if part.strip()]
        if args.write_matrix:
            parser.error(
                "--write-matrix needs a full run: a partial one would mark features untested"
            )
    json_path, md_path = kept_matrix_paths()
    json_path = args.matrix_json or json_path
    md_path = args.matrix_md or (md_path if args.matrix_json is None else None)
    try:
        driver_name = args.target_driver or driver_name_from_address(args.address)
        driver = open_driver(args.target, driver_name, args.address)
    except PortwayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        suite = run_suite(driver, only=only, progress=_progress, image=args.image, tier=args.tier)
    except PortwayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        close = getattr(driver, "close", None)
        if callable(close):
            close()
    print(
        f"\n{suite.column} ({suite.engine}): {suite.passed} passed, {suite.failed} failed, "
        f"{suite.unsupported} unsupported, in {suite.duration:.1f}s"
    )
    for failure in suite.failures:
        print(f"  FAIL {failure.case_id}: {failure.message}")
    if args.write_matrix:
        matrix = matrix_of([suite], load_matrix(json_path))
        write_matrix(matrix, json_path, md_path)
        print(f"matrix written: {json_path}" + (f" and {md_path}" if md_path else ""))
    if args.print_matrix:
        print()
        print(render_markdown(matrix_of([suite])))
    return 1 if suite.failed else 0


if __name__ == "__main__":
    sys.exit(main())
