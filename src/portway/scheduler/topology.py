"""Counting replicas per topology domain, for spread and (anti-)affinity.

A domain is the value of a topology key on a target: with the key ``zone``,
all targets labelled ``zone=b`` form the domain ``b``; a target without the
key is in no domain. ``portway.dev/target`` is every target's own domain
(the controller adds that label; when a snapshot lacks it, the target's
name stands in, so the default affinity key works in tests and benches too).

Targets are numbered by position (the scheduler sorts them by name), and
every count here is kept up to date as replicas come and go, so a check
during placement is a dictionary lookup, not a walk over replicas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from portway.scheduler.filters import matches
from portway.scheduler.model import TARGET_KEY, TargetState


def target_labels(target: TargetState) -> Mapping[str, str]:
    """The target's labels with ``portway.dev/target`` set to its name if absent."""
    if TARGET_KEY in target.labels:
        return target.labels
    return {**target.labels, TARGET_KEY: target.name}


class Topology:
    """Per topology key: each target's domain, and each domain's targets."""

    def __init__(self, labels: Sequence[Mapping[str, str]]) -> None:
        self._labels = labels
        self._domains: dict[str, list[str | None]] = {}
        self._members: dict[str, dict[str, list[int]]] = {}

    def domains(self, key: str) -> list[str | None]:
        """``domains(key)[t]``: the domain of target ``t`` (None: it lacks the key)."""
        found = self._domains.get(key)
        if found is None:
            found = self._domains[key] = [labels.get(key) for labels in self._labels]
        return found

    def members(self, key: str) -> Mapping[str, list[int]]:
        """The targets of each domain of ``key``, in target order."""
        found = self._members.get(key)
        if found is None:
            found = {}
            for target, domain in enumerate(self.domains(key)):
                if domain is not None:
                    found.setdefault(domain, []).append(target)
            self._members[key] = found
        return found


def _bump(counts: dict[str, int], domain: str, delta: int) -> None:
    left = counts.get(domain, 0) + delta
    if left:
        counts[domain] = left
    else:
        del counts[domain]


class SelectorCounts:
    """Placed replicas whose labels match one selector: per target, in total,
    and per domain of every topology key asked about so far (built on the
    first question, maintained after that)."""

    def __init__(self, selector: Mapping[str, str], topology: Topology) -> None:
        self.selector = selector
        self.per_target: dict[int, int] = {}
        self.total = 0
        self._topology = topology
        self._per_domain: dict[str, dict[str, int]] = {}

    def change(self, target: int, delta: int) -> None:
        left = self.per_target.get(target, 0) + delta
        if left:
            self.per_target[target] = left
        else:
            del self.per_target[target]
        self.total += delta
        for key, counts in self._per_domain.items():
            domain = self._topology.domains(key)[target]
            if domain is not None:
                _bump(counts, domain, delta)

    def by_domain(self, key: str) -> Mapping[str, int]:
        """Matching replicas per domain of ``key`` (domains without any are absent)."""
        counts = self._per_domain.get(key)
        if counts is None:
            counts = {}
            domains = self._topology.domains(key)
            for target, n in self.per_target.items():
                domain = domains[target]
                if domain is not None:
                    counts[domain] = counts.get(domain, 0) + n
            self._per_domain[key] = counts
        return counts


class LabelGroup:
    """Placed replicas that carry the same labels (all replicas of a workload
    do), per target, and the selectors they match: adding a replica touches
    only the selectors that match it."""

    def __init__(self, labels: Mapping[str, str]) -> None:
        self.labels = labels
        self.per_target: dict[int, int] = {}
        self.selectors: list[SelectorCounts] = []

    def change(self, target: int, delta: int) -> None:
        left = self.per_target.get(target, 0) + delta
        if left:
            self.per_target[target] = left
        else:
            del self.per_target[target]
        for counts in self.selectors:
            counts.change(target, delta)


class ReplicaIndex:
    """Placed replicas per label set and per selector."""

    def __init__(self, topology: Topology) -> None:
        self._topology = topology
        self._groups: dict[frozenset[tuple[str, str]], LabelGroup] = {}
        self._selectors: dict[frozenset[tuple[str, str]], SelectorCounts] = {}

    def change(self, labels: Mapping[str, str], target: int, delta: int) -> None:
        key = frozenset(labels.items())
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = LabelGroup(labels)
            group.selectors = [s for s in self._selectors.values() if matches(s.selector, labels)]
        group.change(target, delta)

    def selector(self, selector: Mapping[str, str]) -> SelectorCounts:
        """The counts for ``selector``, built from the label groups on first use."""
        key = frozenset(selector.items())
        counts = self._selectors.get(key)
        if counts is None:
            counts = self._selectors[key] = SelectorCounts(selector, self._topology)
            for group in self._groups.values():
                if matches(selector, group.labels):
                    group.selectors.append(counts)
                    for target, n in group.per_target.items():
                        counts.change(target, n)
        return counts


class Skew:
    """One workload's replicas per domain of one key, over the domains of the
    targets that pass the ask's static filters (Kubernetes' spread
    semantics), with the smallest count kept up to date."""

    def __init__(self, domains: Iterable[str], placed: Iterable[tuple[str, int]]) -> None:
        self.counts: dict[str, int] = dict.fromkeys(domains, 0)
        for domain, n in placed:
            if domain in self.counts:
                self.counts[domain] += n
        self._recount()

    def _recount(self) -> None:
        self.min = min(self.counts.values(), default=0)
        self._at_min = sum(1 for n in self.counts.values() if n == self.min)

    def after(self, domain: str) -> int:
        """The skew if one more replica went to ``domain``: its count then,
        minus the smallest count now."""
        return self.counts[domain] + 1 - self.min

    def add(self, domain: str) -> None:
        before = self.counts[domain]
        self.counts[domain] = before + 1
        if before == self.min:
            self._at_min -= 1
            if not self._at_min:
                self._recount()
