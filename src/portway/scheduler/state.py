"""ClusterState: what is placed where, and where the next replicas go.

The controller builds one from the store (targets and placed replicas),
asks it to ``schedule`` each workload's missing replicas, and acts on the
``Decision``: start the assigned replicas, stop the victims.

One replica is placed at a time, in Kubernetes' scheduling-cycle shape
(filters in ``filters``, scores in ``scores``, victims in ``preemption``),
arranged so that 5,000 targets cost little more per placement than 50:

1. Static filters (1-6) are evaluated once per kind of ask and per
   equivalence class of targets (same labels but the target's own name,
   taints, tiers, health, cordon), and cached: a sorted list of the
   targets that pass.
2. The dynamic filters (7-10: resources, hard spread, required
   (anti-)affinity) are checked on every candidate, walking that list from
   a start that rotates between placements, until ``sample`` feasible
   targets are found (kube-scheduler's percentageOfNodesToScore, Nomad's
   limit iterator). Targets that already run the workload, and those
   running replicas a preferred affinity term names, are always candidates
   too; a required affinity term narrows the walk to the domains it can be
   met in.
   Sampling thus only ever loses a better *score*: a hard rule is a filter
   and holds for whatever is chosen, and a placement fails only after
   every target was tried.
3. The feasible candidates are scored; the best wins, ties by name.
4. Nothing feasible: preemption, if every reachable target lacks only
   memory or CPU; else the replica, and every later one of the ask, is
   unplaced, with reasons counted over all targets (``explain``).

Counts per target, per topology domain and per selector are updated as
replicas are added and removed, so every check is a lookup.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from portway.scheduler import filters
from portway.scheduler.filters import CPU_EPSILON, matches
from portway.scheduler.fit import Capacity, Request, free_of
from portway.scheduler.model import (
    TARGET_KEY,
    Ask,
    Assignment,
    Decision,
    Effect,
    Overhead,
    PlacedReplica,
    SpreadRule,
    Strategy,
    Taint,
    TargetState,
    Unplaceable,
)
from portway.scheduler.preemption import choose_victims, eviction_order, rank
from portway.scheduler.scores import (
    WEIGHTS,
    affinity_score,
    resource_label,
    resource_score,
    spread_score,
)
from portway.scheduler.topology import ReplicaIndex, SelectorCounts, Skew, Topology, target_labels

#: feasible targets scored per placement when sampling; enough that the
#: best of them is close to the best of all (see bench/p3_scheduler.py),
#: few enough that 5,000 targets cost about what 50 do
DEFAULT_SAMPLE = 16

#: static-filter results kept per ClusterState (one per kind of ask)
_STATIC_CACHE_SIZE = 4096

_FITS, _SHORT, _REFUSED = 0, 1, 2  # a dynamic check's outcome: _SHORT = only memory/CPU

_ClassKey = tuple[
    frozenset[tuple[str, str]],
    tuple[Taint, ...],
    frozenset[tuple[str, Overhead]],
    bool,
    bool,
]
_EvictionKey = tuple[int, int, float, str, int]


@dataclass
class _Static:
    """The targets that pass filters 1-6 for one kind of ask."""

    ids: list[int]  # in target (name) order
    eligible: bytearray  # eligible[t] == 1 for t in ids
    avoid: bytearray  # 1: the target has a PreferNoSchedule taint the ask does not tolerate
    walks: dict[tuple[str, ...], list[int]] = field(default_factory=dict)
    domains: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _Spread:
    rule: SpreadRule
    domains: list[str | None]  # per target
    skew: Skew


@dataclass
class _Term:
    weight: int
    selector: Mapping[str, str]
    key: str
    domains: list[str | None]  # per target
    counts: Mapping[str, int]  # matching replicas per domain (live)
    index: SelectorCounts


@dataclass
class _Plan:
    """One ask, prepared for placing its replicas."""

    ask: Ask
    static: _Static
    hard: list[_Spread]
    soft: list[_Spread]
    required: list[_Term]
    anti: list[_Term]
    preferred: list[_Term]
    preferred_anti: list[_Term]
    mine: dict[int, int]  # the workload's replicas per target (live), oldest target first
    keep: Mapping[int, int] | None  # the same, when keeping together
    self_affine: bool  # the ask's labels match every required affinity term
    anywhere: bool = False  # Kubernetes' first-replica exception is in force

    def refresh(self) -> None:
        self.anywhere = self.self_affine and all(t.index.total == 0 for t in self.required)


class ClusterState:
    """Targets and the replicas placed on them; schedules asks into itself."""

    def __init__(
        self,
        targets: Sequence[TargetState],
        placed: Iterable[PlacedReplica] = (),
        *,
        sample: int | None = DEFAULT_SAMPLE,
    ) -> None:
        """``sample``: feasible targets scored per placement (None: all of them)."""
        if sample is not None and sample < 1:
            raise ValueError(f"sample must be at least 1 (or None), not {sample}")
        self._sample = sample
        self._targets = sorted(targets, key=lambda t: t.name)
        self._index = {t.name: i for i, t in enumerate(self._targets)}
        if len(self._index) != len(self._targets):
            dupes = sorted(n for n, c in Counter(t.name for t in self._targets).items() if c > 1)
            raise ValueError(f"targets named more than once: {', '.join(dupes)}")
        self._labels = [target_labels(t) for t in self._targets]
        self._tiers = [t.tiers for t in self._targets]
        self._total_memory = [t.capacity.memory for t in self._targets]
        self._total_cpu = [t.capacity.cpu for t in self._targets]
        self._used_memory = [0] * len(self._targets)
        self._used_cpu = [0.0] * len(self._targets)
        self._topology = Topology(self._labels)
        self._matching = ReplicaIndex(self._topology)
        self._replicas: dict[tuple[str, int], PlacedReplica] = {}
        self._evictable: list[list[_EvictionKey]] = [[] for _ in self._targets]
        self._by_workload: dict[str, dict[int, int]] = {}
        self._classes = self._equivalence_classes()
        self._statics: dict[tuple[object, ...], _Static] = {}
        self._cursor = 0
        for replica in placed:
            self.add(replica)

    # --- the replicas ------------------------------------------------------------------

    def add(self, replica: PlacedReplica) -> None:
        """Commit a replica. One on a target this state does not know is
        recorded but counts nowhere (its target is gone)."""
        key = (replica.workload, replica.index)
        if key in self._replicas:
            raise ValueError(f"replica {replica.index} of {replica.workload} is already placed")
        self._replicas[key] = replica
        t = self._index.get(replica.target)
        if t is None:
            return
        self._used_memory[t] += replica.request.memory
        self._used_cpu[t] += replica.request.cpu
        bisect.insort(self._evictable[t], eviction_order(replica))
        per_target = self._by_workload.setdefault(replica.workload, {})
        per_target[t] = per_target.get(t, 0) + 1
        self._matching.change(replica.labels, t, 1)

    def remove(self, workload: str, index: int) -> PlacedReplica | None:
        """Take a replica out (stopped, evicted, moved); None if it was not placed."""
        replica = self._replicas.pop((workload, index), None)
        if replica is None:
            return None
        t = self._index.get(replica.target)
        if t is None:
            return replica
        self._used_memory[t] -= replica.request.memory
        self._used_cpu[t] -= replica.request.cpu
        evictable = self._evictable[t]
        del evictable[bisect.bisect_left(evictable, eviction_order(replica))]
        per_target = self._by_workload[workload]
        if per_target[t] > 1:
            per_target[t] -= 1
        else:
            del per_target[t]
        self._matching.change(replica.labels, t, -1)
        return replica

    def replicas(self, target: str | None = None) -> list[PlacedReplica]:
        """The placed replicas (on ``target`` only, if given), in placement order."""
        return [r for r in self._replicas.values() if target is None or r.target == target]

    def used(self, target: str) -> Request:
        """What the replicas on ``target`` commit, overhead included."""
        t = self._index[target]
        return Request(self._used_memory[t], self._used_cpu[t])

    def free(self, target: str) -> Capacity:
        """``target``'s capacity minus what is committed on it (None: unknown)."""
        return free_of(self._targets[self._index[target]].capacity, self.used(target))

    # --- scheduling ------------------------------------------------------------------

    def schedule(self, ask: Ask) -> Decision:
        """Place ``ask.indices`` one replica at a time, each placement (and
        each victim's removal) committed before the next. The first replica
        that fits nowhere ends the ask: it and all later ones are unplaced
        (they are alike, so they would not fit either)."""
        if len(set(ask.indices)) != len(ask.indices):
            raise ValueError(f"replica indices of {ask.workload} repeat: {ask.indices}")
        for index in ask.indices:
            if (ask.workload, index) in self._replicas:
                raise ValueError(
                    f"replica {index} of {ask.workload} is already placed; remove it to move it"
                )
        plan = self._plan(ask)
        placed: list[Assignment] = []
        for position, index in enumerate(ask.indices):
            plan.refresh()
            assignment = self._place_one(plan, index)
            if assignment is None:
                return Decision(
                    placed=tuple(placed),
                    unplaced=tuple(ask.indices[position:]),
                    failure=self.explain(ask),
                )
            placed.append(assignment)
        return Decision(placed=tuple(placed))

    def explain(self, ask: Ask) -> Unplaceable:
        """Why one more replica of ``ask`` fits nowhere: every target's first
        failing filter, counted (targets that would take it are not counted)."""
        plan = self._plan(ask)
        plan.refresh()
        reasons: Counter[str] = Counter()
        for t in range(len(self._targets)):
            why = self._rejection(t, plan)
            if why is not None:
                reasons[why] += 1
        return Unplaceable(reasons=dict(reasons), total=len(self._targets))

    def _place_one(self, plan: _Plan, index: int) -> Assignment | None:
        feasible, short = self._candidates(plan)
        if feasible:
            return self._commit(plan, index, self._best(plan, feasible), ())
        if not (plan.ask.preempt and short):
            return None
        chosen = self._preemption(plan, short)
        if chosen is None:
            return None
        target, victims = chosen
        for victim in victims:
            self.remove(victim.workload, victim.index)
        return self._commit(plan, index, target, victims)

    def _commit(
        self, plan: _Plan, index: int, t: int, victims: tuple[PlacedReplica, ...]
    ) -> Assignment:
        ask = plan.ask
        reason = self._reason(plan, t, victims)
        overhead = self._tiers[t][ask.tier]
        cost = Request(ask.request.memory + overhead.memory, ask.request.cpu + overhead.cpu)
        name = self._targets[t].name
        self.add(
            PlacedReplica(
                workload=ask.workload,
                index=index,
                target=name,
                labels=ask.labels,
                priority=ask.priority,
                request=cost,
            )
        )
        for spread in (*plan.hard, *plan.soft):
            domain = spread.domains[t]
            if domain is not None:
                spread.skew.add(domain)
        return Assignment(index=index, target=name, reason=reason, victims=victims)

    # --- preparing an ask -------------------------------------------------------------

    def _equivalence_classes(self) -> list[tuple[Mapping[str, str], TargetState, list[int]]]:
        """Targets that every static filter treats alike, but for their name."""
        classes: dict[_ClassKey, tuple[Mapping[str, str], TargetState, list[int]]] = {}
        for t, target in enumerate(self._targets):
            labels = {k: v for k, v in target.labels.items() if k != TARGET_KEY}
            key: _ClassKey = (
                frozenset(labels.items()),
                target.taints,
                frozenset(target.tiers.items()),
                target.healthy,
                target.cordoned,
            )
            found = classes.get(key)
            if found is None:
                classes[key] = (labels, target, [t])
            else:
                found[2].append(t)
        return list(classes.values())

    def _static(self, ask: Ask) -> _Static:
        key = (
            frozenset(ask.selector.items()),
            ask.names,
            frozenset(ask.excluded.items()),
            ask.tier,
            ask.tolerations,
        )
        found = self._statics.get(key)
        if found is not None:
            return found
        if len(self._statics) >= _STATIC_CACHE_SIZE:
            self._statics.clear()
        class_selector = {k: v for k, v in ask.selector.items() if k != TARGET_KEY}
        names = set(ask.names)
        size = len(self._targets)
        static = _Static(ids=[], eligible=bytearray(size), avoid=bytearray(size))
        for labels, example, members in self._classes:
            if not (
                matches(class_selector, labels)
                and example.healthy
                and not example.cordoned
                and ask.tier in example.tiers
                and not filters.untolerated(example.taints, ask.tolerations, Effect.NO_SCHEDULE)
            ):
                continue
            avoid = bool(
                filters.untolerated(example.taints, ask.tolerations, Effect.PREFER_NO_SCHEDULE)
            )
            for t in members:
                name = self._targets[t].name
                if (names and name not in names) or name in ask.excluded:
                    continue
                if TARGET_KEY in ask.selector and (
                    self._labels[t].get(TARGET_KEY) != ask.selector[TARGET_KEY]
                ):
                    continue
                static.ids.append(t)
                static.eligible[t] = 1
                static.avoid[t] = avoid
        static.ids.sort()
        self._statics[key] = static
        return static

    def _domains(self, static: _Static, key: str) -> list[str]:
        """The domains of ``key`` among the statically eligible targets."""
        found = static.domains.get(key)
        if found is None:
            per_target = self._topology.domains(key)
            values = (per_target[t] for t in static.ids)
            found = static.domains[key] = list(dict.fromkeys(d for d in values if d is not None))
        return found

    def _walk(self, static: _Static, hard: Sequence[_Spread]) -> list[int]:
        """Eligible targets that have every hard spread key."""
        keys = tuple(s.rule.topology_key for s in hard)
        found = static.walks.get(keys)
        if found is None:
            found = static.walks[keys] = [
                t for t in static.ids if all(s.domains[t] is not None for s in hard)
            ]
        return found

    def _term(self, selector: Mapping[str, str], key: str, weight: int) -> _Term:
        index = self._matching.selector(selector)
        return _Term(
            weight, selector, key, self._topology.domains(key), index.by_domain(key), index
        )

    def _plan(self, ask: Ask) -> _Plan:
        static = self._static(ask)
        # the live per-target counts, so that keep-together sees this ask's own placements
        mine = self._by_workload.setdefault(ask.workload, {})
        hard: list[_Spread] = []
        soft: list[_Spread] = []
        for rule in ask.spread:
            domains = self._topology.domains(rule.topology_key)
            placed = ((domains[t], n) for t, n in mine.items() if static.eligible[t])
            skew = Skew(self._domains(static, rule.topology_key), _known(placed))
            (hard if rule.hard else soft).append(_Spread(rule, domains, skew))

        required = [self._term(a.selector, a.topology_key, a.weight) for a in ask.affinity]
        keep = mine if not ask.spread and not ask.preferred_anti_affinity else None
        return _Plan(
            ask=ask,
            static=static,
            hard=hard,
            soft=soft,
            required=required,
            anti=[self._term(a.selector, a.topology_key, a.weight) for a in ask.anti_affinity],
            preferred=[
                self._term(a.selector, a.topology_key, a.weight) for a in ask.preferred_affinity
            ],
            preferred_anti=[
                self._term(a.selector, a.topology_key, a.weight)
                for a in ask.preferred_anti_affinity
            ],
            mine=mine,
            keep=keep,
            self_affine=bool(required) and all(matches(a.selector, ask.labels) for a in required),
        )

    # --- filters ---------------------------------------------------------------------

    def _check(self, t: int, plan: _Plan) -> int:
        """The dynamic filters (7-10) for a statically eligible target:
        _FITS, _SHORT (fails only on memory/CPU) or _REFUSED."""
        for spread in plan.hard:
            domain = spread.domains[t]
            if domain is None or spread.skew.after(domain) > spread.rule.max_skew:
                return _REFUSED
        if not plan.anywhere:
            for term in plan.required:
                domain = term.domains[t]
                if domain is None or domain not in term.counts:
                    return _REFUSED
        for term in plan.anti:
            domain = term.domains[t]
            if domain is not None and domain in term.counts:
                return _REFUSED
        ask = plan.ask
        overhead = self._tiers[t][ask.tier]
        total_memory = self._total_memory[t]
        if (
            total_memory is not None
            and self._used_memory[t] + ask.request.memory + overhead.memory > total_memory
        ):
            return _SHORT
        total_cpu = self._total_cpu[t]
        if (
            total_cpu is not None
            and self._used_cpu[t] + ask.request.cpu + overhead.cpu > total_cpu + CPU_EPSILON
        ):
            return _SHORT
        return _FITS

    def _rejection(self, t: int, plan: _Plan) -> str | None:
        """Every filter in the documented order, for counting (``explain``)."""
        target, ask = self._targets[t], plan.ask
        why = filters.static_rejection(target, self._labels[t], ask)
        if why is not None:
            return why
        overhead = target.tiers[ask.tier]
        cost = Request(ask.request.memory + overhead.memory, ask.request.cpu + overhead.cpu)
        used = Request(self._used_memory[t], self._used_cpu[t])
        why = filters.resource_rejection(self._total_memory[t], self._total_cpu[t], used, cost)
        if why is not None:
            return why
        for spread in plan.hard:
            key = spread.rule.topology_key
            domain = spread.domains[t]
            if domain is None:
                return filters.lacks_label(key)
            if spread.skew.after(domain) > spread.rule.max_skew:
                return filters.exceeds_skew(spread.rule.max_skew, key)
        if not plan.anywhere:
            for term in plan.required:
                domain = term.domains[t]
                if domain is None or domain not in term.counts:
                    return filters.NO_AFFINITY
        for term in plan.anti:
            domain = term.domains[t]
            if domain is not None and domain in term.counts:
                return filters.ANTI_AFFINITY
        return None

    # --- candidates -------------------------------------------------------------------

    def _seeds(self, plan: _Plan) -> Iterator[int]:
        """Targets a sample might miss but a score likely prefers: where the
        workload runs (when keeping together, or binpacking: they are the
        fuller ones), where a preferred term's replicas run."""
        limit = self._sample or 0
        if plan.keep is not None or plan.ask.strategy is Strategy.BINPACK:
            # the latest first: the ones filled before them are more likely full
            yield from itertools.islice(reversed(plan.mine), limit)
        for term in plan.preferred:
            yield from itertools.islice(term.index.per_target, limit)

    def _source(self, plan: _Plan) -> list[int]:
        """The targets to walk: the eligible ones with every hard spread key;
        with required affinity, only those in a domain where it is met."""
        walk = self._walk(plan.static, plan.hard)
        if plan.anywhere or not plan.required:
            return walk
        narrowest: tuple[int, _Term] | None = None
        for term in plan.required:
            members = self._topology.members(term.key)
            size = sum(len(members.get(d, ())) for d in term.counts)
            if narrowest is None or size < narrowest[0]:
                narrowest = (size, term)
        assert narrowest is not None
        size, term = narrowest
        if size >= len(walk):
            return walk
        members = self._topology.members(term.key)
        eligible = plan.static.eligible
        return sorted(t for d in term.counts for t in members.get(d, ()) if eligible[t])

    def _candidates(self, plan: _Plan) -> tuple[list[int], list[int]]:
        """Feasible targets (up to ``sample`` from the walk, plus seeds), and the
        targets that failed only on memory/CPU (complete only when no target
        is feasible: then every target was walked)."""
        feasible: list[int] = []
        short: list[int] = []
        seen: set[int] = set()
        eligible = plan.static.eligible
        check = self._check
        if self._sample is not None:
            for t in self._seeds(plan):
                if t in seen or not eligible[t]:
                    continue
                seen.add(t)
                outcome = check(t, plan)
                if outcome == _FITS:
                    feasible.append(t)
                elif outcome == _SHORT:
                    short.append(t)
        source = self._source(plan)
        count = len(source)
        if not count:
            return feasible, short
        start = bisect.bisect_left(source, self._cursor) % count
        wanted = self._sample if self._sample is not None else count
        found = 0
        t = source[start]
        for i in itertools.chain(range(start, count), range(start)):
            t = source[i]
            if t in seen:
                continue
            outcome = check(t, plan)
            if outcome == _FITS:
                feasible.append(t)
                found += 1
                if found >= wanted:
                    break
            elif outcome == _SHORT:
                short.append(t)
        self._cursor = t + 1
        return feasible, short

    # --- scores -----------------------------------------------------------------------

    def _score(self, t: int, plan: _Plan) -> float:
        ask = plan.ask
        overhead = self._tiers[t][ask.tier]
        score = WEIGHTS.resources * resource_score(
            ask.strategy,
            self._total_memory[t],
            self._total_cpu[t],
            self._used_memory[t] + ask.request.memory + overhead.memory,
            self._used_cpu[t] + ask.request.cpu + overhead.cpu,
        )
        if plan.keep is not None and t in plan.keep:
            score += WEIGHTS.keep_together * 100.0
        if plan.soft:
            score += WEIGHTS.spread * spread_score(_skews(plan.soft, t))
        if plan.preferred or plan.preferred_anti:
            score += WEIGHTS.affinity * affinity_score(*_affinity(plan, t))
        if not plan.static.avoid[t]:
            score += WEIGHTS.taints * 100.0
        return score

    def _best(self, plan: _Plan, feasible: Sequence[int]) -> int:
        best, best_score = -1, 0.0
        for t in feasible:
            score = self._score(t, plan)
            if best < 0 or score > best_score or (score == best_score and t < best):
                best, best_score = t, score
        return best

    def _reason(self, plan: _Plan, t: int, victims: Sequence[PlacedReplica]) -> str:
        """Why ``t``, in a few words, for ``get replicas -o wide``."""
        ask = plan.ask
        overhead = self._tiers[t][ask.tier]
        resources = resource_score(
            ask.strategy,
            self._total_memory[t],
            self._total_cpu[t],
            self._used_memory[t] + ask.request.memory + overhead.memory,
            self._used_cpu[t] + ask.request.cpu + overhead.cpu,
        )
        parts = [f"{resource_label(ask.strategy)} {resources:.0f}"]
        for spread in (*plan.hard, *plan.soft):
            key, domain = spread.rule.topology_key, spread.domains[t]
            if domain is None:
                parts.append(f"spread {key}: no such label")
            else:
                n = spread.skew.counts[domain]
                parts.append(f"spread {key}={domain} ({n}\u2192{n + 1}, min {spread.skew.min})")
        if plan.required:
            parts.append("first of its affinity group" if plan.anywhere else "affinity met")
        if plan.preferred or plan.preferred_anti:
            preferred, _, anti, _ = _affinity(plan, t)
            if preferred:
                parts.append(f"preferred affinity +{preferred}")
            if anti:
                parts.append(f"preferred anti-affinity -{anti}")
        if plan.keep is not None and t in plan.keep:
            parts.append("keeps workload together")
        if plan.static.avoid[t]:
            parts.append("despite an untolerated PreferNoSchedule taint")
        if victims:
            top = max(v.priority for v in victims)
            parts.append(f"preempts {len(victims)} replica(s) of priority \u2264 {top}")
        return "; ".join(parts)

    # --- preemption -------------------------------------------------------------------

    def _preemption(
        self, plan: _Plan, short: Iterable[int]
    ) -> tuple[int, tuple[PlacedReplica, ...]] | None:
        """The best target to make room on, and whom to evict there."""
        ask = plan.ask
        selectors = [term.selector for term in plan.required]

        def spare(replica: PlacedReplica) -> bool:
            return any(matches(s, replica.labels) for s in selectors)

        best: tuple[tuple[int, int, str], int, tuple[PlacedReplica, ...]] | None = None
        for t in sorted(short):
            evictable = self._evictable[t]
            if not evictable or evictable[0][0] >= ask.priority:
                continue
            if best is not None and (evictable[0][0], 1) >= best[0][:2]:
                continue  # cannot beat the best: at least one victim of at least this priority
            overhead = self._tiers[t][ask.tier]
            total_memory, total_cpu = self._total_memory[t], self._total_cpu[t]
            memory = (
                0
                if total_memory is None
                else self._used_memory[t] + ask.request.memory + overhead.memory - total_memory
            )
            cpu = (
                0.0
                if total_cpu is None
                else self._used_cpu[t] + ask.request.cpu + overhead.cpu - total_cpu
            )
            victims = choose_victims(
                (self._replicas[(key[3], key[4])] for key in evictable),
                priority=ask.priority,
                workload=ask.workload,
                memory=memory,
                cpu=cpu,
                spare=spare,
            )
            if not victims:
                continue
            ranked = rank(victims, self._targets[t].name)
            if best is None or ranked < best[0]:
                best = (ranked, t, victims)
        return None if best is None else (best[1], best[2])


def _known(placed: Iterable[tuple[str | None, int]]) -> Iterator[tuple[str, int]]:
    return ((d, n) for d, n in placed if d is not None)


def _skews(soft: Sequence[_Spread], t: int) -> list[int | None]:
    out: list[int | None] = []
    for spread in soft:
        domain = spread.domains[t]
        out.append(None if domain is None else spread.skew.after(domain))
    return out


def _affinity(plan: _Plan, t: int) -> tuple[int, int, int, int]:
    preferred = sum(
        term.weight
        for term in plan.preferred
        if (d := term.domains[t]) is not None and d in term.counts
    )
    anti = sum(
        term.weight
        for term in plan.preferred_anti
        if (d := term.domains[t]) is not None and d in term.counts
    )
    return (
        preferred,
        sum(term.weight for term in plan.preferred),
        anti,
        sum(term.weight for term in plan.preferred_anti),
    )


def schedule(targets: Sequence[TargetState], placed: Iterable[PlacedReplica], ask: Ask) -> Decision:
    """Place ``ask`` on a fresh ``ClusterState`` of ``targets`` and ``placed``."""
    return ClusterState(targets, placed).schedule(ask)
