"""The engine's scheduling policy simulated fast enough for `plait check` on thousands of tasks.

`schedule.simulate` drives the live `Scheduler`, which carries what a run needs (retries, profiles, holds);
`check` simulates a dozen or more agent counts of plans of thousands of tasks, so this is the same policy
alone (a ready task starts when a slot is free, highest priority first, then list order) over positions, in
O((n + e) log n), built once per plan; a property test holds the two to the same makespans.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from plait.schedule import Job


@dataclass(frozen=True)
class Dag:
    """Jobs by position, built once and simulated for many agent counts."""

    weight: list[float]
    priority: list[float]
    users: list[list[int]]  # the jobs that need each one
    waiting: list[int]  # how many distinct needs each job has; one outside the jobs is never done

    @classmethod
    def of(cls, jobs: Sequence[Job], priority: Mapping[str, float]) -> Dag:
        index = {j.id: i for i, j in enumerate(jobs)}
        users: list[list[int]] = [[] for _ in jobs]
        for i, j in enumerate(jobs):
            for dep in set(j.needs) & index.keys():
                users[index[dep]].append(i)
        return cls([j.weight for j in jobs], [priority[j.id] for j in jobs], users,
                   [len(set(j.needs)) for j in jobs])


class Makespans:
    """When the last job ends with `m` agents (`schedule.simulate(jobs, m).makespan`), for many `m`. The run
    with every job allowed at once is kept: with at least as many agents as it ever ran at once, every job
    starts exactly when it did there, so more agents change nothing."""

    def __init__(self, dag: Dag) -> None:
        self.dag = dag
        self.unlimited, self.peak = _run(dag, max(1, len(dag.weight)))

    def __call__(self, m: int) -> float:
        return self.unlimited if m >= self.peak else _run(self.dag, m)[0]


def _run(dag: Dag, m: int) -> tuple[float, int]:
    """(when the last job ends, the most jobs running at once) with `m` agents."""
    if not any(dag.waiting):
        return _independent(dag, m), min(m, len(dag.weight))
    waiting = list(dag.waiting)
    ready = [(-p, i) for i, p in enumerate(dag.priority) if not waiting[i]]
    heapq.heapify(ready)
    running: list[tuple[float, int, int]] = []  # (end, start order, job)
    now = 0.0
    started = peak = 0
    while True:
        while ready and len(running) < m:
            i = heapq.heappop(ready)[1]
            heapq.heappush(running, (now + dag.weight[i], started, i))
            started += 1
        if not running:
            return now, peak  # the last end is the latest
        peak = max(peak, len(running))
        now = running[0][0]
        while running and running[0][0] == now:  # everything ending now frees its slot first
            for user in dag.users[heapq.heappop(running)[2]]:
                waiting[user] -= 1
                if not waiting[user]:
                    heapq.heappush(ready, (-dag.priority[user], user))


def _independent(dag: Dag, m: int) -> float:
    """`_run` of jobs that need nothing (a level, for phase barriers): each job, best first, starts on the agent
    that is free first, when the events would have started it; one heap operation a job."""
    free = [0.0] * min(m, len(dag.weight))
    for i in sorted(range(len(dag.weight)), key=lambda i: (-dag.priority[i], i)):
        heapq.heapreplace(free, free[0] + dag.weight[i])
    return max(free, default=0.0)
