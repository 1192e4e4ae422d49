"""Compose files in the apply/plan flow: their workloads through the same
model checks as workload files, their file secrets and configs stored as
portway secrets, a verdict per Compose key per target, and the refusals
(policy and rejected keys) reported all at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from portway.errors import Issue
from portway.service import secrets as secrets_svc
from portway.service.app import App
from portway.service.documents import translated_workloads
from portway.service.namespaces import judge
from portway.service.planning import WorkloadPlan
from portway.service.workloads import Sourced
from portway.spec.compose import ComposeOptions, Mapped, load_compose
from portway.spec.compose.images import ImageTarget
from portway.spec.compose.keys import Verdict
from portway.spec.compose.mapping import KeyVerdict

__all__ = [
    "ComposeLoad",
    "key_verdicts",
    "load",
    "refusals",
    "store_secrets",
]

_WORST = ("honored", "emulated", "dropped", "rejected")


@dataclass(frozen=True)
class ComposeLoad:
    file: str
    mapped: Mapped
    workloads: tuple[Sourced, ...]  # in the order of mapped.workloads

    def by_level(self) -> list[list[Sourced]]:
        """The workloads grouped by depends_on level, dependencies first."""
        by_name = {s.workload.metadata.name: s for s in self.workloads}
        return [[by_name[name] for name in level] for level in self.mapped.levels]


def load(
    file: Path,
    options: ComposeOptions,
    images: Mapping[str, ImageTarget],
    *,
    strict: bool = False,
) -> ComposeLoad:
    """The Compose file's workloads, checked by the workload model; raises
    SpecError naming the service of each model issue."""
    mapped = load_compose(file, options, images, strict=strict)
    sourced = translated_workloads(
        str(file),
        [
            (item.document, f"{file} (service {item.service})", number)
            for number, item in enumerate(mapped.workloads, start=1)
        ],
    )
    return ComposeLoad(str(file), mapped, tuple(sourced))


def store_secrets(app: App, loaded: ComposeLoad) -> list[str]:
    """Create or update the portway secret of each file secret and config
    (external ones must exist already); returns their names."""
    names = []
    for secret in loaded.mapped.secrets:
        secrets_svc.create_or_update(
            app, loaded.mapped.project, secret.name, {secret.key: secret.data}
        )
        names.append(secret.name)
    return names


def rejected_keys(loaded: ComposeLoad) -> list[Issue]:
    """The keys the Compose table rejects wherever the project runs (the part
    of ``refusals`` that needs no store: a remote apply checks it locally and
    leaves the namespace policy to the server)."""
    return [
        Issue(key.rule.reason, file=item.file, path=key.path, line=key.line)
        for item in loaded.mapped.workloads
        for key in item.keys
        if key.rule.verdict is Verdict.REJECTED
    ]


def refusals(app: App, loaded: ComposeLoad) -> list[Issue]:
    """Every reason apply must refuse the project: keys the Compose table
    rejects and the namespace policy's violations, for every service."""
    issues = rejected_keys(loaded)
    for sourced in loaded.workloads:
        for violation in judge(app, sourced.workload).violations:
            issues.append(
                located(
                    loaded,
                    sourced,
                    f"{violation.message} [{violation.rule}] ({violation.path})",
                    violation.path,
                )
            )
    return issues


def located(loaded: ComposeLoad, sourced: Sourced, message: str, field: str) -> Issue:
    """An issue with a field of a translated workload (``spec.security.hostPid``),
    placed at the Compose key it came from (``services.web.pid``, with its
    line), or at the service when no key of it maps to that field."""
    position = next(i for i, s in enumerate(loaded.workloads) if s is sourced)
    item = loaded.mapped.workloads[position]
    owner = next(
        (k for k in item.keys if k.rule.field and field and _under(field, k.rule.field)), None
    )
    return Issue(
        message,
        file=item.file,
        path=owner.path if owner else f"services.{item.service}",
        line=owner.line if owner else None,
    )


def _extension_verdict(field: str, target: Mapping[str, Any]) -> tuple[str, str]:
    """``spec.extensions.init``: honored where the target's own extension
    block carries the setting, dropped elsewhere."""
    setting = field.rsplit(".", 1)[-1]
    for ext in target.get("extensions") or []:
        if ext["applies"] and setting in ext["keys"]:
            return "honored", f"{ext['path']}.{setting} applies on this target"
    return "dropped", f"{target['driver']} has no extension setting {setting}"


def _field_verdict(
    field: str, target: Mapping[str, Any], violations: Sequence[Any]
) -> tuple[str, str] | None:
    if field.startswith("spec.extensions."):
        return _extension_verdict(field, target)
    for violation in violations:
        if _under(str(violation["path"]), field):
            return "rejected", f"{violation['message']} [{violation['rule']}]"
    matches = [f for f in target["fields"] if _under(str(f["path"]), field)]
    if not matches:
        return None
    worst = max(matches, key=lambda f: _WORST.index(str(f["verdict"])))
    return str(worst["verdict"]), f"{worst['path']}: {worst['reason']}"


def _under(path: str, field: str) -> bool:
    return path == field or path.startswith((field + ".", field + "["))


class _WithKeys(Protocol):
    """A service of a Compose file or an object of a Kubernetes manifest."""

    @property
    def keys(self) -> Sequence[KeyVerdict]: ...


def key_verdicts(item: _WithKeys, plan_item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each Compose (or Kubernetes) key of one service with a verdict per target: a key that
    becomes a portway field takes that field's drift verdict (or the policy's
    refusal); the others keep the Compose table's verdict."""
    rows = []
    violations = plan_item.get("policy") or []
    for key in item.keys:
        per_target: dict[str, dict[str, str]] = {}
        for target in plan_item.get("targets") or []:
            verdict, reason = key.rule.verdict.value, key.rule.reason
            if key.rule.field is not None:
                found = _field_verdict(key.rule.field, target, violations)
                if found is not None:
                    verdict, reason = found
            per_target[str(target["target"])] = {"verdict": verdict, "reason": reason}
        rows.append({"key": key.path, "line": key.line, "field": key.rule.field,
                     "targets": per_target})  # fmt: skip
    return rows


def plan_json(loaded: ComposeLoad, plans: Sequence[WorkloadPlan]) -> dict[str, Any]:
    """The project summary ``plan -o json`` adds for a Compose file."""
    return {
        "project": loaded.mapped.project,
        "levels": loaded.mapped.levels,
        "disabled": loaded.mapped.disabled,
        "secrets": [s.name for s in loaded.mapped.secrets],
        "workloads": len(plans),
    }
