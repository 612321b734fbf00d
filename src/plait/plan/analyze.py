"""Parallelization analysis of a plan (seed 003): levels, critical path, estimates, score,
recommended agents and anti-pattern warnings. Pure; `plait check` renders it."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from typing import Any

from plait import graph
from plait.plan.model import Plan
from plait.schedule import Job, lower_bound, simulate, simulate_barriers

# Below this a task is too small to be worth its own agent (coordination overhead, seed 003).
TINY_TASK_SECONDS = 15 * 60.0
# Below this total work a plan gains too little from parallel agents ("small tasks < 2 hours").
SMALL_PLAN_SECONDS = 2 * 3600.0
# An interior task needing this many others is "highly coupled".
COUPLED_FAN_IN = 3
# The recommended agent count is the smallest reaching this share of the best simulated speed-up.
KNEE = 0.95


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


def _estimate(jobs: list[Job], m: int, cp: float) -> Estimate:
    work = sum(j.weight for j in jobs)
    wall = simulate(jobs, m).makespan
    return Estimate(
        jobs=m,
        wall_seconds=wall,
        barrier_seconds=simulate_barriers(jobs, m),
        lower_bound_seconds=lower_bound((j.weight for j in jobs), cp, m),
        speedup=work / wall if wall else 1.0,
        time_reduction=1 - wall / work if work else 0.0,
    )


def patterns_overlap(a: str, b: str) -> bool:
    """Whether two declared scopes (paths or globs) can name the same file."""
    a, b = a.rstrip("/"), b.rstrip("/")
    if a == b or fnmatch.fnmatchcase(a, b) or fnmatch.fnmatchcase(b, a):
        return True
    # A directory scope covers everything below it.
    return b.startswith(a + "/") or a.startswith(b + "/")


def _reachable(needs: dict[str, list[str]]) -> dict[str, set[str]]:
    """For each task, every task it transitively needs."""
    out: dict[str, set[str]] = {}
    for node in graph.topological_order(needs):
        acc: set[str] = set()
        for d in needs[node]:
            acc.add(d)
            acc |= out.get(d, set())
        out[node] = acc
    return out


def findings(plan: Plan, work: float) -> list[Finding]:
    needs = {t.id: list(t.needs) for t in plan.tasks}
    ancestors = _reachable(needs)
    out: list[Finding] = []
    level = graph.levels(needs)
    width = max(sum(1 for v in level.values() if v == d) for d in set(level.values()))

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

    for i, a in enumerate(plan.tasks):
        for b in plan.tasks[i + 1 :]:
            if a.id in ancestors[b.id] or b.id in ancestors[a.id]:
                continue
            shared = sorted({fa for fa in a.files for fb in b.files if patterns_overlap(fa, fb)})
            if shared:
                out.append(Finding(
                    "file-overlap",
                    f"{a.id} and {b.id} can run at the same time but both declare {', '.join(shared)}",
                    f"add `needs: [{a.id}]` to {b.id}, or merge the two tasks",
                    (a.id, b.id),
                ))

    for contract in plan.contracts:
        for t in plan.tasks:
            if t.id != contract.owner and any(patterns_overlap(f, contract.path) for f in t.files):
                out.append(Finding(
                    "contract-owner",
                    f"{t.id} declares {contract.path}, a contract owned by {contract.owner}",
                    f"remove it from {t.id}'s files (the run fails a non-owner's change) or move the work to "
                    f"{contract.owner}",
                    (t.id, contract.owner),
                ))

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
    by_level = [[t.id for t in plan.tasks if level[t.id] == d] for d in range(max(level.values()) + 1)]
    path = graph.critical_path(needs, weight)
    cp = sum(weight[t] for t in path)
    work = sum(weight.values())
    width = max(len(ids) for ids in by_level)
    by_jobs = [_estimate(job_list, m, cp) for m in range(1, width + 1)]
    recommended, reason = _recommend(by_jobs)
    chosen = jobs or recommended
    estimate = by_jobs[chosen - 1] if chosen <= width else _estimate(job_list, chosen, cp)
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
