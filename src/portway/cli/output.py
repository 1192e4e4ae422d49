"""Rendering for the CLI: kubectl-like tables, and JSON/YAML for machines."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from portway.capabilities.tiers import unavailable
from portway.controller.records import TargetView
from portway.errors import InputError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
if not out.is_terminal:
    # Piped output is read by scripts: never cut a column to fit 80 characters.
    out = Console(highlight=False, soft_wrap=True, width=100_000)


class Format(StrEnum):
    TABLE = "table"
    WIDE = "wide"
    JSON = "json"
    YAML = "yaml"


def parse_format(value: str | None) -> Format:
    if value is None or value == "":
        return Format.TABLE
    try:
        return Format(value)
    except ValueError:
        raise InputError(f"-o {value}: expected one of wide, json, yaml") from None


#: how plan colours each verdict
VERDICT_STYLE = {"honored": "green", "emulated": "cyan", "dropped": "yellow", "rejected": "red"}


def verdict_cell(verdict: str) -> str:
    return f"[{VERDICT_STYLE[verdict]}]{verdict}[/]"


def file_key_table(title: str, header: str, keys: Sequence[Any], targets: Sequence[str]) -> None:
    """The keys of a Compose service or Kubernetes object in ``plan``: a row
    per key path with its line and a verdict per target, then the reason of
    every verdict that is not "honored"."""
    out.print(f"  {title}:", markup=False)
    rows = [
        [f"  {key['key']}", str(key["line"] or "")]
        + [verdict_cell(key["targets"][target]["verdict"]) for target in targets]
        for key in keys
    ]
    table([f"  {header}", "LINE", *targets], rows)
    for key in keys:
        reasons = {v["verdict"] + ": " + v["reason"] for v in key["targets"].values()}
        for reason in sorted(reasons):
            if not reason.startswith("honored"):
                out.print(f"    {key['key']} {reason}", markup=False)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    grid = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for header in headers:
        grid.add_column(header, no_wrap=True)
    for row in rows:
        grid.add_row(*("" if cell is None else str(cell) for cell in row))
    out.print(grid)


def dump(data: Any, fmt: Format) -> None:
    if fmt is Format.JSON:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def age(since: float | None, now: float | None = None) -> str:
    """kubectl-style age: 42s, 5m, 3h, 2d."""
    if not since:
        return "-"
    seconds = int((now or time.time()) - since)
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def labels_text(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>"


def tiers_text(view: TargetView) -> str:
    """``standard=runc,sandboxed=runsc``: each tier the target offers and its handler."""
    return ",".join(
        f"{tier}={h.handler}" if h.handler else tier for tier, h in sorted(view.tiers.items())
    )


def unavailable_tiers(view: TargetView) -> dict[str, str]:
    return unavailable(set(view.tiers))


def capacity_text(attributes: Mapping[str, str]) -> str:
    """``2 cpu, 23.4Gi`` from a fingerprint's attributes ("" when unknown)."""
    parts = []
    cpus = attributes.get("cpus", "")
    if cpus and cpus != "0":
        parts.append(f"{cpus} cpu")
    try:
        memory = int(attributes.get("memory", "0") or 0)
    except ValueError:
        memory = 0
    if memory:
        parts.append(f"{memory / 2**30:.1f}Gi")
    return ", ".join(parts)
