"""Parallelization analysis of a plan (seed 003): levels, critical path, estimates, score,
recommended agents and anti-pattern warnings. Pure; `plait check` renders it."""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any

from plait import graph
from plait.plan.model import Plan
from plait.plan.overlap import overlaps, scope
from plait.plan.simulation import Dag, Makespans
from plait.schedule import Job

# Below this a task is too small to be worth its own agent (coordination overhead, seed 003).
TINY_TASK_SECONDS = 15 * 60.0
# Below this total work a plan gains too little from parallel agents ("small tasks < 2 hours").
SMALL_PLAN_SECONDS = 2 * 3600.0
# An interior task needing this many others is "highly coupled".
COUPLED_FAN_IN = 3
# The recommended agent count is the smallest reaching this share of the best simulated speed-up.
KNEE = 0.95
# Every agent count up to this is simulated; beyond it, powers of two, the widest level and a bisection near
# the knee (a plan of 3,000 independent tasks would otherwise need 3,000 simulations).
DENSE_AGENT_COUNTS = 8
# Findings of one kind listed one by one; the rest are counted in one more finding.
MAX_LISTED = 100


@dataclass(frozen=True)
class Finding:
    kind: str  # premature-parallelization, coupling, file-overlap, contract-owner, no-integration-checkpoint
    message: str
    fix: str
    tasks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Estimate:
    jobs: int
    wall_seconds: float
    barrier_seconds: float
    lower_bound_seconds: float
    speedup: float
    time_reduction: float


@dataclass(frozen=True)
class Analysis:
    plan: str
    tasks: int
    levels: list[list[str]]
    critical_path: list[str]
    critical_path_seconds: float
    total_work_seconds: float
    sequential_seconds: float
    average_parallelism: float
    estimate: Estimate
    by_jobs: list[Estimate]
    recommended_agents: int
    recommended_reason: str
    score: float
    score_reasons: list[str]
    findings: list[Finding] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, **asdict(self)}


def jobs_of(plan: Plan) -> list[Job]:
    return [Job(t.id, tuple(t.needs), t.seconds, plan.agent_for(t)) for t in plan.tasks]


class _Estimator:
    """The estimate for any agent count, from one built simulation of the plan and one per level."""

    def __init__(self, jobs: list[Job], by_level: list[list[str]], cp: float) -> None:
        weight = {j.id: j.weight for j in jobs}
        needs = {j.id: list(j.needs) for j in jobs}
        self.work, self.cp = sum(weight.values()), cp
        self.wall = Makespans(Dag.of(jobs, graph.bottom_levels(needs, weight)))
        # Phase barriers: each level on its own, its tasks independent, longest first.
        self.phases = [Makespans(Dag.of([Job(t, (), weight[t]) for t in ids], weight)) for ids in by_level]

    def __call__(self, m: int) -> Estimate:
        wall = self.wall(m)
        return Estimate(
            jobs=m,
            wall_seconds=wall,
            barrier_seconds=sum(phase(m) for phase in self.phases),
            lower_bound_seconds=max(self.cp, self.work / m),
            speedup=self.work / wall if wall else 1.0,
            time_reduction=1 - wall / self.work if self.work else 0.0,
        )


def agent_counts(width: int) -> list[int]:
    """The agent counts always simulated: 1 … DENSE_AGENT_COUNTS, then powers of two, and the widest level."""
    counts = list(range(1, min(width, DENSE_AGENT_COUNTS) + 1))
    while counts[-1] < width:
        counts.append(min(2 * counts[-1], width))
    return counts


def _by_jobs(estimate: _Estimator, width: int) -> list[Estimate]:
    """`agent_counts`, then a bisection between the two counts around the knee (the first count within
    KNEE of the best, and the one before it), assuming more agents never slow the plan down."""
    found = {m: estimate(m) for m in agent_counts(width)}
    goal = KNEE * max(e.speedup for e in found.values())
    above = min(m for m, e in found.items() if e.speedup >= goal)
    below = max((m for m in found if m < above), default=above)
    while above - below > 1:
        mid = (above + below) // 2
        found[mid] = estimate(mid)
        above, below = (mid, below) if found[mid].speedup >= goal else (above, mid)
    return [found[m] for m in sorted(found)]


def patterns_overlap(a: str, b: str) -> bool:
    """Whether two declared scopes (paths or globs) can name the same file. The definition, for one pair;
    `plait.plan.overlap` finds every overlapping pair of a plan at once."""
    a, b = a.rstrip("/"), b.rstrip("/")
    if a == b or fnmatch.fnmatchcase(a, b) or fnmatch.fnmatchcase(b, a):
        return True
    # A directory scope covers everything below it.
    return b.startswith(a + "/") or a.startswith(b + "/")


def _ordered_with(plan: Plan) -> list[int]:
    """For each task (by position), a bit mask of the tasks `needs` orders it with, either way, itself
    included. Bit masks keep this O((n + e) · n / 64): sets of every task's ancestors were quadratic."""
    index = {t.id: i for i, t in enumerate(plan.tasks)}
    needs = {t.id: [index[d] for d in t.needs if d in index] for t in plan.tasks}
    order = graph.topological_order({t.id: list(t.needs) for t in plan.tasks})
    above, below = [0] * len(index), [0] * len(index)
    for tid in order:
        for dep in needs[tid]:
            above[index[tid]] |= above[dep] | 1 << dep
    for tid in reversed(order):
        for dep in needs[tid]:
            below[dep] |= below[index[tid]] | 1 << index[tid]
    return [above[i] | below[i] | 1 << i for i in range(len(index))]


def _bits(mask: int) -> Iterator[int]:
    """The positions of the set bits, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


class _Scopes:
    """Which tasks declare which scopes, and which scopes overlap (see `plait.plan.overlap`)."""

    def __init__(self, plan: Plan) -> None:
        self.declared: list[dict[str, list[str]]] = []  # per task: scope -> the entries written for it
        self.owners: dict[str, list[int]] = {}
        for i, t in enumerate(plan.tasks):
            mine: dict[str, list[str]] = {}
            for f in t.files:
                mine.setdefault(scope(f), []).append(f)
            for s in mine:
                self.owners.setdefault(s, []).append(i)
            self.declared.append(mine)
        self.overlaps = overlaps([*self.owners, *(scope(c.path) for c in plan.contracts)])
        self._masks: dict[str, int] = {}

    def touching(self, s: str) -> int:
        """A bit mask of the tasks declaring `s` or a scope that overlaps it."""
        mask = self._declaring(s)
        for other in self.overlaps.related.get(s, ()):
            mask |= self._declaring(other)
        return mask

    def _declaring(self, s: str) -> int:
        owners = self.owners.get(s, ())
        if len(owners) == 1:  # the common case, kept fast
            return 1 << owners[0]
        if len(owners) < 8:
            return sum(1 << i for i in owners)
        if s not in self._masks:  # a file many tasks declare (README.md): one mask, kept; few are
            self._masks[s] = sum(1 << i for i in owners)
        return self._masks[s]


def _file_findings(plan: Plan) -> list[Finding]:
    """file-overlap and contract-owner findings: the first MAX_LISTED of each, then how many more."""
    ids = [t.id for t in plan.tasks]
    scopes, ordered = _Scopes(plan), _ordered_with(plan)
    touching = [0] * len(ids)  # per task: the tasks declaring a scope that overlaps one of its own
    for s, owners in scopes.owners.items():
        mask = scopes.touching(s)
        for a in owners:
            touching[a] |= mask
    pairs: list[tuple[int, int]] = []
    count = 0
    for a in range(len(ids)):
        partners = touching[a] & ~ordered[a] & ~((1 << a) - 1)  # later tasks `needs` does not order with a
        count += partners.bit_count()
        pairs += [(a, b) for b in islice(_bits(partners), MAX_LISTED - len(pairs))]
    out: list[Finding] = []
    current, touched = -1, {}
    for a, b in pairs:
        if a != current:  # pairs come grouped by their first task
            current, touched = a, {s: scopes.touching(s) for s in scopes.declared[a]}
        shared = sorted({f for s, fs in scopes.declared[a].items() if touched[s] >> b & 1 for f in fs})
        out.append(Finding(
            "file-overlap",
            f"{ids[a]} and {ids[b]} can run at the same time but both declare {', '.join(shared)}",
            f"add `needs: [{ids[a]}]` to {ids[b]}, or merge the two tasks",
            (ids[a], ids[b]),
        ))
    if count > len(pairs):
        out.append(Finding("file-overlap", f"{count - len(pairs)} more pairs of tasks can run at the same time "
                           "but declare overlapping files (not listed)", "order them with `needs`, or merge "
                           "tasks that change the same files"))
    if scopes.overlaps.untried:
        out.append(Finding("file-overlap", f"{len(scopes.overlaps.untried)} glob(s), e.g. "
                           f"{scopes.overlaps.untried[0]}, were not compared with the plan's other files: "
                           "they would each need comparing with nearly all of them", "start globs with a "
                           "directory or end them with a file suffix (`src/api/**`, `**/*.py`)"))
    return out + _contract_findings(plan, scopes)


def _contract_findings(plan: Plan, scopes: _Scopes) -> list[Finding]:
    ids = [t.id for t in plan.tasks]
    position = {tid: i for i, tid in enumerate(ids)}
    out: list[Finding] = []
    count = 0
    for c in plan.contracts:
        owner = position.get(c.owner)
        others = scopes.touching(scope(c.path)) & ~(0 if owner is None else 1 << owner)
        count += others.bit_count()
        out += [Finding(
            "contract-owner",
            f"{ids[i]} declares {c.path}, a contract owned by {c.owner}",
            f"remove it from {ids[i]}'s files (the run fails a non-owner's change) or move the work to {c.owner}",
            (ids[i], c.owner),
        ) for i in islice(_bits(others), MAX_LISTED - len(out))]
    if count > len(out):
        out.append(Finding("contract-owner", f"{count - len(out)} more tasks declare a contract they do not own "
                           "(not listed)", "remove contracts from the files of the tasks that do not own them"))
    return out


def findings(plan: Plan, work: float) -> list[Finding]:
    needs = {t.id: list(t.needs) for t in plan.tasks}
    out: list[Finding] = []
    width = max(Counter(graph.levels(needs).values()).values())

    tiny = [t.id for t in plan.tasks if t.seconds < TINY_TASK_SECONDS]
    if width > 1 and (work < SMALL_PLAN_SECONDS or len(tiny) * 2 > len(plan.tasks)):
        out.append(Finding(
            "premature-parallelization",
            f"total work is {work / 3600:.1f}h with {len(tiny)} task(s) under 15m: agent overhead may exceed the gain",
            "merge the small tasks into fewer, larger ones or run this plan with --jobs 1",
            tuple(tiny),
        ))

    # A sink that joins many branches is an integration point, which is what a plan should have;
    # an interior task waiting on many others serializes the work around it.
    sinks = {t.id for t in plan.tasks} - {d for t in plan.tasks for d in t.needs}
    joins = [t.id for t in plan.tasks if len(t.needs) >= COUPLED_FAN_IN and t.id not in sinks]
    if joins:
        out.append(Finding(
            "coupling",
            f"highly coupled tasks: {', '.join(joins)} each wait on {COUPLED_FAN_IN} or more tasks and hold up "
            "everything after them",
            "define a contract (interface) first so dependents can build against it instead of waiting",
            tuple(joins),
        ))

    out += _file_findings(plan)

    if plan.integration.verify is None and not any(t.gate for t in plan.tasks) and width > 1:
        out.append(Finding(
            "no-integration-checkpoint",
            "parallel work is never checked together: no `integration.verify` and no `gate` task",
            "add `integration: {verify: <full test command>}` or a `gate: true` task that needs the parallel work",
        ))
    return out


def _score(avg_parallelism: float, found: list[Finding]) -> tuple[float, list[str]]:
    base = 10 * (1 - 1 / avg_parallelism) if avg_parallelism > 1 else 0.0
    reasons = [f"average parallelism {avg_parallelism:.2f} (total work / critical path) gives {base:.1f}"]
    penalties = {"premature-parallelization": 2.0, "coupling": 1.0, "file-overlap": 1.0,
                 "contract-owner": 1.0, "no-integration-checkpoint": 1.0}
    total = base
    for kind, weight in penalties.items():
        count = sum(1 for f in found if f.kind == kind)
        if count:
            cost = min(weight * count, 3.0)
            total -= cost
            reasons.append(f"-{cost:g} for {count} {kind} finding(s)")
    return round(max(0.0, min(10.0, total)), 1), reasons


def _recommend(estimates: list[Estimate]) -> tuple[int, str]:
    best = max(e.speedup for e in estimates)
    for e in estimates:
        if e.speedup >= KNEE * best:
            if e.jobs == 1:
                return 1, "no simulated gain from a second agent: run it sequentially"
            return e.jobs, (f"{e.jobs} agents reach {e.speedup:.2f}x of the best {best:.2f}x "
                            f"(more agents add < {100 * (1 - KNEE):.0f}%)")
    return estimates[-1].jobs, "the widest level"


def analyze(plan: Plan, jobs: int | None = None) -> Analysis:
    job_list = jobs_of(plan)
    needs = {j.id: list(j.needs) for j in job_list}
    weight = {j.id: j.weight for j in job_list}
    level = graph.levels(needs)
    by_level: list[list[str]] = [[] for _ in range(max(level.values()) + 1)]
    for t in plan.tasks:
        by_level[level[t.id]].append(t.id)
    path = graph.critical_path(needs, weight)
    cp = sum(weight[t] for t in path)
    work = sum(weight.values())
    width = max(len(ids) for ids in by_level)
    estimator = _Estimator(job_list, by_level, cp)
    by_jobs = _by_jobs(estimator, width)
    recommended, reason = _recommend(by_jobs)
    chosen = jobs or recommended
    estimate = next((e for e in by_jobs if e.jobs == chosen), None) or estimator(chosen)
    found = findings(plan, work)
    avg = work / cp if cp else 1.0
    score, reasons = _score(avg, found)
    return Analysis(
        plan=plan.name,
        tasks=len(plan.tasks),
        levels=by_level,
        critical_path=path,
        critical_path_seconds=cp,
        total_work_seconds=work,
        sequential_seconds=work,
        average_parallelism=round(avg, 3),
        estimate=estimate,
        by_jobs=by_jobs,
        recommended_agents=recommended,
        recommended_reason=reason,
        score=score,
        score_reasons=reasons,
        findings=found,
    )
