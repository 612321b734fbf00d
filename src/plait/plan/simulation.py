"""The engine's scheduling policy simulated fast enough for `plait check` on thousands of tasks.

`schedule.simulate` drives the live `Scheduler`, which rescans every pending task at each event: fine for a
run, quadratic for an estimate (1,000 independent tasks took 26 s to analyze, as `check` simulates every
agent count). This is the same policy, a ready task starts when a slot is free, highest priority first,
then list order, in O((n + e) log n); a property test holds the two to the same makespans.
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


def makespan(dag: Dag, m: int) -> float:
    """When the last job ends with `m` agents: `schedule.simulate(jobs, m).makespan`."""
    waiting = list(dag.waiting)
    ready = [(-p, i) for i, p in enumerate(dag.priority) if not waiting[i]]
    heapq.heapify(ready)
    running: list[tuple[float, int, int]] = []  # (end, start order, job)
    now = end = 0.0
    started = 0
    while True:
        while ready and len(running) < m:
            i = heapq.heappop(ready)[1]
            heapq.heappush(running, (now + dag.weight[i], started, i))
            end, started = max(end, now + dag.weight[i]), started + 1
        if not running:
            return end
        now = running[0][0]
        while running and running[0][0] == now:  # everything ending now frees its slot first
            for user in dag.users[heapq.heappop(running)[2]]:
                waiting[user] -= 1
                if not waiting[user]:
                    heapq.heappush(ready, (-dag.priority[user], user))
