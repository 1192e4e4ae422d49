"""What a policy check finds: one broken rule at one field."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    """One rule a workload breaks.

    ``path`` is the field in the file's camelCase names
    (``spec.volumes[2].source``), ``rule`` the rule's stable name
    (``baseline/privileged``, ``engine-socket``, ``image/registry``), and
    ``message`` says what was found and what the rule expects.
    """

    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} [{self.rule}]"
