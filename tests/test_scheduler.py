"""The scheduling estimate against hand-computed DAGs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plait import graph
from plait.schedule import Job, Scheduler, lower_bound, simulate, simulate_barriers


def jobs(spec: dict[str, tuple[float, tuple[str, ...]]]) -> list[Job]:
    return [Job(k, deps, w) for k, (w, deps) in spec.items()]


def test_chain_is_sequential_whatever_the_jobs() -> None:
    dag = jobs({"a": (1, ()), "b": (2, ("a",)), "c": (3, ("b",))})
    assert simulate(dag, 1).makespan == 6
    assert simulate(dag, 8).makespan == 6


def test_diamond_by_hand() -> None:
    # a(2) -> b(3), c(1) -> d(2): with 2 workers b and c overlap: 2 + 3 + 2 = 7; with 1 worker 8.
    dag = jobs({"a": (2, ()), "b": (3, ("a",)), "c": (1, ("a",)), "d": (2, ("b", "c"))})
    sim = simulate(dag, 2)
    assert sim.makespan == 7
    assert sim.spans["b"] == (2, 5) and sim.spans["c"] == (2, 3) and sim.spans["d"] == (5, 7)
    assert simulate(dag, 1).makespan == 8


def test_critical_path_first_beats_fifo_order() -> None:
    # Two workers; x, y short roots listed first, z starts a long chain. CP-first starts z at once:
    # z(1) -> w(4) = 5 on one worker, x, y (1 each) on the other: makespan 5.
    dag = jobs({"x": (1, ()), "y": (1, ()), "z": (1, ()), "w": (4, ("z",))})
    sim = simulate(dag, 2)
    assert sim.spans["z"][0] == 0
    assert sim.makespan == 5


def test_phase_barriers_are_much_slower_than_dependency_driven() -> None:
    # k chains of k tasks; in chain i the i-th task is long. Barriers pay one long task per level.
    k = 5
    dag = [Job(f"c{c}t{i}", (f"c{c}t{i - 1}",) if i else (), 100.0 if i == c else 1.0)
           for c in range(k) for i in range(k)]
    assert simulate(dag, k).makespan == 104
    assert simulate_barriers(dag, k) == 500


def test_wide_dag_limited_by_jobs() -> None:
    dag = jobs({f"t{i}": (1, ()) for i in range(8)})
    assert simulate(dag, 4).makespan == 2
    assert simulate(dag, 3).makespan == 3
    assert lower_bound([1.0] * 8, 1.0, 3) == pytest.approx(8 / 3)


def test_profile_limit_and_retry_delay() -> None:
    dag = [Job("a", (), 1, "claude"), Job("b", (), 1, "claude"), Job("c", (), 1, "codex")]
    s = Scheduler(dag, 3, {"claude": 1})
    assert s.next_to_start(0) == ["a", "c"]
    s.start("a")
    s.retry("a", not_before=10.0)
    assert "a" not in s.next_to_start(5.0)
    assert s.next_wakeup() == 10.0
    assert "a" in s.next_to_start(10.0)


def test_failure_blocks_transitive_dependents_only() -> None:
    dag = jobs({"a": (1, ()), "b": (1, ("a",)), "c": (1, ("b",)), "d": (1, ())})
    s = Scheduler(dag, 2)
    for t in s.next_to_start():
        s.start(t)
    assert sorted(s.fail("a")) == ["b", "c"]
    assert s.ready() == [] and "d" in s.running


@st.composite
def dags(draw: st.DrawFn) -> list[Job]:
    n = draw(st.integers(1, 25))
    out = []
    for i in range(n):
        needs = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        out.append(Job(f"t{i}", tuple(f"t{j}" for j in needs), draw(st.floats(0.1, 100))))
    return out


@settings(max_examples=300, deadline=None)
@given(dags(), st.integers(1, 8))
def test_simulated_schedule_is_valid_and_within_grahams_bound(jobs: list[Job], m: int) -> None:
    sim = simulate(jobs, m)
    weight = {j.id: j.weight for j in jobs}
    needs = {j.id: list(j.needs) for j in jobs}
    cp = sum(weight[t] for t in graph.critical_path(needs, weight))
    work = sum(weight.values())
    # Every task starts after its dependencies end, and never more than m run at once.
    for j in jobs:
        assert all(sim.spans[d][1] <= sim.spans[j.id][0] + 1e-9 for d in j.needs)
    for start, _ in sim.spans.values():
        assert sum(1 for a, b in sim.spans.values() if a <= start < b) <= m
    # Lower bound, and Graham's bound for any work-conserving list schedule.
    assert lower_bound(weight.values(), cp, m) <= sim.makespan + 1e-6
    assert sim.makespan <= work / m + (1 - 1 / m) * cp + 1e-6
