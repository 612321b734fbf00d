"""`plait check`'s analysis after issue 13 against the one before it (tests/check_before.py), on generated plans.

Shapes: independent tasks, 8 chains, a random DAG and a random DAG whose tasks share files, directories and
globs (with contracts), 60–160 tasks each. Levels, the critical path and the file findings must be the same;
the makespans too (with and without phase barriers) for every agent count both simulate. The recommended
count may differ: before, every count from 1 to the widest level was simulated; now 1–8, powers of two, the
widest level and a bisection near the knee. The tolerance: the count recommended now reaches KNEE (95 %) of
the best speed-up of *every* count, and it is at most the one recommended before, or else within the
bisection's bracket, never more than twice it.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from check_before import Rescanning, analyze_before
from plait.plan.analyze import KNEE, MAX_LISTED, analyze
from plait.plan.model import Plan
from plait.schedule import Job, Scheduler

SHAPES = ["wide", "chains", "random", "overlapping"]


def generated(shape: str, n: int, seed: int) -> Plan:
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        if shape == "wide":
            needs = []
        elif shape == "chains":
            needs = [f"t{i - 8}"] if i >= 8 else []
        else:
            needs = sorted({f"t{rng.randrange(i)}" for _ in range(rng.randint(0, 3))}) if i else []
        files = [f"src/t{i}.py"]
        if shape == "overlapping":
            files = [f"src/m{i % 9}/f{i}.py", rng.choice([f"src/m{i % 9}/**", f"src/m{rng.randrange(9)}/",
                                                          "docs/*.md", f"docs/{i % 5}.md", "README.md",
                                                          f"src/m{i % 4}/f{rng.randrange(n)}.py"])]
        tasks.append({"id": f"t{i}", "title": "t", "prompt": "p", "verify": "true", "needs": needs,
                      "files": files, "estimate": f"{rng.choice([5, 20, 45, 60, 90, 120, 240])}m"})
    contracts = [{"path": "src/m1/api.py", "owner": "t1"}] if shape == "overlapping" else []
    return Plan.model_validate({"plait": 1, "name": shape, "tasks": tasks, "contracts": contracts})


CASES = [(shape, n, seed) for shape in SHAPES for n, seed in ((60, 1), (160, 2))]


@pytest.mark.parametrize(("shape", "n", "seed"), CASES)
def test_the_analysis_is_the_one_before(shape: str, n: int, seed: int) -> None:
    plan = generated(shape, n, seed)
    before, now = analyze_before(plan), analyze(plan)
    assert now.levels == before.levels
    assert now.critical_path == before.critical_path
    files = [(f.kind, f.message, f.tasks) for f in now.findings if f.kind in ("file-overlap", "contract-owner")]
    overlaps = [f for f in before.findings if f[0] == "file-overlap"]
    assert files[:min(len(overlaps), MAX_LISTED)] == overlaps[:MAX_LISTED]
    if len(overlaps) > MAX_LISTED:
        assert files[MAX_LISTED][1].startswith(f"{len(overlaps) - MAX_LISTED} more pairs")
    assert [f for f in files if f[0] == "contract-owner"] == [f for f in before.findings if f[0] == "contract-owner"]
    for e in now.by_jobs:
        assert (e.wall_seconds, e.barrier_seconds) == before.makespans[e.jobs]
    speedup = {e.jobs: e.speedup for e in now.by_jobs}
    assert speedup[now.recommended_agents] >= KNEE * max(before.speedups.values())
    assert now.recommended_agents <= 2 * before.recommended
    if shape == "overlapping":
        assert len(overlaps) > MAX_LISTED  # the case where findings are counted is covered


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(SHAPES), st.integers(2, 40), st.integers(0, 10**6))
def test_small_plans_recommend_the_same_count(shape: str, n: int, seed: int) -> None:
    """Below DENSE_AGENT_COUNTS every count is simulated, so the recommendation is the same one."""
    plan = generated(shape, n, seed)
    before, now = analyze_before(plan), analyze(plan)
    if len(before.speedups) <= 8:
        assert now.recommended_agents == before.recommended
    assert {e.jobs: (e.wall_seconds, e.barrier_seconds) for e in now.by_jobs}.items() <= before.makespans.items()


def test_the_live_scheduler_starts_the_same_tasks_in_the_same_order() -> None:
    """A whole run of the engine's loop over a 160-task random plan with 3 agents and a profile cap."""
    plan = generated("random", 160, 3)
    jobs = [Job(t.id, tuple(t.needs), t.seconds, "a" if i % 3 else "b") for i, t in enumerate(plan.tasks)]
    old, new = Rescanning(jobs, 3, {"b": 1}), Scheduler(jobs, 3, {"b": 1})
    order: list[list[str]] = []
    while not new.settled:
        starts = new.next_to_start()
        assert starts == old.next_to_start()
        for t in starts:
            old.start(t), new.start(t)
        order.append(starts)
        finished = min(new.running, key=lambda t: (new.priority[t], t))
        old.mark_done(finished), new.mark_done(finished)
    assert old.settled and len(new.done) == 160 and sum(map(len, order)) == 160
